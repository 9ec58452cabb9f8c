"""The scheduler and the billing calendar, on real SQLite and PostgreSQL.

Invoices are created through the API without `dueAt`, so they fall due at
midnight on the next first of the month in the customer's own time zone. The
scheduler (automatic mode) must open a run at exactly that moment, not a second
earlier, and the worker then charges it. External mode opens runs only for open
attempts of unknown outcome; attempts that would outlive the provider's key
retention go to REVIEW; two schedulers racing open one run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from antaeus.billing.runs import Scheduler
from antaeus.billing.service import open_run
from antaeus.billing.worker import Worker, WorkerSettings
from antaeus.clock import ManualClock
from antaeus.domain.policy import PolicySettings
from antaeus.payments.provider import (
    Charged,
    OutcomeUnknownError,
)
from antaeus.simulators.simulated import SimulatedPaymentProvider
from antaeus.storage.database import Database
from antaeus.storage.repositories.billing import BillingRepository
from antaeus.storage.tables import billing_runs, run_invoices
from tests.billing.fakes import ScriptedProvider

POLICY = PolicySettings()
CUT = POLICY.key_retention - POLICY.retention_margin  # an open attempt older than this: REVIEW
SECOND = timedelta(seconds=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def z(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- helpers --------------------------------------------------------------------


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatedPaymentProvider]:
    provider = SimulatedPaymentProvider(":memory:", failure_rate=0.0, seed=1)
    try:
        yield provider
    finally:
        await provider.aclose()


def worker(
    database: Database, provider: SimulatedPaymentProvider | ScriptedProvider, clock: ManualClock
) -> Worker:
    return Worker(database, provider, clock, POLICY, WorkerSettings(batch_size=100, concurrency=50))


async def new_customer(client: httpx.AsyncClient, timezone: str, currency: str = "EUR") -> int:
    response = await client.post(
        "/rest/v1/customers", json={"currency": currency, "timezone": timezone}
    )
    assert response.status_code == 201, response.text
    cid: int = response.json()["id"]
    return cid


async def new_invoice(
    client: httpx.AsyncClient,
    customer_id: int,
    *,
    due_at: str | None = None,
    value: str = "42.50",
    currency: str = "EUR",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customerId": customer_id,
        "amount": {"value": value, "currency": currency},
    }
    if due_at is not None:
        body["dueAt"] = due_at
    response = await client.post("/rest/v1/invoices", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def invoice(client: httpx.AsyncClient, invoice_id: int) -> dict[str, Any]:
    response = await client.get(f"/rest/v1/invoices/{invoice_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def run_members(database: Database, run_id: int) -> dict[int, str | None]:
    async with database.read() as conn:
        rows = await conn.execute(
            select(run_invoices.c.invoice_id, run_invoices.c.outcome).where(
                run_invoices.c.run_id == run_id
            )
        )
        return {r.invoice_id: r.outcome for r in rows}


async def run_count(database: Database) -> int:
    async with database.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(billing_runs)) or 0)


async def run_status(database: Database, run_id: int) -> str:
    async with database.read() as conn:
        run = await BillingRepository(conn).get_run(run_id)
    assert run is not None
    return run.status


def ledger_invoices(provider: SimulatedPaymentProvider) -> list[int]:
    return sorted(entry.invoice_id for entry in provider.store.ledger())


# -- automatic mode: each customer's own first of the month ----------------------

Case = tuple[str, str, datetime, datetime]  # label, time zone, created at, falls due at

ZONES: list[Case] = [
    ("cph-winter", "Europe/Copenhagen", utc(2026, 11, 22, 12), utc(2026, 11, 30, 23)),
    ("ny-winter", "America/New_York", utc(2026, 11, 22, 12), utc(2026, 12, 1, 5)),
    ("ny-summer", "America/New_York", utc(2027, 6, 15, 12), utc(2027, 7, 1, 4)),
    ("cph-summer", "Europe/Copenhagen", utc(2027, 6, 15, 12), utc(2027, 6, 30, 22)),
]
MONTH_ENDS: list[Case] = [
    ("utc-31-jan-2027", "UTC", utc(2027, 1, 31, 12), utc(2027, 2, 1)),
    ("utc-28-feb-2027", "UTC", utc(2027, 2, 28, 12), utc(2027, 3, 1)),
    ("cph-feb-2027", "Europe/Copenhagen", utc(2027, 2, 1, 12), utc(2027, 2, 28, 23)),
    ("cph-31-jan-2027", "Europe/Copenhagen", utc(2027, 1, 20, 12), utc(2027, 1, 31, 23)),
    ("cph-feb-2028-leap", "Europe/Copenhagen", utc(2028, 2, 1, 12), utc(2028, 2, 29, 23)),
    ("utc-leap-day-2028", "UTC", utc(2028, 2, 28, 12), utc(2028, 3, 1)),
    ("cph-dec-to-jan", "Europe/Copenhagen", utc(2026, 12, 15, 12), utc(2026, 12, 31, 23)),
    ("ny-dec-to-jan", "America/New_York", utc(2026, 12, 15, 12), utc(2027, 1, 1, 5)),
]
# The offset at midnight on the first counts, not the one when the invoice was created.
DST: list[Case] = [
    ("cph-dst-starts", "Europe/Copenhagen", utc(2027, 3, 27, 12), utc(2027, 3, 31, 22)),
    ("cph-dst-ends", "Europe/Copenhagen", utc(2027, 10, 30, 12), utc(2027, 10, 31, 23)),
    ("ny-dst-starts", "America/New_York", utc(2027, 3, 13, 12), utc(2027, 4, 1, 4)),
    # DST ends at 02:00 on 1 November 2026 itself: midnight is still EDT
    ("ny-dst-ends-on-the-1st", "America/New_York", utc(2026, 10, 31, 12), utc(2026, 11, 1, 4)),
    ("ny-dst-ended", "America/New_York", utc(2027, 11, 6, 12), utc(2027, 12, 1, 5)),
]


@pytest.mark.parametrize("cases", [ZONES, MONTH_ENDS, DST], ids=["zones", "month-ends", "dst"])
async def test_automatic_scheduler_charges_at_midnight_on_the_first_in_the_customers_zone(
    database: Database,
    clock: ManualClock,
    client: httpx.AsyncClient,
    simulator: SimulatedPaymentProvider,
    cases: list[Case],
) -> None:
    scheduler = Scheduler(database, clock, POLICY, "automatic")
    paid: list[int] = []
    for label, timezone, created, due in cases:
        clock.set(created)
        cid = await new_customer(client, timezone)
        inv = await new_invoice(client, cid)
        assert inv["dueAt"] == z(due), label

        clock.set(due - SECOND)
        assert await scheduler.tick() is None, label
        await worker(database, simulator, clock).run_until_idle()
        assert (await invoice(client, inv["id"]))["status"] == "PENDING", label
        assert ledger_invoices(simulator) == sorted(paid), label

        clock.set(due)
        run_id = await scheduler.tick()
        assert run_id is not None, label
        assert await run_members(database, run_id) == {inv["id"]: None}, label
        await worker(database, simulator, clock).run_until_idle()

        assert (await invoice(client, inv["id"]))["status"] == "PAID", label
        assert await run_members(database, run_id) == {inv["id"]: "paid"}, label
        assert await run_status(database, run_id) == "completed", label
        paid.append(inv["id"])
        assert ledger_invoices(simulator) == sorted(paid), label
        assert await scheduler.tick() is None, label


async def test_one_tick_takes_only_the_customers_whose_midnight_has_come(
    database: Database,
    clock: ManualClock,
    client: httpx.AsyncClient,
    simulator: SimulatedPaymentProvider,
) -> None:
    cph = await new_invoice(client, await new_customer(client, "Europe/Copenhagen"))
    utc_inv = await new_invoice(client, await new_customer(client, "UTC"))
    ny = await new_invoice(client, await new_customer(client, "America/New_York"))
    scheduler = Scheduler(database, clock, POLICY, "automatic")

    taken: list[set[int]] = []
    for moment in (utc(2026, 11, 30, 23), utc(2026, 12, 1), utc(2026, 12, 1, 5)):
        clock.set(moment - SECOND)
        assert await scheduler.tick() is None
        clock.set(moment)
        run_id = await scheduler.tick()
        assert run_id is not None
        taken.append(set(await run_members(database, run_id)))
        await worker(database, simulator, clock).run_until_idle()

    assert taken == [{cph["id"]}, {utc_inv["id"]}, {ny["id"]}]
    assert ledger_invoices(simulator) == sorted([cph["id"], utc_inv["id"], ny["id"]])


async def test_what_fell_due_while_down_is_taken_at_once_and_exactly_once(
    database: Database,
    clock: ManualClock,
    client: httpx.AsyncClient,
    simulator: SimulatedPaymentProvider,
) -> None:
    clock.set(utc(2026, 11, 30, 12))
    due = [
        await new_invoice(client, await new_customer(client, tz))
        for tz in ("Europe/Copenhagen", "UTC", "America/New_York")
    ]
    later = await new_invoice(
        client, await new_customer(client, "UTC"), due_at="2027-01-01T00:00:00Z"
    )
    scheduler = Scheduler(database, clock, POLICY, "automatic")
    assert await scheduler.tick() is None

    clock.set(utc(2026, 12, 3, 9, 30))  # the service comes back after two days
    run_id = await scheduler.tick()
    assert run_id is not None
    assert await scheduler.tick() is None  # nothing left that is not in an open run
    assert set(await run_members(database, run_id)) == {i["id"] for i in due}

    await worker(database, simulator, clock).run_until_idle()
    assert await scheduler.tick() is None
    await worker(database, simulator, clock).run_until_idle()

    assert ledger_invoices(simulator) == sorted(i["id"] for i in due)
    for inv in due:
        assert (await invoice(client, inv["id"]))["status"] == "PAID"
    assert (await invoice(client, later["id"]))["status"] == "PENDING"
    assert await run_count(database) == 1


# -- external mode and open attempts of unknown outcome ----------------------------


async def test_external_mode_opens_no_run_for_new_due_invoices(
    database: Database, clock: ManualClock, client: httpx.AsyncClient
) -> None:
    cid = await new_customer(client, "Europe/Copenhagen")
    at_the_first = await new_invoice(client, cid)
    already_due = await new_invoice(client, cid, due_at="2026-11-01T00:00:00Z")
    external = Scheduler(database, clock, POLICY, "external")

    assert await external.tick() is None
    clock.set(utc(2026, 12, 2))
    assert await external.tick() is None
    assert await run_count(database) == 0

    # they are due: a trigger (what external mode relies on) takes both
    response = await client.post("/rest/v1/billing")
    assert response.status_code == 202, response.text
    assert response.json()["counts"]["due"] == 2
    assert set(await run_members(database, response.json()["id"])) == {
        at_the_first["id"],
        already_due["id"],
    }


async def _unknown_then_rescheduled(
    database: Database, clock: ManualClock, client: httpx.AsyncClient, provider: ScriptedProvider
) -> tuple[int, int]:
    """An invoice whose attempt got only unknown answers and left its run rescheduled."""
    cid = await new_customer(client, "UTC")
    inv = await new_invoice(client, cid, due_at="2026-11-01T00:00:00Z")
    run_id = await open_run(database, clock, POLICY, "api")
    provider.default = OutcomeUnknownError("the provider says so")
    await worker(database, provider, clock).run_until_idle()
    # repeated with its key inside the run for the repeat window, then rescheduled
    clock.advance(POLICY.unknown_repeat_window + SECOND)
    await worker(database, provider, clock).run_until_idle()
    assert await run_members(database, run_id) == {inv["id"]: "rescheduled"}
    assert await run_status(database, run_id) == "completed"
    found = await invoice(client, inv["id"])
    assert found["status"] == "PENDING"
    assert found["lastFailure"] == "unknown_outcome"
    assert found["nextAttemptAt"] == z(clock.now() + POLICY.reschedule_delay)
    return inv["id"], run_id


async def test_external_mode_opens_a_run_for_an_open_unknown_attempt_when_its_repeat_comes(
    database: Database, clock: ManualClock, client: httpx.AsyncClient
) -> None:
    provider = ScriptedProvider()
    invoice_id, first_run = await _unknown_then_rescheduled(database, clock, client, provider)
    [key] = set(provider.by_invoice[invoice_id])
    assert key.endswith(f":{invoice_id}:1")
    repeat_at = clock.now() + POLICY.reschedule_delay
    external = Scheduler(database, clock, POLICY, "external")

    clock.set(repeat_at - SECOND)
    assert await external.tick() is None
    clock.set(repeat_at)
    newcomer = await new_invoice(
        client, await new_customer(client, "UTC"), due_at="2026-11-01T00:00:00Z"
    )
    run_id = await external.tick()
    assert run_id is not None
    assert run_id != first_run
    assert await run_members(database, run_id) == {invoice_id: None}  # not the new charge

    provider.default = Charged("ch_ok")
    await worker(database, provider, clock).run_until_idle()
    paid = await invoice(client, invoice_id)
    assert paid["status"] == "PAID"
    assert paid["attemptCount"] == 1
    assert set(provider.by_invoice[invoice_id]) == {key}  # repeated with the same key only
    assert newcomer["id"] not in provider.by_invoice
    assert (await invoice(client, newcomer["id"]))["status"] == "PENDING"
    assert await external.tick() is None


@pytest.mark.parametrize("mode", ["automatic", "external"])
async def test_open_unknown_attempt_goes_to_review_before_key_retention_ends(
    database: Database, clock: ManualClock, client: httpx.AsyncClient, mode: str
) -> None:
    provider = ScriptedProvider()
    started = clock.now()  # the attempt is first sent now
    invoice_id, _ = await _unknown_then_rescheduled(database, clock, client, provider)
    sends = len(provider.by_invoice[invoice_id])
    scheduler = Scheduler(database, clock, POLICY, mode)  # type: ignore[arg-type]

    clock.set(started + CUT - SECOND)
    assert await scheduler.tick() is not None  # its repeat time has long come: a run takes it
    assert (await invoice(client, invoice_id))["status"] == "PENDING"

    clock.set(started + CUT)
    assert await scheduler.tick() is None
    found = await invoice(client, invoice_id)
    assert found["status"] == "REVIEW"
    assert found["lastFailure"] == "unknown_outcome"
    assert found["nextAttemptAt"] is None

    provider.default = Charged("ch_ok")
    clock.advance(timedelta(days=2))
    assert await scheduler.tick() is None
    await worker(database, provider, clock).run_until_idle()
    assert len(provider.by_invoice[invoice_id]) == sends  # never sent again
    assert (await invoice(client, invoice_id))["status"] == "REVIEW"


async def test_review_by_tick_gives_the_invoice_its_outcome_in_its_open_run(
    database: Database, clock: ManualClock, client: httpx.AsyncClient
) -> None:
    provider = ScriptedProvider()
    started = clock.now()
    invoice_id, _ = await _unknown_then_rescheduled(database, clock, client, provider)
    scheduler = Scheduler(database, clock, POLICY, "external")
    clock.set(started + CUT - SECOND)
    repeat_run = await scheduler.tick()
    assert repeat_run is not None
    assert await run_members(database, repeat_run) == {invoice_id: None}

    clock.set(started + CUT)
    await scheduler.tick()
    assert (await invoice(client, invoice_id))["status"] == "REVIEW"
    assert await run_members(database, repeat_run) == {invoice_id: "review"}
    assert await run_status(database, repeat_run) == "completed"


# -- two schedulers ----------------------------------------------------------------


async def test_two_schedulers_ticking_together_open_one_run(
    database: Database, database_url: str, clock: ManualClock, client: httpx.AsyncClient
) -> None:
    cid = await new_customer(client, "UTC")
    first = Database(database_url)
    second = Database(database_url)
    try:
        schedulers = [
            Scheduler(first, clock, POLICY, "automatic"),
            Scheduler(second, clock, POLICY, "automatic"),
        ]
        expected: set[int] = set()
        for round_ in range(5):
            ids = {
                (await new_invoice(client, cid, due_at="2026-11-01T00:00:00Z"))["id"]
                for _ in range(3)
            }
            expected |= ids
            opened = await asyncio.gather(*(s.tick() for s in schedulers))
            runs = [r for r in opened if r is not None]
            assert len(runs) == 1, (round_, opened)
            assert set(await run_members(database, runs[0])) == ids
        assert await run_count(database) == 5
        async with database.read() as conn:
            members = list(await conn.execute(select(run_invoices.c.invoice_id)))
        assert sorted(m.invoice_id for m in members) == sorted(expected)  # no invoice twice
    finally:
        await first.dispose()
        await second.dispose()
