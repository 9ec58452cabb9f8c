"""The breaker: a provider whose calls keep ending in unknown outcomes stops new claims.

Issue: "When most recent calls end in unknown outcomes, the workers stop
claiming new invoices (the ones in flight keep being retried with their keys)
instead of burning through the whole run, and resume by themselves when calls
succeed again; `GET /rest/v1/status`, the run and the logs say so while it
lasts."

Real SQLite and PostgreSQL (the `database` fixture), a scripted provider, the
injected ManualClock for what is due, and a fake `time.monotonic` for the
worker's probe and pause-check intervals (so "one probe per interval" is
exact, not a race against the wall clock).
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from antaeus.billing.service import open_run
from antaeus.billing.worker import Worker, WorkerSettings
from antaeus.clock import ManualClock
from antaeus.domain.policy import PolicySettings
from antaeus.payments.provider import (
    Charged,
    ChargeRequest,
    OutcomeUnknownError,
    UnauthorizedError,
)
from antaeus.storage.database import Database
from antaeus.storage.repositories.billing import BillingRepository
from antaeus.storage.tables import billing_runs, charge_attempts, invoices, run_invoices
from tests.billing.fakes import ScriptedProvider
from tests.billing.helpers import make_invoices

POLICY = PolicySettings()
N = 300
WINDOW = 20
CONCURRENCY = 20
BATCH = 50
PROBE = 5.0
ALL_DUE = timedelta(seconds=31)  # longer than the longest unknown-outcome backoff (30 s)


# -- the provider and the monotonic clock --------------------------------------------------


@dataclass
class Ledger:
    """A deduplicating provider that can go down.

    While `down`, every call ends in an unknown outcome; for odd invoices the
    charge was made and only the answer was lost (money moved), for even ones
    the request never arrived. Once up, a key charged before answers the same
    charge again (a replay), as a real provider does.
    """

    down: bool = True
    charged: dict[str, str] = field(default_factory=dict)  # key -> charge id
    answered_charged: collections.Counter[str] = field(default_factory=collections.Counter)

    def __call__(self, request: ChargeRequest) -> Charged:
        key = request.idempotency_key
        if self.down:
            if request.invoice_id % 2 and key not in self.charged:
                self.charged[key] = f"ch_{request.invoice_id}_{len(self.charged)}"
            raise OutcomeUnknownError("connection reset by peer")
        replayed = key in self.charged
        charge_id = self.charged.setdefault(key, f"ch_{request.invoice_id}_{len(self.charged)}")
        self.answered_charged[key] += 1
        return Charged(charge_id, replayed=replayed)

    def money_moved(self, invoice_id: int) -> int:
        """How many charges the provider made for this invoice (keys end in :<attempt>)."""
        return sum(1 for key in self.charged if key.split(":")[1] == str(invoice_id))


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def monotonic() -> FakeMonotonic:
    """The worker's monotonic time (probe and pause-check intervals), moved by hand."""
    return FakeMonotonic()


# -- helpers ----------------------------------------------------------------------------------


def new_worker(
    db: Database,
    provider: ScriptedProvider,
    clock: ManualClock,
    monotonic: FakeMonotonic | None = None,
    **kw: Any,
) -> Worker:
    settings: dict[str, Any] = {
        "batch_size": BATCH,
        "concurrency": CONCURRENCY,
        "breaker_window": WINDOW,
        "breaker_probe": PROBE,
        "retry_after_max": 1.0,
        "poll_interval": 0.05,
        "flush_interval": 0.01,
    }
    settings.update(kw)
    return Worker(
        db,
        provider,
        clock,
        POLICY,
        WorkerSettings(**settings),
        monotonic=monotonic or time.monotonic,
    )


async def pause_state(db: Database) -> tuple[str | None, Any]:
    async with db.read() as conn:
        return await BillingRepository(conn).pause_state()


async def rows_by_id(db: Database, ids: list[int]) -> dict[int, Any]:
    async with db.read() as conn:
        rows = await conn.execute(select(invoices).where(invoices.c.id.in_(ids)))
        return {r.id: r for r in rows}


async def attempts_by_invoice(db: Database, ids: list[int]) -> dict[int, list[Any]]:
    found: dict[int, list[Any]] = {i: [] for i in ids}
    async with db.read() as conn:
        rows = await conn.execute(
            select(charge_attempts)
            .where(charge_attempts.c.invoice_id.in_(ids))
            .order_by(charge_attempts.c.invoice_id, charge_attempts.c.number)
        )
        for r in rows:
            found[r.invoice_id].append(r)
    return found


async def run_status(db: Database, run_id: int) -> str:
    async with db.read() as conn:
        status: str = (
            await conn.execute(select(billing_runs.c.status).where(billing_runs.c.id == run_id))
        ).scalar_one()
        return status


async def open_outcomes(db: Database, run_id: int) -> int:
    async with db.read() as conn:
        rows = await conn.execute(
            select(run_invoices.c.invoice_id).where(
                run_invoices.c.run_id == run_id, run_invoices.c.outcome.is_(None)
            )
        )
        return len(rows.all())


async def trip(
    db: Database, clock: ManualClock, monotonic: FakeMonotonic, n: int = N
) -> tuple[list[int], int, Ledger, ScriptedProvider, Worker]:
    """`n` due invoices in a run, a provider that is down, a worker charging until idle."""
    ids = await make_invoices(db, n, clock.now() - timedelta(minutes=1))
    run_id = await open_run(db, clock, POLICY, "api")
    ledger = Ledger(down=True)
    provider = ScriptedProvider(default=ledger)
    w = new_worker(db, provider, clock, monotonic)
    await w.run_until_idle()
    return ids, run_id, ledger, provider, w


def assert_same_key_per_invoice(provider: ScriptedProvider) -> None:
    for invoice_id, keys in provider.by_invoice.items():
        assert len(set(keys)) == 1, (invoice_id, keys)
        assert keys[0].endswith(f":{invoice_id}:1"), keys


# -- tests -------------------------------------------------------------------------------------


async def test_unknown_outcomes_stop_new_claims_and_keep_the_open_attempts(
    database: Database, clock: ManualClock, monotonic: FakeMonotonic
) -> None:
    ids, run_id, _ledger, provider, w = await trip(database, clock, monotonic)

    reason, since = await pause_state(database)
    assert reason is not None
    assert reason.startswith("provider_unavailable"), reason
    assert since == clock.now()
    attempted = set(provider.by_invoice)
    # one window of unknowns (plus what was in flight when it tripped, plus one probe):
    # far from the whole run
    assert 0 < len(attempted) <= WINDOW + CONCURRENCY + 1, len(attempted)
    assert len(attempted) < N // 5

    # the open attempts keep being repeated with their keys as their backoff comes due
    for _ in range(3):
        clock.advance(ALL_DUE)
        await w.run_until_idle()
    assert set(provider.by_invoice) == attempted  # no probe was due: nothing new
    assert all(len(provider.by_invoice[i]) == 4 for i in attempted)
    assert_same_key_per_invoice(provider)

    rows = await rows_by_id(database, ids)
    attempts = await attempts_by_invoice(database, ids)
    assert {r.status for r in rows.values()} == {"PENDING"}  # nothing FAILED, PAID or REVIEW
    for invoice_id, row in rows.items():
        assert row.run_id == run_id
        if invoice_id in attempted:
            assert row.last_failure == "unknown_outcome"
            assert row.attempt_open_since is not None
            assert row.attempt_count == 1
            [attempt] = attempts[invoice_id]
            assert (attempt.number, attempt.outcome, attempt.finished_at) == (
                1,
                "unknown_outcome",
                None,
            )
            assert attempt.idempotency_key == provider.by_invoice[invoice_id][0]
            assert attempt.sends == len(provider.by_invoice[invoice_id])
        else:
            assert (row.attempt_count, row.attempt_open_since, row.last_failure) == (0, None, None)
            assert attempts[invoice_id] == []
    assert await run_status(database, run_id) == "running"
    assert await open_outcomes(database, run_id) == N
    assert (await pause_state(database))[0] == reason


async def test_while_unavailable_only_open_attempts_and_one_probe_per_interval(
    database: Database, clock: ManualClock, monotonic: FakeMonotonic
) -> None:
    _ids, _run, _ledger, provider, w = await trip(database, clock, monotonic)
    attempted = set(provider.by_invoice)
    calls = len(provider.calls)

    # nothing due, no probe due: nothing at all
    await w.run_until_idle()
    assert len(provider.calls) == calls

    # a probe is due, no open attempt is: exactly one new invoice, once
    monotonic.advance(PROBE)
    await w.run_until_idle()
    new = set(provider.by_invoice) - attempted
    assert len(new) == 1, new
    assert len(provider.calls) == calls + 1
    attempted |= new

    # the probe is not due again before `breaker_probe` seconds
    monotonic.advance(PROBE / 2)
    await w.run_until_idle()
    assert set(provider.by_invoice) == attempted
    assert len(provider.calls) == calls + 1

    # every open attempt is due, no probe is: each is repeated once, nothing new
    clock.advance(ALL_DUE)
    calls = len(provider.calls)
    await w.run_until_idle()
    assert set(provider.by_invoice) == attempted
    assert len(provider.calls) == calls + len(attempted)

    # both due: the open attempts are repeated, and one new invoice is probed
    clock.advance(ALL_DUE)
    monotonic.advance(PROBE)
    calls = len(provider.calls)
    await w.run_until_idle()
    new = set(provider.by_invoice) - attempted
    assert len(new) == 1, new
    assert len(provider.calls) == calls + len(attempted) + 1
    assert_same_key_per_invoice(provider)
    reason, _ = await pause_state(database)
    assert reason is not None
    assert reason.startswith("provider_unavailable")


async def test_recovery_lifts_the_pause_and_charges_everything_exactly_once(
    database: Database, clock: ManualClock, monotonic: FakeMonotonic
) -> None:
    ids, run_id, ledger, provider, w = await trip(database, clock, monotonic)
    attempted = set(provider.by_invoice)
    assert any(ledger.money_moved(i) for i in attempted)  # some answers were lost after a charge

    ledger.down = False
    clock.advance(ALL_DUE)  # the open attempts' repeats are due
    await w.run_until_idle()

    assert await pause_state(database) == (None, None)
    rows = await rows_by_id(database, ids)
    assert {r.status for r in rows.values()} == {"PAID"}
    attempts = await attempts_by_invoice(database, ids)
    for invoice_id in ids:
        keys = provider.by_invoice[invoice_id]
        assert len(set(keys)) == 1, keys  # one attempt, one key, however often it was sent
        assert ledger.money_moved(invoice_id) == 1  # charged exactly once
        assert ledger.answered_charged[keys[0]] == 1  # never sent again once it was answered
        [attempt] = attempts[invoice_id]
        assert (attempt.outcome, attempt.charge_id) == ("charged", ledger.charged[keys[0]])
    # the repeats came first (same keys), then everything else
    assert all(len(provider.by_invoice[i]) == 2 for i in attempted)
    assert await run_status(database, run_id) == "completed"
    assert await open_outcomes(database, run_id) == 0


async def test_a_quarter_of_unknown_outcomes_does_not_trip_the_default_breaker(
    database: Database, clock: ManualClock, monotonic: FakeMonotonic
) -> None:
    n = 400
    ids = await make_invoices(database, n, clock.now() - timedelta(minutes=1))
    run_id = await open_run(database, clock, POLICY, "api")
    counter = iter(range(1_000_000))

    def every_fourth_unknown(request: ChargeRequest) -> Charged:
        if next(counter) % 4 == 3:
            raise OutcomeUnknownError("timeout")
        return Charged(f"ch_{request.invoice_id}")

    provider = ScriptedProvider(default=every_fourth_unknown)
    defaults = WorkerSettings()
    assert (defaults.breaker_window, defaults.breaker_threshold) == (100, 0.6)
    w = Worker(
        database,
        provider,
        clock,
        POLICY,
        WorkerSettings(batch_size=BATCH, concurrency=CONCURRENCY),
    )
    await w.run_until_idle()
    assert await pause_state(database) == (None, None)
    assert set(provider.by_invoice) == set(ids)  # every invoice was tried
    assert len(provider.calls) == n
    for _ in range(8):
        clock.advance(ALL_DUE)
        await w.run_until_idle()
        assert await pause_state(database) == (None, None)
    rows = await rows_by_id(database, ids)
    assert {r.status for r in rows.values()} == {"PAID"}
    assert_same_key_per_invoice(provider)
    assert await run_status(database, run_id) == "completed"


async def test_an_unauthorized_pause_is_lifted_only_by_a_definite_answer(
    database: Database, clock: ManualClock, monotonic: FakeMonotonic
) -> None:
    ids = await make_invoices(database, 30, clock.now() - timedelta(minutes=1))
    await open_run(database, clock, POLICY, "api")
    provider = ScriptedProvider(default=UnauthorizedError("bad key"))
    w = new_worker(database, provider, clock, monotonic, pause_probe=30.0)
    await w.run_until_idle()
    reason, _ = await pause_state(database)
    assert reason is not None
    assert reason.startswith("provider_unauthorized"), reason

    # each probe ends in an unknown outcome: more than a breaker window's worth of them
    provider.default = OutcomeUnknownError("timeout")
    for _ in range(WINDOW + 2):
        calls = len(provider.calls)
        monotonic.advance(31)
        clock.advance(timedelta(seconds=1))
        await w.run_until_idle()
        assert len(provider.calls) == calls + 1  # one probe, nothing else
        reason, _ = await pause_state(database)
        assert reason is not None
        assert reason.startswith("provider_unauthorized"), reason  # not lifted, not replaced

    # a definite answer to the probe lifts it; then everything is charged
    provider.default = Charged("ch_ok")
    monotonic.advance(31)
    clock.advance(ALL_DUE)
    await w.run_until_idle()
    assert await pause_state(database) == (None, None)
    clock.advance(ALL_DUE)
    await w.run_until_idle()
    rows = await rows_by_id(database, ids)
    assert {r.status for r in rows.values()} == {"PAID"}
    assert {r.attempt_count for r in rows.values()} == {1}
    assert_same_key_per_invoice(provider)


async def test_status_and_the_run_say_charging_is_paused_while_the_provider_is_unavailable(
    client: httpx.AsyncClient, database: Database, clock: ManualClock, monotonic: FakeMonotonic
) -> None:
    _ids, run_id, ledger, provider, w = await trip(database, clock, monotonic, n=100)

    response = await client.get("/rest/v1/status")
    assert response.status_code == 200, response.text
    status = response.json()
    assert status["charging"] == "paused"
    assert status["pausedReason"].startswith("provider_unavailable"), status
    assert status["pausedSince"] == "2026-11-22T12:00:00Z"
    assert status["openRuns"] == [run_id]
    # the open attempts wait for their repeat time; the others are due
    assert status["dueBacklog"] == 100 - len(provider.by_invoice)
    response = await client.get(f"/rest/v1/billing/runs/{run_id}")
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["status"] == "running"
    assert run["pausedReason"] == status["pausedReason"]
    assert run["counts"]["paid"] == 0

    ledger.down = False
    clock.advance(ALL_DUE)
    await w.run_until_idle()
    response = await client.get("/rest/v1/status")
    status = response.json()
    assert (status["charging"], status["pausedReason"], status["pausedSince"]) == (
        "running",
        None,
        None,
    )
    run = (await client.get(f"/rest/v1/billing/runs/{run_id}")).json()
    assert (run["status"], run["pausedReason"], run["counts"]["paid"]) == ("completed", None, 100)


async def test_the_logs_say_charging_paused_then_resumed(
    database: Database, clock: ManualClock, monotonic: FakeMonotonic
) -> None:
    with capture_logs() as logs:
        _ids, _run, ledger, _provider, w = await trip(database, clock, monotonic, n=60)
        ledger.down = False
        clock.advance(ALL_DUE)
        await w.run_until_idle()
    events = [e for e in logs if e["event"] in ("charging_paused", "charging_resumed")]
    assert [e["event"] for e in events] == ["charging_paused", "charging_resumed"], events
    paused, resumed = events
    assert paused["reason"] == "provider_unavailable"
    assert paused["log_level"] == "error"
    assert f"of the last {WINDOW} calls had unknown outcomes" in paused["detail"]
    assert resumed["log_level"] in ("warning", "info")


async def test_the_worker_loop_stops_claiming_then_resumes_by_itself(
    database: Database, clock: ManualClock
) -> None:
    """The same through `Worker.run` (the pipelined loop `serve` and `worker` use)."""
    ids = await make_invoices(database, N, clock.now() - timedelta(minutes=1))
    run_id = await open_run(database, clock, POLICY, "api")
    ledger = Ledger(down=True)
    provider = ScriptedProvider(default=ledger)
    # no probe while the test looks (the real monotonic clock; an hour between probes)
    w = new_worker(database, provider, clock, breaker_probe=3_600.0, batch_size=20, concurrency=10)
    stop = asyncio.Event()
    task = asyncio.create_task(w.run(stop))
    try:
        deadline = time.monotonic() + 15
        while (await pause_state(database))[0] is None:
            assert time.monotonic() < deadline, "the breaker never tripped"
            assert not task.done(), task
            await asyncio.sleep(0.05)
        # calls stop: wait until none has been made for a while
        quiet_since, calls = time.monotonic(), len(provider.calls)
        while time.monotonic() - quiet_since < 0.5:
            assert time.monotonic() < deadline, "calls never stopped while paused"
            await asyncio.sleep(0.05)
            if len(provider.calls) != calls:
                quiet_since, calls = time.monotonic(), len(provider.calls)
        attempted = set(provider.by_invoice)
        # a window, the answers not yet recorded, what was in flight or claimed ahead, one
        # probe (at most about 4 batches of 20 here): not the whole run
        assert len(attempted) <= N // 3, len(attempted)
        reason, _ = await pause_state(database)
        assert reason is not None
        assert reason.startswith("provider_unavailable")

        ledger.down = False
        clock.advance(ALL_DUE)  # the open attempts' repeats come due; they succeed
        while await run_status(database, run_id) != "completed":
            assert time.monotonic() < deadline + 15, "charging never resumed"
            assert not task.done(), task
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    assert await pause_state(database) == (None, None)
    rows = await rows_by_id(database, ids)
    assert {r.status for r in rows.values()} == {"PAID"}
    assert_same_key_per_invoice(provider)
    for invoice_id in ids:
        assert ledger.money_moved(invoice_id) == 1
