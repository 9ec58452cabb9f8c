"""The charge flow and the outcome policy, end to end on real SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from antaeus import exactjson
from antaeus.billing.service import open_run
from antaeus.billing.worker import Worker, WorkerSettings
from antaeus.clock import ManualClock
from antaeus.domain.events import invoice_data
from antaeus.domain.policy import PolicySettings
from antaeus.payments.provider import (
    Charged,
    CurrencyMismatchError,
    CustomerNotFoundError,
    Declined,
    KeyInUseError,
    KeyReusedError,
    OutcomeUnknownError,
    RateLimitedError,
    RequestRejectedError,
    UnauthorizedError,
)
from antaeus.storage.database import Database
from antaeus.storage.repositories.billing import BillingRepository
from antaeus.storage.repositories.installation import InstallationRepository
from antaeus.storage.repositories.invoices import InvoiceRepository
from antaeus.storage.tables import events
from tests.billing.fakes import ScriptedProvider
from tests.billing.helpers import attempts_of, invoice_row, make_invoices, run_outcomes

POLICY = PolicySettings()


def worker(db: Database, provider: ScriptedProvider, clock: ManualClock, **kw: object) -> Worker:
    return Worker(
        db,
        provider,
        clock,
        kw.pop("policy", POLICY),  # type: ignore[arg-type]
        WorkerSettings(batch_size=50, concurrency=20, retry_after_max=1.0),
        **kw,  # type: ignore[arg-type]
    )


async def charge_once(
    db: Database, provider: ScriptedProvider, clock: ManualClock, n: int = 1
) -> tuple[list[int], int, Worker]:
    ids = await make_invoices(db, n, clock.now() - timedelta(minutes=1))
    run_id = await open_run(db, clock, POLICY, "api")
    w = worker(db, provider, clock)
    await w.run_until_idle()
    return ids, run_id, w


async def test_charged_invoice_is_paid_with_the_providers_charge_id(
    database: Database, clock: ManualClock
) -> None:
    provider = ScriptedProvider(default=Charged("ch_123"))
    [invoice_id], run_id, _ = await charge_once(database, provider, clock)
    row = await invoice_row(database, invoice_id)
    assert row.status == "PAID"
    assert row.last_failure is None
    assert row.run_id is None
    [attempt] = await attempts_of(database, invoice_id)
    async with database.read() as conn:
        installation = await InstallationRepository(conn).installation_id()
    assert attempt.idempotency_key == f"{installation}:{invoice_id}:1"
    assert attempt.outcome == "charged"
    assert attempt.charge_id == "ch_123"
    assert attempt.finished_at is not None
    assert attempt.run_id == run_id
    assert await run_outcomes(database, run_id) == {invoice_id: "paid"}
    async with database.read() as conn:
        run = await BillingRepository(conn).get_run(run_id)
        [event] = (
            await conn.execute(select(events).where(events.c.invoice_id == invoice_id))
        ).all()
    assert run is not None
    assert run.status == "completed"
    assert event.type == "invoice.paid"
    data = exactjson.loads(event.payload)
    assert data == {
        "invoice": {
            "id": invoice_id,
            "customerId": row.customer_id,
            "amount": {"value": Decimal("10.50"), "currency": "EUR"},
            "status": "PAID",
            "dueAt": data["invoice"]["dueAt"],
            "attemptCount": 1,
            "lastFailure": None,
            "nextAttemptAt": None,
        },
        "attempt": {
            "number": 1,
            "idempotencyKey": f"{installation}:{invoice_id}:1",
            "outcome": "charged",
            "chargeId": "ch_123",
            "reason": None,
            "declineCode": None,
        },
        "runId": run_id,
    }
    assert '"value":10.50' in event.payload  # the exact digits, as the API writes them
    async with database.read() as conn:
        shown = await InvoiceRepository(conn).get(invoice_id)
    assert shown is not None
    assert data["invoice"] == exactjson.loads(exactjson.dumps(invoice_data(shown)))


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (CustomerNotFoundError(), "customer_not_found"),
        (CurrencyMismatchError(), "currency_mismatch"),
        (RequestRejectedError("bad"), "provider_rejected"),
    ],
)
async def test_definite_refusals_fail_the_invoice(
    database: Database, clock: ManualClock, error: Exception, reason: str
) -> None:
    provider = ScriptedProvider(default=error)  # type: ignore[arg-type]
    [invoice_id], run_id, _ = await charge_once(database, provider, clock)
    row = await invoice_row(database, invoice_id)
    assert (row.status, row.last_failure, row.attempt_open_since) == ("FAILED", reason, None)
    [attempt] = await attempts_of(database, invoice_id)
    assert attempt.outcome == reason
    assert await run_outcomes(database, run_id) == {invoice_id: "failed"}


async def test_key_reused_goes_to_review_and_is_never_retried(
    database: Database, clock: ManualClock
) -> None:
    provider = ScriptedProvider(default=KeyReusedError())
    [invoice_id], run_id, w = await charge_once(database, provider, clock)
    row = await invoice_row(database, invoice_id)
    assert (row.status, row.last_failure) == ("REVIEW", "idempotency_key_reused")
    assert await run_outcomes(database, run_id) == {invoice_id: "review"}
    clock.advance(timedelta(days=30))
    await open_run(database, clock, POLICY, "api")
    await w.run_until_idle()
    assert len(provider.calls) == 1


async def test_decline_follows_the_dunning_schedule_with_new_keys_then_fails(
    database: Database, clock: ManualClock
) -> None:
    provider = ScriptedProvider(default=Declined())
    [invoice_id], run_id, w = await charge_once(database, provider, clock)
    row = await invoice_row(database, invoice_id)
    assert (row.status, row.last_failure) == ("PENDING", "insufficient_funds")
    assert row.next_attempt_at == clock.now() + timedelta(days=1)
    assert await run_outcomes(database, run_id) == {invoice_id: "rescheduled"}
    for wait in (timedelta(days=1), timedelta(days=3), timedelta(days=7)):
        clock.advance(wait)
        await open_run(database, clock, POLICY, "schedule")
        await w.run_until_idle()
    row = await invoice_row(database, invoice_id)
    assert (row.status, row.last_failure) == ("FAILED", "insufficient_funds")
    keys = provider.by_invoice[invoice_id]
    assert len(keys) == 4
    assert len(set(keys)) == 4  # each dunning retry is a new attempt with a new key
    assert [a.number for a in await attempts_of(database, invoice_id)] == [1, 2, 3, 4]


async def test_unknown_outcome_is_repeated_with_the_same_key_inside_the_run(
    database: Database, clock: ManualClock
) -> None:
    provider = ScriptedProvider(scripts={}, default=Charged("ch_after_blip"))
    ids = await make_invoices(database, 1, clock.now())
    provider.scripts[ids[0]] = [OutcomeUnknownError(), OutcomeUnknownError()]
    run_id = await open_run(database, clock, POLICY, "api")
    w = worker(database, provider, clock)
    await w.run_until_idle()
    row = await invoice_row(database, ids[0])
    assert (row.status, row.last_failure, row.run_id) == ("PENDING", "unknown_outcome", run_id)
    assert row.next_attempt_at > clock.now()
    for _ in range(2):
        clock.advance(timedelta(minutes=1))
        await w.run_until_idle()
    row = await invoice_row(database, ids[0])
    assert row.status == "PAID"
    keys = provider.by_invoice[ids[0]]
    assert len(keys) == 3
    assert len(set(keys)) == 1
    [attempt] = await attempts_of(database, ids[0])
    assert (attempt.number, attempt.sends, attempt.outcome) == (1, 3, "charged")
    assert await run_outcomes(database, run_id) == {ids[0]: "paid"}


async def test_unknown_outcome_past_the_repeat_window_is_rescheduled_out_of_the_run(
    database: Database, clock: ManualClock
) -> None:
    provider = ScriptedProvider(default=OutcomeUnknownError())
    [invoice_id], run_id, w = await charge_once(database, provider, clock)
    for _ in range(20):
        clock.advance(timedelta(seconds=40))
        await w.run_until_idle()
    row = await invoice_row(database, invoice_id)
    assert (row.status, row.last_failure, row.run_id) == ("PENDING", "unknown_outcome", None)
    assert row.attempt_open_since is not None  # the attempt stays open: same key next time
    assert await run_outcomes(database, run_id) == {invoice_id: "rescheduled"}
    assert len(set(provider.by_invoice[invoice_id])) == 1
    async with database.read() as conn:
        types = [
            r.type
            for r in await conn.execute(
                select(events.c.type).where(events.c.invoice_id == invoice_id).order_by(events.c.id)
            )
        ]
    # repeated inside the run (each unknown said), then rescheduled out of it (said once)
    assert set(types[:-1]) == {"invoice.payment_unknown"}
    assert types[-1] == "invoice.rescheduled"


async def test_unknown_outcome_with_a_provider_that_cannot_deduplicate_goes_to_review(
    database: Database, clock: ManualClock
) -> None:
    provider = ScriptedProvider(default=OutcomeUnknownError(), deduplicates_keys=False)
    ids = await make_invoices(database, 1, clock.now())
    await open_run(database, clock, POLICY, "api")
    policy = PolicySettings(provider_deduplicates=False)
    await worker(database, provider, clock, policy=policy).run_until_idle()
    row = await invoice_row(database, ids[0])
    assert (row.status, row.last_failure) == ("REVIEW", "unknown_outcome")
    assert len(provider.calls) == 1


async def test_rate_limit_and_key_in_use_wait_and_repeat_the_same_attempt(
    database: Database, clock: ManualClock
) -> None:
    ids = await make_invoices(database, 1, clock.now())
    provider = ScriptedProvider(
        scripts={ids[0]: [RateLimitedError(0.01), KeyInUseError(0.01)]}, default=Charged("ch_1")
    )
    await open_run(database, clock, POLICY, "api")
    await worker(database, provider, clock).run_until_idle()
    assert (await invoice_row(database, ids[0])).status == "PAID"
    [attempt] = await attempts_of(database, ids[0])
    assert attempt.number == 1
    assert len(set(provider.by_invoice[ids[0]])) == 1


async def test_unauthorized_pauses_charging_without_failing_invoices(
    database: Database, clock: ManualClock
) -> None:
    ids = await make_invoices(database, 3, clock.now())
    provider = ScriptedProvider(default=UnauthorizedError("bad key"))
    run_id = await open_run(database, clock, POLICY, "api")
    w = worker(database, provider, clock)
    await w.run_until_idle()
    async with database.read() as conn:
        reason, _ = await BillingRepository(conn).pause_state()
    assert reason is not None
    assert "unauthorized" in reason
    for invoice_id in ids:
        row = await invoice_row(database, invoice_id)
        assert (row.status, row.last_failure, row.run_id) == ("PENDING", None, run_id)
    calls_while_paused = len(provider.calls)
    await w.run_until_idle()
    assert len(provider.calls) == calls_while_paused  # paused: no claims until a probe is due
    provider.default = Charged("ch_ok")
    w.settings = WorkerSettings(batch_size=50, concurrency=20, pause_probe=0.0)
    w._paused_checked = 0.0
    await w.run_until_idle()
    async with database.read() as conn:
        reason, _ = await BillingRepository(conn).pause_state()
    assert reason is None
    assert [(await invoice_row(database, i)).status for i in ids] == ["PAID"] * 3
    # every repeat after the 401 kept the first attempt and its key
    for invoice_id in ids:
        assert [a.number for a in await attempts_of(database, invoice_id)] == [1]


async def test_a_worker_that_lost_its_lease_never_overwrites_the_outcome(
    database: Database, clock: ManualClock
) -> None:
    ids = await make_invoices(database, 1, clock.now())
    await open_run(database, clock, POLICY, "api")
    slow = worker(database, ScriptedProvider(default=Declined()), clock, worker_id="slow")
    [claimed] = await slow.claim(10)
    clock.advance(timedelta(seconds=120))  # the slow worker's lease expires
    fast_provider = ScriptedProvider(default=Charged("ch_fast"))
    await worker(database, fast_provider, clock, worker_id="fast").run_until_idle()
    assert (await invoice_row(database, ids[0])).status == "PAID"
    # the slow worker comes back with its (older) answer: it must not overwrite PAID
    from antaeus.billing.worker import Answer
    from antaeus.domain.policy import ChargeOutcome

    await slow.record([Answer(claimed, ChargeOutcome.INSUFFICIENT_FUNDS)])
    row = await invoice_row(database, ids[0])
    assert (row.status, row.last_failure) == ("PAID", None)
    assert slow.stats.lost_leases == 1
    assert fast_provider.by_invoice[ids[0]] == [claimed.idempotency_key]  # same key repeated


async def test_runs_never_share_an_invoice(database: Database, clock: ManualClock) -> None:
    ids = await make_invoices(database, 5, clock.now())
    first = await open_run(database, clock, POLICY, "api")
    second = await open_run(database, clock, POLICY, "api")
    assert set(await run_outcomes(database, first)) == set(ids)
    assert await run_outcomes(database, second) == {}
    async with database.read() as conn:
        run = await BillingRepository(conn).get_run(second)
    assert run is not None
    assert run.status == "completed"
