"""Simulated customers behave like real ones: their account decides, and fixing it is what helps.

The embedded simulator with seeded customer profiles (`failure_rate` > 0, no
accounts loaded) charges invoices made through the real API by a real
`Worker`; its accounts are changed through the simulator's admin API
(`create_simulator_app`, served in-process on the same provider). A plain retry
of an invoice changes nothing; creating, funding or re-currencying the account,
then retrying, makes it `PAID`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from antaeus.clock import ManualClock
from antaeus.simulators.simulated import (
    PROFILE_ANSWERS_LOST,
    PROFILE_FUNDED,
    PROFILE_LOW,
    PROFILE_NONE,
    PROFILE_OTHER_CURRENCY,
    SimulatedPaymentProvider,
)
from antaeus.simulators.simulator_server import create_simulator_app
from antaeus.storage.database import Database
from tests.api.test_billing_api import charge, get_json, new_customer, new_invoice, trigger


@pytest.fixture
async def profiled() -> AsyncIterator[SimulatedPaymentProvider]:
    """Every customer has a seeded profile; no transient faults: each answer is the account's."""
    provider = SimulatedPaymentProvider(
        ":memory:", failure_rate=1.0, network_error_rate=0.0, ambiguous_rate=0.0, seed=11
    )
    try:
        yield provider
    finally:
        await provider.aclose()


@pytest.fixture
async def admin(profiled: SimulatedPaymentProvider) -> AsyncIterator[httpx.AsyncClient]:
    """The simulator's admin API (what `antaeus provider serve` serves) on the same provider."""
    transport = httpx.ASGITransport(app=create_simulator_app(profiled))
    async with httpx.AsyncClient(transport=transport, base_url="http://simulator.test") as c:
        yield c


async def customer_with(
    client: httpx.AsyncClient, simulator: SimulatedPaymentProvider, profile: str, currency: str
) -> int:
    """A new Antaeus customer whose seeded profile at the simulator is `profile`."""
    for _ in range(200):
        cid = await new_customer(client, currency)
        if simulator.profile(cid) == profile:
            return cid
    raise AssertionError(f"no customer with profile {profile} in 200")


async def bill(
    client: httpx.AsyncClient,
    database: Database,
    simulator: SimulatedPaymentProvider,
    clock: ManualClock,
) -> None:
    await trigger(client)
    await charge(database, simulator, clock)


async def status(client: httpx.AsyncClient, iid: int) -> tuple[str, str | None]:
    found = await get_json(client, f"/rest/v1/invoices/{iid}")
    return found["status"], found["lastFailure"]


async def retry(client: httpx.AsyncClient, iid: int) -> None:
    response = await client.post(f"/rest/v1/invoices/{iid}/retry", json={"note": "try again"})
    assert response.status_code == 200, response.text


async def test_no_account_stays_not_found_on_a_plain_retry_and_is_paid_once_created(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    profiled: SimulatedPaymentProvider,
    admin: httpx.AsyncClient,
) -> None:
    cid = await customer_with(client, profiled, PROFILE_NONE, "GBP")
    iid = await new_invoice(client, cid, "42.00", "GBP")
    await bill(client, database, profiled, clock)
    assert await status(client, iid) == ("FAILED", "customer_not_found")
    assert (await admin.get(f"/admin/accounts/{cid}")).status_code == 404

    for _ in range(3):  # nothing changed at the provider: the same answer every time
        await retry(client, iid)
        await bill(client, database, profiled, clock)
        assert await status(client, iid) == ("FAILED", "customer_not_found")

    created = await admin.post(f"/admin/accounts/{cid}", json={"currency": "GBP", "balance": "50"})
    assert created.status_code == 201, created.text
    assert created.json() == {"customerId": cid, "currency": "GBP", "balance": "50.00"}
    await retry(client, iid)
    await bill(client, database, profiled, clock)
    assert await status(client, iid) == ("PAID", None)
    account = (await admin.get(f"/admin/accounts/{cid}")).json()
    assert account["balance"] == "8.00"  # the charge debited it
    [entry] = [c for c in (await admin.get("/admin/ledger")).json()["charges"]]
    assert (entry["invoiceId"], entry["value"], entry["currency"]) == (iid, "42.00", "GBP")


async def test_too_little_money_keeps_declining_until_funded(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    profiled: SimulatedPaymentProvider,
    admin: httpx.AsyncClient,
) -> None:
    cid = await customer_with(client, profiled, PROFILE_LOW, "DKK")
    iid = await new_invoice(client, cid, "300.00", "DKK")
    await bill(client, database, profiled, clock)
    assert await status(client, iid) == ("PENDING", "insufficient_funds")
    opened = (await admin.get(f"/admin/accounts/{cid}")).json()
    assert opened["currency"] == "DKK"
    before = float(opened["balance"])
    assert before < 300

    retried = await client.post("/rest/v1/billing/retry")  # due now again, nothing fixed
    assert retried.status_code == 202, retried.text
    await charge(database, profiled, clock)
    assert await status(client, iid) == ("PENDING", "insufficient_funds")

    funded = await admin.post(f"/admin/accounts/{cid}/fund", json={"amount": "300.00"})
    assert funded.status_code == 200, funded.text
    assert float(funded.json()["balance"]) == pytest.approx(before + 300)
    retried = await client.post("/rest/v1/billing/retry")
    assert retried.status_code == 202, retried.text
    await charge(database, profiled, clock)
    assert await status(client, iid) == ("PAID", None)
    after = (await admin.get(f"/admin/accounts/{cid}")).json()
    assert float(after["balance"]) == pytest.approx(before)  # funded 300, charged 300
    outcomes = [a["outcome"] for a in await get_json(client, f"/rest/v1/invoices/{iid}/attempts")]
    assert outcomes == ["insufficient_funds", "insufficient_funds", "charged"]


async def test_another_currency_mismatches_until_the_account_is_in_the_invoices(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    profiled: SimulatedPaymentProvider,
    admin: httpx.AsyncClient,
) -> None:
    cid = await customer_with(client, profiled, PROFILE_OTHER_CURRENCY, "GBP")
    iid = await new_invoice(client, cid, "10.00", "GBP")
    await bill(client, database, profiled, clock)
    assert await status(client, iid) == ("FAILED", "currency_mismatch")
    account = (await admin.get(f"/admin/accounts/{cid}")).json()
    assert account["currency"] != "GBP"  # the mismatch is the account's currency, shown

    await retry(client, iid)
    await bill(client, database, profiled, clock)
    assert await status(client, iid) == ("FAILED", "currency_mismatch")

    changed = await admin.post(f"/admin/accounts/{cid}", json={"currency": "GBP"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["balance"] == account["balance"]  # kept
    await retry(client, iid)
    await bill(client, database, profiled, clock)
    assert await status(client, iid) == ("PAID", None)


async def test_a_funded_customer_is_paid_and_its_next_invoices_too(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    profiled: SimulatedPaymentProvider,
) -> None:
    cid = await customer_with(client, profiled, PROFILE_FUNDED, "SEK")
    first = await new_invoice(client, cid, "99.99", "SEK")
    await bill(client, database, profiled, clock)
    second = await new_invoice(client, cid, "0.01", "SEK")
    await bill(client, database, profiled, clock)
    assert [await status(client, i) for i in (first, second)] == [("PAID", None)] * 2


async def test_lost_answers_end_in_review_with_the_charge_in_the_ledger(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    profiled: SimulatedPaymentProvider,
    admin: httpx.AsyncClient,
) -> None:
    cid = await customer_with(client, profiled, PROFILE_ANSWERS_LOST, "EUR")
    iid = await new_invoice(client, cid, "12.50", "EUR")
    await bill(client, database, profiled, clock)
    for _ in range(20):  # the unknown outcome is repeated with its key after a backoff
        if (await status(client, iid))[0] != "PENDING":
            break
        clock.advance(timedelta(seconds=31))
        await charge(database, profiled, clock)
    assert await status(client, iid) == ("REVIEW", "provider_rejected")
    [attempt] = await get_json(client, f"/rest/v1/invoices/{iid}/attempts")
    [entry] = (await admin.get("/admin/ledger")).json()["charges"]
    assert entry["idempotencyKey"] == attempt["idempotencyKey"]  # it was charged, once

    # the operations guide's procedure: look the key up at the provider, resolve as charged
    resolved = await client.post(
        f"/rest/v1/invoices/{iid}/resolve",
        json={"charged": True, "chargeId": entry["chargeId"], "note": "in the ledger"},
    )
    assert resolved.status_code == 200, resolved.text
    assert await status(client, iid) == ("PAID", None)
    assert len((await admin.get("/admin/ledger")).json()["charges"]) == 1
