"""POST /rest/v1/invoices/retry and /void: a person's action on every invoice of a filter.

Real app, real SQLite and PostgreSQL, a real `Worker` against the simulated
provider: each invoice's action is the single action's conditional UPDATE, so
counts stay right when some matching invoices do not allow it and when a worker
charges the same invoices at the same moment.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from antaeus.billing import service
from antaeus.clock import ManualClock
from antaeus.domain.invoice import InvoiceStatus
from antaeus.domain.money import Currency
from antaeus.domain.policy import PolicySettings
from antaeus.payments.provider import OutcomeUnknownError
from antaeus.simulators.simulated import Account, SimulatedPaymentProvider
from antaeus.storage.database import Database
from antaeus.storage.repositories.invoices import InvoiceFilter
from antaeus.storage.tables import events, invoice_actions, invoices
from tests.api.test_billing_api import (
    charge,
    get_json,
    new_customer,
    new_invoice,
    simulator,  # noqa: F401  (the fixture)
    trigger,
)
from tests.billing.fakes import ScriptedProvider

RETRY = "/rest/v1/invoices/retry"
VOID = "/rest/v1/invoices/void"


async def _statuses(client: httpx.AsyncClient) -> dict[int, tuple[str, str | None]]:
    rows = await get_json(client, "/rest/v1/invoices?limit=10000")
    return {r["id"]: (r["status"], r["lastFailure"]) for r in rows}


async def _actions(database: Database) -> list[tuple[int, str, str, str | None]]:
    async with database.read() as conn:
        rows = await conn.execute(
            select(
                invoice_actions.c.invoice_id,
                invoice_actions.c.action,
                invoice_actions.c.actor,
                invoice_actions.c.note,
            ).order_by(invoice_actions.c.id)
        )
        return [(r.invoice_id, r.action, r.actor, r.note) for r in rows]


async def _a_billed_world(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,  # noqa: F811
) -> dict[str, list[int]]:
    """Invoices charged once: PAID, FAILED customer_not_found, FAILED currency_mismatch."""
    paying = [await new_customer(client) for _ in range(2)]
    unknown = [await new_customer(client) for _ in range(3)]
    other_currency = await new_customer(client)
    simulator.store.set_accounts(
        [Account(c, Currency.EUR, 1_000_000) for c in paying]
        + [Account(other_currency, Currency.SEK, 1_000_000)]
    )
    world: dict[str, list[int]] = {"paid": [], "not_found": [], "mismatch": [], "future": []}
    for c in paying:
        world["paid"].append(await new_invoice(client, c))
    for c in unknown:
        world["not_found"] += [await new_invoice(client, c), await new_invoice(client, c)]
    world["mismatch"].append(await new_invoice(client, other_currency))
    await trigger(client)
    await charge(database, simulator, clock)
    world["future"].append(await new_invoice(client, unknown[0], due_at="2027-01-01T00:00:00Z"))
    seen = await _statuses(client)
    assert {seen[i] for i in world["paid"]} == {("PAID", None)}
    assert {seen[i] for i in world["not_found"]} == {("FAILED", "customer_not_found")}
    assert {seen[i] for i in world["mismatch"]} == {("FAILED", "currency_mismatch")}
    world["customers"] = unknown
    return world


async def test_bulk_retry_acts_on_every_matching_invoice_each_in_the_audit(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,  # noqa: F811
) -> None:
    world = await _a_billed_world(client, database, clock, simulator)
    response = await client.post(
        RETRY,
        json={"filter": {"status": "FAILED", "lastFailure": "customer_not_found"}, "note": "fixed"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"matched": 6, "acted": 6, "skipped": 0}
    seen = await _statuses(client)
    for iid in world["not_found"]:
        assert seen[iid] == ("PENDING", "customer_not_found")
    assert {seen[i] for i in world["mismatch"]} == {("FAILED", "currency_mismatch")}
    assert await _actions(database) == [
        (iid, "retried", "tester", "fixed") for iid in sorted(world["not_found"])
    ]
    for iid in world["not_found"]:
        [entry] = await get_json(client, f"/rest/v1/invoices/{iid}/actions")
        assert (entry["fromStatus"], entry["toStatus"], entry["note"]) == (
            "FAILED",
            "PENDING",
            "fixed",
        )
    async with database.read() as conn:
        retried = await conn.scalar(
            select(func.count()).select_from(events).where(events.c.type == "invoice.retried")
        )
    assert retried == 6

    again = await client.post(RETRY, json={"status": "FAILED", "lastFailure": "customer_not_found"})
    assert again.json() == {"matched": 0, "acted": 0, "skipped": 0}


async def test_bulk_retry_opens_a_run_of_the_retried_invoices_with_the_trigger_retry(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,  # noqa: F811
) -> None:
    """As a single retry does: the person's action charges them, and the run says so."""
    world = await _a_billed_world(client, database, clock, simulator)
    other = await new_invoice(client, await new_customer(client))  # due, in no run
    before = {r["id"] for r in await get_json(client, "/rest/v1/billing/runs")}
    response = await client.post(RETRY, json={"lastFailure": "customer_not_found"})
    assert response.json() == {"matched": 6, "acted": 6, "skipped": 0}
    runs = [r for r in await get_json(client, "/rest/v1/billing/runs") if r["id"] not in before]
    assert [(r["trigger"], r["counts"]["due"]) for r in runs] == [("retry", 6)]
    async with database.read() as conn:
        in_run = set(
            await conn.scalars(select(invoices.c.id).where(invoices.c.run_id == runs[0]["id"]))
        )
    assert in_run == set(world["not_found"])
    assert other not in in_run  # the person's run takes only what the person retried


async def test_bulk_retry_skips_matching_invoices_that_do_not_allow_it(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,  # noqa: F811
) -> None:
    world = await _a_billed_world(client, database, clock, simulator)
    customer = world["customers"][0]  # two FAILED, one PENDING not yet due
    response = await client.post(RETRY, json={"customerId": customer, "note": "one by one"})
    assert response.status_code == 200, response.text
    assert response.json() == {"matched": 3, "acted": 2, "skipped": 1}
    assert [a[0] for a in await _actions(database)] == sorted(world["not_found"][:2])
    assert (await _statuses(client))[world["future"][0]] == ("PENDING", None)


async def test_bulk_void_skips_a_pending_invoice_with_an_open_unknown_attempt(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    cid = await new_customer(client)
    unknown = await new_invoice(client, cid)
    await trigger(client)
    provider = ScriptedProvider(default=OutcomeUnknownError("the provider says so"))
    await charge(database, provider, clock)
    clock.advance(PolicySettings().unknown_repeat_window + timedelta(seconds=1))
    await charge(database, provider, clock)  # still unknown: PENDING, attempt open
    plain = [await new_invoice(client, cid, due_at="2027-01-01T00:00:00Z") for _ in range(3)]
    assert (await _statuses(client))[unknown] == ("PENDING", "unknown_outcome")

    response = await client.post(VOID, json={"status": "PENDING", "customerId": cid, "note": "x"})
    assert response.status_code == 200, response.text
    assert response.json() == {"matched": 4, "acted": 3, "skipped": 1}
    seen = await _statuses(client)
    assert seen[unknown] == ("PENDING", "unknown_outcome")
    assert {seen[i][0] for i in plain} == {"VOID"}
    assert await _actions(database) == [(i, "voided", "tester", "x") for i in plain]


async def test_bulk_void_of_failed_invoices_and_last_failure_filter_of_the_list(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,  # noqa: F811
) -> None:
    world = await _a_billed_world(client, database, clock, simulator)
    listed = await get_json(client, "/rest/v1/invoices?lastFailure=currency_mismatch")
    assert [r["id"] for r in listed] == world["mismatch"]
    query = "status=FAILED&lastFailure=customer_not_found"
    listed = await get_json(client, f"/rest/v1/invoices?{query}")
    assert [r["id"] for r in listed] == sorted(world["not_found"])

    response = await client.post(VOID, json={"lastFailure": "currency_mismatch"})
    assert response.status_code == 200, response.text
    assert response.json() == {"matched": 1, "acted": 1, "skipped": 0}
    assert (await _statuses(client))[world["mismatch"][0]] == ("VOID", "currency_mismatch")
    assert await _actions(database) == [(world["mismatch"][0], "voided", "tester", None)]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (RETRY, {}, "filter"),
        (RETRY, {"note": "everything"}, "filter"),
        (VOID, {"filter": {}}, "filter"),
        (VOID, {"status": None, "lastFailure": None, "customerId": None}, "filter"),
        (RETRY, {"status": "NOPE"}, "status"),
        (RETRY, {"status": "failed"}, "status"),
        (VOID, {"filter": {"lastFailure": "nope"}}, "filter.lastFailure"),
        (VOID, {"lastFailure": "NOT_FOUND"}, "lastFailure"),
        (RETRY, {"customerId": 0}, "customerId"),
        (RETRY, {"customerId": "1"}, "customerId"),
        (RETRY, {"customerId": 2**63}, "customerId"),
        (RETRY, {"filter": {"status": "FAILED"}, "status": "FAILED"}, "filter"),
        (RETRY, {"status": "FAILED", "other": 1}, "other"),
        (RETRY, {"status": "FAILED", "note": "x" * 2001}, "note"),
        (VOID, [], "body"),
    ],
)
async def test_a_bad_filter_is_422_and_acts_on_nothing(
    client: httpx.AsyncClient,
    database: Database,
    path: str,
    body: Any,
    field: str,
) -> None:
    cid = await new_customer(client)
    iid = await new_invoice(client, cid, due_at="2027-01-01T00:00:00Z")
    response = await client.post(path, json=body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert (error["error"], error["field"]) == ("validation_error", field), error
    assert (await _statuses(client))[iid] == ("PENDING", None)
    assert await _actions(database) == []


async def test_unknown_last_failure_of_the_list_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/rest/v1/invoices", params={"lastFailure": "nope"})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "lastFailure"
    assert "customer_not_found" in response.json()["message"]


async def test_a_repeat_with_the_idempotency_key_answers_the_first_counts(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,  # noqa: F811
) -> None:
    world = await _a_billed_world(client, database, clock, simulator)
    headers = {"Idempotency-Key": "bulk-void-1"}
    body = {"status": "FAILED", "note": "cleanup"}
    first = await client.post(VOID, json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json() == {"matched": 7, "acted": 7, "skipped": 0}
    assert "idempotent-replayed" not in first.headers
    # the same request written in the other shape is the same request
    again = await client.post(
        VOID, json={"filter": {"status": "FAILED"}, "note": "cleanup"}, headers=headers
    )
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert len(await _actions(database)) == 7
    other = await client.post(VOID, json={"status": "PENDING"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["error"] == "idempotency_key_reused"
    # the key belongs to the void: a retry with it is a request of its own
    retry = await client.post(RETRY, json=body, headers=headers)
    assert retry.json() == {"matched": 0, "acted": 0, "skipped": 0}
    assert len(world["not_found"]) == 6


async def test_batches_cover_every_matching_invoice_once(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    cid = await new_customer(client)
    ids = [await new_invoice(client, cid, due_at="2027-01-01T00:00:00Z") for _ in range(11)]
    wanted = InvoiceFilter(status=InvoiceStatus.PENDING, customer_id=cid)
    done = await service.bulk_action(
        database, clock, "void", wanted, actor="tester", note="n", batch=3
    )
    assert done.json() == {"matched": 11, "acted": 11, "skipped": 0}
    assert await _actions(database) == [(i, "voided", "tester", "n") for i in ids]
    with pytest.raises(ValueError, match="at least one filter field"):
        await service.bulk_action(database, clock, "retry", InvoiceFilter(), actor="tester")


async def test_a_worker_charging_at_the_same_time_never_meets_a_double_action(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,  # noqa: F811
) -> None:
    """A bulk void races a worker over the same due invoices: each ends PAID or VOID, once."""
    cid = await new_customer(client)
    simulator.store.set_accounts([Account(cid, Currency.EUR, 100_000_000)])
    ids = [await new_invoice(client, cid) for _ in range(120)]
    await trigger(client)

    void, _ = await asyncio.gather(
        service.bulk_action(
            database,
            clock,
            "void",
            InvoiceFilter(customer_id=cid),
            actor="tester",
            batch=7,
        ),
        charge(database, simulator, clock),
    )
    seen = await _statuses(client)
    assert {seen[i][0] for i in ids} <= {"PAID", "VOID"}
    voided = [i for i in ids if seen[i][0] == "VOID"]
    paid = [i for i in ids if seen[i][0] == "PAID"]
    assert void.matched == 120
    assert (void.acted, void.skipped) == (len(voided), len(paid))
    assert sorted(a[0] for a in await _actions(database)) == voided
    assert len(simulator.store.ledger()) == len(paid)
