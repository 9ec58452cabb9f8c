"""`antaeus provider serve --stripe` and `antaeus provider stripe-link`: the fake Stripe, and
giving Antaeus customers Stripe test references (a customer and a saved test card each).

stripe-link repeats what can be repeated safely, so one run finishes against a Stripe
(or an Antaeus) that drops connections: a connection error, a timeout, a 5xx, a 429 or
409 (after its Retry-After) is repeated with backoff, up to `LINK_TRIES` sends. Every
POST to Stripe carries an idempotency key made for this run and that request (a repeat
of a request Stripe executed replays its answer: no customer is made twice); GETs, and
the PATCH that sets a customer's references, are idempotent by nature. A customer that
still fails is counted and reported in one line; the others go on. The run ends with one
line of counts.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

import aiohttp
import httpx
from rich.markup import escape

from antaeus.cli.common import err, fail, out, run
from antaeus.payments.http import retry_after
from antaeus.payments.stripe_account import DEFAULT_API_BASE, mask_key, stripe_key_problem
from antaeus.security import mask_url, scrub
from antaeus.simulators.fake_stripe import FakeStripe

T = TypeVar("T")

#: How `stripe-link` gives customers test cards: by position of the customer's id in this
#: cycle, so billing the sample data shows every outcome of the README's table.
#: ("card", pm) attaches Stripe's test payment method; the others are broken references.
LINK_CYCLE: Final[tuple[tuple[str, str], ...]] = (
    ("card", "pm_card_visa"),  # charged
    ("card", "pm_card_visa"),
    ("card", "pm_card_chargeDeclinedInsufficientFunds"),  # insufficient funds: dunning
    ("card", "pm_card_visa"),
    ("card", "pm_card_chargeDeclined"),  # card_declined (generic_decline)
    ("card", "pm_card_visa"),
    ("card", "pm_card_chargeDeclinedExpiredCard"),  # card_declined (expired_card)
    ("card", "pm_card_visa"),
    ("card", "pm_card_authenticationRequired"),  # authentication_required
    ("card", "pm_card_visa"),
    ("missing_customer", ""),  # a Stripe customer that does not exist: customer not found
    ("card", "pm_card_visa"),
    ("foreign_card", ""),  # another customer's card: Stripe refuses, provider_rejected
    ("card", "pm_card_visa"),
    ("unlinked", ""),  # left without references: payment_method_missing
)
#: customers stripe-link links at a time (each is two calls to Stripe and one PATCH)
LINK_CONCURRENCY: Final = 16
#: sends of one request at most (the first and its repeats), and the backoff between them
LINK_TRIES: Final = 8
LINK_BACKOFF: Final = 0.2  # seconds before the first repeat; doubled each time
LINK_BACKOFF_MAX: Final = 5.0
LINK_RETRY_AFTER_MAX: Final = 30.0  # the longest Retry-After obeyed
#: failures shown one per line before the counts (the rest are counted)
SHOWN_FAILURES: Final = 5
CYCLE_NAMES: Final = {
    "pm_card_visa": "charged",
    "pm_card_chargeDeclinedInsufficientFunds": "insufficient funds",
    "pm_card_chargeDeclined": "card_declined (generic_decline)",
    "pm_card_chargeDeclinedExpiredCard": "card_declined (expired_card)",
    "pm_card_authenticationRequired": "authentication_required",
    "missing_customer": "customer not found (no such Stripe customer)",
    "foreign_card": "provider_rejected (another customer's card)",
    "unlinked": "payment_method_missing (not linked)",
}


def serve_stripe(
    *,
    host: str,
    port: int,
    api_key: str | None,
    read_only_key: str | None,
    key_retention: float,
    latency_ms: float,
    server_error_rate: float,
    lost_answer_rate: float,
    rate_limit_rate: float,
    seed: int,
    state: str,
) -> None:
    if api_key is not None and stripe_key_problem(api_key):
        fail(f"--api-key for the fake Stripe: {stripe_key_problem(api_key)}")
    if state != ":memory:" and Path(state).is_dir():
        fail(f"--state {escape(state)} is a directory; give a file")
    try:
        app = FakeStripe(
            api_key=api_key,
            read_only_key=read_only_key,
            key_retention=key_retention,
            latency_ms=latency_ms,
            server_error_rate=server_error_rate,
            lost_answer_rate=lost_answer_rate,
            rate_limit_rate=rate_limit_rate,
            seed=seed,
            state=state,
        )
    except (OSError, ValueError) as exc:
        fail(f"--state {escape(state)}: {escape(str(exc))}")

    async def main() -> None:
        from antaeus.cli.provider import serve_announced

        faults = ", ".join(
            f"{name} {value:g}"
            for name, value in (
                ("latency", latency_ms),
                ("5xx rate", server_error_rate),
                ("lost-answer rate", lost_answer_rate),
                ("429 rate", rate_limit_rate),
            )
            if value
        )
        await serve_announced(
            app,
            host,
            port,
            "a fake Stripe API",
            [
                f"faults: {faults or 'none'}",
                f"key retention {key_retention:g} s",
                f"API key {mask_key(api_key)}" if api_key else "any test-mode key (sk_test_…)",
                f"{len(app.state.customers)} customers",
                f"state {state}",
                f"seed {seed}",
            ],
        )

    run(main())


def link_customers(
    *,
    url: str,
    token: str,
    stripe_api_base: str,
    stripe_api_key: str,
    customers: list[int] | None,
    all_succeed: bool,
    relink: bool,
) -> None:
    problem = stripe_key_problem(stripe_api_key)
    if problem:
        fail(f"--stripe-api-key: {problem}")
    if "_live_" in stripe_api_key[:8]:
        fail("stripe-link attaches Stripe's test cards: it takes a test-mode key, not a live one")
    failed = run(_link(url, token, stripe_api_base, stripe_api_key, customers, all_succeed, relink))
    if failed:
        raise SystemExit(1)


class _Abort(Exception):  # noqa: N818 (the run stops: one line says why)
    pass


class _Repeatable(Exception):  # noqa: N818 (an answer worth repeating the request for)
    def __init__(self, message: str, wait: float = 0.0) -> None:
        super().__init__(message)
        self.wait = wait


def _repeat_wait(exc: BaseException) -> float | None:
    """Seconds to wait before repeating the request that raised `exc`, or None: do not."""
    import stripe

    if isinstance(exc, _Repeatable):
        return exc.wait
    if isinstance(exc, stripe.APIConnectionError):
        return 0.0
    if isinstance(exc, stripe.StripeError):
        status = exc.http_status or 0
        if status in (409, 429):
            headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
            return retry_after(headers.get("retry-after"), max_seconds=LINK_RETRY_AFTER_MAX)
        return 0.0 if status >= 500 else None
    if isinstance(
        exc,
        (aiohttp.ClientError, httpx.TransportError, OSError, asyncio.IncompleteReadError),
    ):
        return 0.0  # no answer, or part of one
    if isinstance(exc, TimeoutError):
        return 0.0
    return None


async def _repeating(call: Callable[[], Awaitable[T]], repeats: list[int]) -> T:
    """`call()`, repeated while it fails in a way worth repeating (see the module)."""
    backoff = LINK_BACKOFF
    for sent in range(1, LINK_TRIES + 1):
        try:
            return await call()
        except Exception as exc:
            wait = _repeat_wait(exc)
            if wait is None or sent == LINK_TRIES:
                raise
        repeats[0] += 1
        await asyncio.sleep(max(wait, random.uniform(backoff / 2, backoff)))
        backoff = min(backoff * 2, LINK_BACKOFF_MAX)
    raise AssertionError("unreachable")  # pragma: no cover


def _answer(response: httpx.Response, what: str) -> httpx.Response:
    """`response`, or raise: repeat a 429 or a 5xx; stop the run on a 401/403."""
    status = response.status_code
    if status == 429 or status >= 500:
        wait = retry_after(response.headers.get("retry-after"), max_seconds=LINK_RETRY_AFTER_MAX)
        raise _Repeatable(f"{what} answered {status}", wait if status == 429 else 0.0)
    if status in (401, 403):
        raise _Abort(f"{what} answered {status}: {response.text[:200]} (check --token)")
    return response


async def _link(
    url: str,
    token: str,
    base: str,
    key: str,
    only: list[int] | None,
    all_succeed: bool,
    relink: bool,
) -> int:
    """Link the customers; print the counts; answer how many failed."""
    import stripe

    from antaeus.payments.stripe import StripeProviderSettings, make_http_client

    api = httpx.AsyncClient(
        base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    http_client = make_http_client(StripeProviderSettings(api_key=key, api_base=base))
    client = stripe.StripeClient(
        key,
        base_addresses={"api": base.rstrip("/")},
        max_network_retries=0,  # stripe-link repeats itself, with its own keys
        http_client=http_client,
    )
    run_id = secrets.token_hex(6)  # a repeat within this run reuses its key; a new run not
    repeats = [0]
    counts: dict[str, int] = {}
    outcome = {"linked": 0, "left unlinked": 0, "already linked": 0, "failed": 0}
    failures: list[str] = []
    spare: list[str] = []  # the card "foreign_card" customers are given (made once)
    spare_lock = asyncio.Lock()
    slots = asyncio.Semaphore(LINK_CONCURRENCY)

    def shown(text: str) -> str:
        return scrub(text.replace(key, mask_key(key)), url)

    async def stripe_post(what: str, call: Callable[[dict[str, str]], Awaitable[Any]]) -> Any:
        options = {"idempotency_key": f"antaeus-stripe-link-{run_id}-{what}"}
        return await _repeating(lambda: call(options), repeats)

    async def new_customer(cid: int) -> str:
        customer = await stripe_post(
            f"{cid}-customer",
            lambda o: client.v1.customers.create_async(
                {"metadata": {"antaeus_customer": str(cid)}},
                options=o,  # type: ignore[arg-type]
            ),
        )
        return str(customer.id)

    async def attach(what: str, card: str, customer: str) -> str:
        pm = await stripe_post(
            f"{what}-attach",
            lambda o: client.v1.payment_methods.attach_async(
                card,
                {"customer": customer},
                options=o,  # type: ignore[arg-type]
            ),
        )
        return str(pm.id)

    async def foreign_card() -> str:
        async with spare_lock:
            if not spare:
                other = await stripe_post(
                    "spare-customer",
                    lambda o: client.v1.customers.create_async(
                        {"metadata": {"antaeus_spare": "true"}, "name": "stripe-link spare"},
                        options=o,  # type: ignore[arg-type]
                    ),
                )
                spare.append(await attach("spare", "pm_card_visa", str(other.id)))
            return spare[0]

    async def link_one(row: dict[str, Any]) -> None:
        cid = int(row["id"])
        async with slots:
            try:
                done = await _link_one(row)
            except _Abort:
                raise
            except stripe.AuthenticationError as exc:
                raise _Abort(f"Stripe at {base} refused the key {mask_key(key)}: {exc}") from None
            except stripe.PermissionError as exc:
                raise _Abort(f"Stripe at {base}: the key {mask_key(key)} may not: {exc}") from None
            except Exception as exc:  # this customer failed; the others go on
                outcome["failed"] += 1
                why = str(exc) or type(exc).__name__
                failures.append(f"customer {cid}: {shown(why)[:300]}")
                return
        outcome[done] += 1

    async def _link_one(row: dict[str, Any]) -> str:
        cid = int(row["id"])
        linked = row.get("providerCustomerId") or row.get("providerPaymentMethodId")
        if linked and not relink:
            return "already linked"
        kind, card = ("card", "pm_card_visa") if all_succeed else LINK_CYCLE[cid % len(LINK_CYCLE)]
        if kind == "unlinked":
            refs: dict[str, str | None] = {
                "providerCustomerId": None,
                "providerPaymentMethodId": None,
            }
        elif kind == "missing_customer":
            refs = {
                "providerCustomerId": f"cus_missing{cid}",
                "providerPaymentMethodId": "pm_card_visa",
            }
        elif kind == "foreign_card":
            theirs = await foreign_card()
            refs = {
                "providerCustomerId": await new_customer(cid),
                "providerPaymentMethodId": theirs,
            }
        else:
            customer = await new_customer(cid)
            pm = await attach(str(cid), card, customer)
            refs = {"providerCustomerId": customer, "providerPaymentMethodId": pm}
        what = f"PATCH /rest/v1/customers/{cid}"
        response = await _repeating(
            lambda: _patch(api, f"/rest/v1/customers/{cid}", refs, what), repeats
        )
        if response.status_code != 200:
            raise RuntimeError(f"{what} answered {response.status_code}: {response.text[:200]}")
        name = CYCLE_NAMES.get(card if kind == "card" else kind, kind)
        counts[name] = counts.get(name, 0) + 1
        return "left unlinked" if kind == "unlinked" else "linked"

    try:
        try:
            rows = await _antaeus_customers(api, url, only, repeats)
        except _Abort as exc:
            fail(escape(shown(str(exc))))
        except (httpx.HTTPError, _Repeatable) as exc:
            fail(f"cannot list the customers of {escape(mask_url(url))}: {escape(shown(str(exc)))}")
        tasks = [asyncio.ensure_future(link_one(row)) for row in rows]
        try:
            await asyncio.gather(*tasks)
        except _Abort as exc:
            fail(escape(shown(str(exc))))
        finally:  # an abort stops the others
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await api.aclose()
        await http_client.close_async()  # type: ignore[no-untyped-call]
    for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        out.print(f"  {n:6d}  {name}", markup=False, highlight=False)
    for line in failures[:SHOWN_FAILURES]:
        err.print(line, markup=False, highlight=False, soft_wrap=True)
    if len(failures) > SHOWN_FAILURES:
        err.print(f"… and {len(failures) - SHOWN_FAILURES} more failed", markup=False)
    total = sum(outcome.values())
    out.print(
        "stripe-link: "
        + ", ".join(f"{n} {name}" for name, n in outcome.items())
        + f" ({total} customers; Stripe at {base}, key {mask_key(key)}; "
        + f"{repeats[0]} request{'s' if repeats[0] != 1 else ''} repeated)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return outcome["failed"]


async def _patch(
    api: httpx.AsyncClient, path: str, refs: dict[str, str | None], what: str
) -> httpx.Response:
    return _answer(await api.patch(path, json=refs), what)


async def _get(api: httpx.AsyncClient, path: str, what: str, **params: Any) -> httpx.Response:
    return _answer(await api.get(path, params=params or None), what)


async def _antaeus_customers(
    api: httpx.AsyncClient, url: str, only: list[int] | None, repeats: list[int]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for cid in only or ():
        path = f"/rest/v1/customers/{cid}"
        response = await _repeating(partial(_get, api, path, f"GET {path}"), repeats)
        if response.status_code != 200:
            fail(f"GET {path} answered {response.status_code}")
        rows.append(response.json())
    if only:
        return rows
    after = 0
    what = f"{mask_url(url)}/rest/v1/customers"
    while True:
        listing = partial(_get, api, "/rest/v1/customers", what, after=after, limit=500)
        response = await _repeating(listing, repeats)
        if response.status_code != 200:
            fail(f"{escape(what)} answered {response.status_code}: {escape(response.text[:300])}")
        page = response.json()
        rows.extend(page)
        if not page or "next" not in response.headers.get("link", ""):
            return rows
        after = int(page[-1]["id"])
        await asyncio.sleep(0)


__all__ = ["DEFAULT_API_BASE", "link_customers", "serve_stripe"]
