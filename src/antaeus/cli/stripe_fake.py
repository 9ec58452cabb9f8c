"""`antaeus provider serve --stripe` and `antaeus provider stripe-link`: the fake Stripe, and
giving Antaeus customers Stripe test references (a customer and a saved test card each)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Final

import httpx
from rich.markup import escape

from antaeus.cli.common import err, fail, out, run
from antaeus.payments.fake_stripe import FakeStripe, serve
from antaeus.payments.simulator_server import listen
from antaeus.payments.stripe import (
    DEFAULT_API_BASE,
    StripeProviderSettings,
    make_http_client,
    mask_key,
)
from antaeus.payments.stripe_rules import stripe_key_problem
from antaeus.security import mask_url, scrub

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
        try:
            sock = listen(host, port)
        except OSError as exc:
            fail(f"cannot listen on {escape(host)}:{port}: {escape(exc.strerror or str(exc))}")
        shown = f"[{host}]" if ":" in host else host
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
        err.print(
            f"antaeus provider: serving a fake Stripe API on http://{shown}:{port} "
            f"(faults: {faults or 'none'}; key retention {key_retention:g} s; "
            f"{'API key ' + mask_key(api_key) if api_key else 'any test-mode key (sk_test_…)'}; "
            f"{len(app.state.customers)} customers; state {state}; seed {seed}; "
            f"pid {os.getpid()})",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        await serve(app, sock)

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
    run(_link(url, token, stripe_api_base, stripe_api_key, customers, all_succeed, relink))


async def _link(
    url: str,
    token: str,
    base: str,
    key: str,
    only: list[int] | None,
    all_succeed: bool,
    relink: bool,
) -> None:
    import stripe

    api = httpx.AsyncClient(
        base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    http_client = make_http_client(StripeProviderSettings(api_key=key, api_base=base))
    client = stripe.StripeClient(
        key,
        base_addresses={"api": base.rstrip("/")},
        max_network_retries=2,  # creating customers twice is harmless here
        http_client=http_client,
    )
    counts: dict[str, int] = {}
    spare: list[str] = []  # the card "foreign_card" customers are given (made once)
    spare_lock = asyncio.Lock()
    slots = asyncio.Semaphore(LINK_CONCURRENCY)

    async def foreign_card() -> str:
        async with spare_lock:
            if not spare:
                other = await client.v1.customers.create_async(
                    {"metadata": {"antaeus_spare": "true"}, "name": "stripe-link spare"}
                )
                pm = await client.v1.payment_methods.attach_async(
                    "pm_card_visa", {"customer": other.id}
                )
                spare.append(pm.id)
            return spare[0]

    async def link_one(row: dict[str, Any]) -> None:
        async with slots:
            await _link_one(row)

    async def _link_one(row: dict[str, Any]) -> None:
        cid = int(row["id"])
        linked = row.get("providerCustomerId") or row.get("providerPaymentMethodId")
        if linked and not relink:
            kept = "already linked (kept; --relink to change)"
            counts[kept] = counts.get(kept, 0) + 1
            return
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
            mine = await client.v1.customers.create_async(
                {"metadata": {"antaeus_customer": str(cid)}}
            )
            refs = {"providerCustomerId": mine.id, "providerPaymentMethodId": theirs}
        else:
            customer = await client.v1.customers.create_async(
                {"metadata": {"antaeus_customer": str(cid)}}
            )
            pm = await client.v1.payment_methods.attach_async(card, {"customer": customer.id})
            refs = {"providerCustomerId": customer.id, "providerPaymentMethodId": pm.id}
        response = await api.patch(f"/rest/v1/customers/{cid}", json=refs)
        if response.status_code != 200:
            fail(
                f"PATCH /rest/v1/customers/{cid} answered {response.status_code}: "
                f"{escape(response.text[:300])}"
            )
        name = CYCLE_NAMES.get(card if kind == "card" else kind, kind)
        counts[name] = counts.get(name, 0) + 1

    try:
        rows = await _antaeus_customers(api, url, only)
        tasks = [asyncio.ensure_future(link_one(row)) for row in rows]
        try:
            await asyncio.gather(*tasks)
        finally:  # the first failure stops the others
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    except stripe.StripeError as exc:
        shown = str(exc).replace(key, mask_key(key))
        fail(f"Stripe at {escape(base)} answered: {escape(shown)}")
    except httpx.HTTPError as exc:
        fail(f"cannot reach {escape(mask_url(url))}: {escape(scrub(str(exc), url))}")
    finally:
        await api.aclose()
        await http_client.close_async()  # type: ignore[no-untyped-call]
    total = sum(counts.values())
    out.print(f"linked {total} customers to Stripe at {base} (key {mask_key(key)}):", markup=False)
    for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        out.print(f"  {n:6d}  {name}", markup=False, highlight=False)


async def _antaeus_customers(
    api: httpx.AsyncClient, url: str, only: list[int] | None
) -> list[dict[str, Any]]:
    if only:
        rows = []
        for cid in only:
            response = await api.get(f"/rest/v1/customers/{cid}")
            if response.status_code != 200:
                fail(f"GET /rest/v1/customers/{cid} answered {response.status_code}")
            rows.append(response.json())
        return rows
    rows = []
    after = 0
    while True:
        response = await api.get("/rest/v1/customers", params={"after": after, "limit": 500})
        if response.status_code != 200:
            fail(
                f"{escape(mask_url(url))}/rest/v1/customers answered {response.status_code}: "
                f"{escape(response.text[:300])}"
            )
        page = response.json()
        rows.extend(page)
        if not page or "next" not in response.headers.get("link", ""):
            return rows
        after = int(page[-1]["id"])
        await asyncio.sleep(0)


__all__ = ["DEFAULT_API_BASE", "link_customers", "serve_stripe"]
