"""`antaeus provider serve --stripe` and `antaeus provider stripe-link`."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import subprocess
import sys
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from typer.testing import CliRunner

from antaeus.cli.main import app
from antaeus.cli.stripe_fake import LINK_CYCLE
from antaeus.domain.money import Currency, Money
from antaeus.payments.provider import (
    AuthenticationRequiredError,
    CardDeclinedError,
    Charged,
    ChargeRequest,
    CustomerNotFoundError,
    Declined,
    RequestRejectedError,
)
from antaeus.payments.stripe import StripePaymentProvider, StripeProviderSettings
from tests.payments.fake_stripe_server import running_asgi, running_fake_stripe
from tests.payments.simulator import clean_env, free_port, stop

TOKEN = "antaeus-test-token"


def _antaeus_stub(customers: dict[int, dict[str, Any]]) -> Starlette:
    """The two Antaeus endpoints stripe-link uses, as the customers helper defines them."""

    def authorized(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {TOKEN}"

    async def listing(request: Request) -> JSONResponse:
        if not authorized(request):
            return JSONResponse({"error": "unauthorized"}, 401)
        after = int(request.query_params.get("after", 0))
        limit = int(request.query_params.get("limit", 100))
        rows = [c for i, c in sorted(customers.items()) if i > after][: limit + 1]
        headers = {}
        if len(rows) > limit:
            rows = rows[:limit]
            headers["Link"] = f'<http://x/rest/v1/customers?after={rows[-1]["id"]}>; rel="next"'
        return JSONResponse(rows, headers=headers)

    async def patch(request: Request) -> JSONResponse:
        if not authorized(request):
            return JSONResponse({"error": "unauthorized"}, 401)
        customer = customers[int(request.path_params["id"])]
        doc = await request.json()
        assert set(doc) <= {"providerCustomerId", "providerPaymentMethodId", "timezone"}
        customer.update(doc)
        return JSONResponse(customer)

    return Starlette(
        routes=[
            Route("/rest/v1/customers", listing, methods=["GET"]),
            Route("/rest/v1/customers/{id}", patch, methods=["PATCH"]),
        ]
    )


def test_stripe_link_gives_customers_test_references_that_show_every_outcome() -> None:
    customers: dict[int, dict[str, Any]] = {
        i: {"id": i, "currency": "EUR", "providerCustomerId": None, "providerPaymentMethodId": None}
        for i in range(1, 31)
    }
    with running_fake_stripe() as fake, running_asgi(_antaeus_stub(customers)) as url:
        result = CliRunner().invoke(
            app,
            [
                "provider",
                "stripe-link",
                "--url",
                url,
                "--token",
                TOKEN,
                "--stripe-api-base",
                fake.url,
                "--stripe-api-key",
                fake.api_key,
            ],
        )
        assert result.exit_code == 0, result.output
        assert "stripe-link: 28 linked, 2 left unlinked, 0 already linked, 0 failed" in (
            result.output
        )
        assert fake.api_key not in result.output
        outcomes = asyncio.run(_bill(fake.url, fake.api_key, customers))
    expected = {
        "pm_card_visa": Charged,
        "pm_card_chargeDeclinedInsufficientFunds": Declined,
        "pm_card_chargeDeclined": CardDeclinedError,
        "pm_card_chargeDeclinedExpiredCard": CardDeclinedError,
        "pm_card_authenticationRequired": AuthenticationRequiredError,
        "missing_customer": CustomerNotFoundError,
        "foreign_card": RequestRejectedError,
        "unlinked": type(None),
    }
    for cid, outcome in outcomes.items():
        kind, card = LINK_CYCLE[cid % len(LINK_CYCLE)]
        assert isinstance(outcome, expected[card if kind == "card" else kind]), (cid, outcome)
    assert {type(o).__name__ for o in outcomes.values()} == {
        "Charged",
        "Declined",
        "CardDeclinedError",
        "AuthenticationRequiredError",
        "CustomerNotFoundError",
        "RequestRejectedError",
        "NoneType",
    }
    unlinked = [c["id"] for c in customers.values() if c["providerCustomerId"] is None]
    assert unlinked == [14, 29]  # one in 15: payment_method_missing


def _link(url: str, fake: Any, *extra: str) -> Any:
    return CliRunner().invoke(
        app,
        [
            "provider",
            "stripe-link",
            "--url",
            url,
            "--token",
            TOKEN,
            "--stripe-api-base",
            fake.url,
            "--stripe-api-key",
            fake.api_key,
            *extra,
        ],
    )


def test_stripe_link_against_a_stripe_that_drops_connections_finishes_in_one_run() -> None:
    """Dropped connections after Stripe acted, 5xx and 429: each request is repeated with
    its idempotency key (no Stripe customer made twice), and one run ends with the counts."""
    customers: dict[int, dict[str, Any]] = {
        i: {"id": i, "currency": "EUR", "providerCustomerId": None, "providerPaymentMethodId": None}
        for i in range(1, 31)
    }
    customers[3]["providerCustomerId"] = "cus_kept"  # already linked: kept
    faults = {"lost_answer_rate": 0.2, "server_error_rate": 0.1, "rate_limit_rate": 0.05}
    with (
        running_fake_stripe(seed=5, **faults) as fake,
        running_asgi(_antaeus_stub(customers)) as url,
    ):
        result = _link(url, fake)
        stats = fake.app.stats
        made = collections.Counter(
            c["metadata"].get("antaeus_customer") for c in fake.app.state.customers.values()
        )
        attached = collections.Counter(
            pm["customer"] for pm in fake.app.state.payment_methods.values()
        )
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert stats.lost_answers > 0, stats
    assert stats.server_errors > 0, stats
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(
        "stripe-link: 27 linked, 2 left unlinked, 1 already linked, 0 failed (30 customers;"
    ), result.output
    assert fake.api_key not in result.output
    assert customers[3]["providerCustomerId"] == "cus_kept"
    for cid, c in customers.items():
        if cid == 3 or LINK_CYCLE[cid % len(LINK_CYCLE)][0] in ("unlinked", "missing_customer"):
            continue
        assert made[str(cid)] == 1, (cid, made[str(cid)])  # repeats replayed, never made twice
        assert c["providerCustomerId"] in fake.app.state.customers
        pm = c["providerPaymentMethodId"]
        assert pm in fake.app.state.payment_methods
        assert attached[c["providerCustomerId"]] <= 1


def test_stripe_link_counts_a_customer_it_cannot_link_and_goes_on() -> None:
    customers: dict[int, dict[str, Any]] = {
        i: {"id": i, "currency": "EUR", "providerCustomerId": None, "providerPaymentMethodId": None}
        for i in range(1, 6)
    }
    stub = _antaeus_stub(customers)
    gone = 4  # listed, then deleted before its PATCH: 404

    async def deleted(request: Request) -> JSONResponse:
        return JSONResponse({"error": "not_found"}, 404)

    stub.router.routes.insert(0, Route(f"/rest/v1/customers/{gone}", deleted, methods=["PATCH"]))
    with running_fake_stripe() as fake, running_asgi(stub) as url:
        result = _link(url, fake, "--all-succeed")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert f"customer {gone}: " in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("stripe-link: 4 linked, 0 left unlinked, 0 already linked, 1 failed")


def test_stripe_link_stops_at_a_refused_key_with_one_line() -> None:
    customers: dict[int, dict[str, Any]] = {
        i: {"id": i, "currency": "EUR", "providerCustomerId": None, "providerPaymentMethodId": None}
        for i in range(1, 40)
    }
    with running_fake_stripe() as fake, running_asgi(_antaeus_stub(customers)) as url:
        wrong = dataclasses.replace(fake, api_key="sk_test_wrong_0123456789abcdefghij")
        result = _link(url, wrong)
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert "refused the key sk_test_****ghij" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    needs_stripe = [
        c for i, c in customers.items() if LINK_CYCLE[i % 15][0] in ("card", "foreign_card")
    ]
    assert all(c["providerCustomerId"] is None for c in needs_stripe)


async def _bill(base: str, key: str, customers: dict[int, dict[str, Any]]) -> dict[int, Any]:
    provider = StripePaymentProvider(StripeProviderSettings(api_key=key, api_base=base))
    outcomes: dict[int, Any] = {}
    try:
        for cid, c in customers.items():
            request = ChargeRequest(
                cid,
                cid,
                Money.of(Decimal("10.00"), Currency.EUR),
                f"link-{cid}",
                1,
                c["providerCustomerId"],
                c["providerPaymentMethodId"],
            )
            if provider.refusal(request) is not None:
                outcomes[cid] = None
                continue
            try:
                outcomes[cid] = await provider.charge(request)
            except Exception as exc:
                outcomes[cid] = exc
    finally:
        await provider.aclose()
    return outcomes


def test_stripe_link_refuses_a_live_key_and_keeps_it_secret() -> None:
    key = "sk_live_0123456789abcdefghijklmnop"
    result = CliRunner().invoke(
        app, ["provider", "stripe-link", "--token", TOKEN, "--stripe-api-key", key]
    )
    assert result.exit_code != 0
    assert "test-mode key" in result.output
    assert key not in result.output


def test_serve_stripe_serves_the_fake_and_refuses_simulator_flags() -> None:
    bad = CliRunner().invoke(app, ["provider", "serve", "--stripe", "--failure-rate", "0.5"])
    assert bad.exit_code != 0
    assert "--failure-rate cannot be used with --stripe" in bad.output
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "antaeus", "provider", "serve", "--stripe", "--port", str(port)],
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/_fake/stats", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail("the fake Stripe did not start")
            time.sleep(0.1)
        auth = {"Authorization": "Bearer sk_test_cli_0123456789"}
        customer = httpx.post(f"{base}/v1/customers", headers=auth).json()["id"]
        form = {
            "amount": "1000",
            "currency": "eur",
            "customer": customer,
            "payment_method": "pm_card_visa",
            "confirm": "true",
            "metadata[antaeus_key]": "k1",
        }
        first = httpx.post(
            f"{base}/v1/payment_intents", headers={**auth, "Idempotency-Key": "k1"}, data=form
        )
        assert first.status_code == 200
        assert first.json()["status"] == "succeeded"
        assert first.json()["metadata"] == {"antaeus_key": "k1"}
        again = httpx.post(
            f"{base}/v1/payment_intents", headers={**auth, "Idempotency-Key": "k1"}, data=form
        )
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json()["id"] == first.json()["id"]
        other = httpx.post(
            f"{base}/v1/payment_intents",
            headers={**auth, "Idempotency-Key": "k1"},
            data={**form, "amount": "1001"},
        )
        assert other.status_code == 400
        assert other.json()["error"]["type"] == "idempotency_error"
        refused = httpx.post(
            f"{base}/v1/payment_intents",
            headers={"Authorization": "Bearer sk_live_x123456789"},
            data=form,
        )
        assert refused.status_code == 401
    finally:
        stop(process)
        assert process.stderr is not None
        process.stderr.close()
