"""The worker's loop: what `run()` does around the claim, call and record steps.

Races between the claim and record loops, a graceful stop that outlasts a lease,
failures that `run_until_idle` must not hide, and a database that is away for a
moment.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from antaeus.billing.service import open_run
from antaeus.billing.worker import Worker, WorkerSettings
from antaeus.clock import ManualClock, SystemClock
from antaeus.domain.policy import PolicySettings
from antaeus.payments.http import ProviderUnreachableError
from antaeus.payments.provider import Charged, ChargeRequest
from antaeus.storage.database import Database
from antaeus.storage.repositories.billing import BillingRepository
from tests.billing.fakes import ScriptedProvider
from tests.billing.helpers import invoice_row, make_invoices

POLICY = PolicySettings()


class SlowProvider(ScriptedProvider):
    """Charges, after `seconds` of real time."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.started = asyncio.Event()

    async def charge(self, request: ChargeRequest) -> Any:
        self.started.set()
        await asyncio.sleep(self.seconds)
        return await super().charge(request)


async def statuses(db: Database, ids: list[int]) -> set[str]:
    return {(await invoice_row(db, i)).status for i in ids}


async def test_a_pause_read_overtaken_by_a_resume_does_not_stop_the_run(
    database: Database, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Charging is paused; the probe's answer lifts the pause while a slow read of the
    # pause state is in flight. That read's stale answer must not pause the worker again.
    ids = await make_invoices(database, 20, clock.now() - timedelta(seconds=1))
    await open_run(database, clock, POLICY, "api")
    async with database.write() as conn:
        await BillingRepository(conn).pause("provider_unauthorized", "test", clock.now())
    read = BillingRepository.pause_state

    async def slow_read(self: BillingRepository) -> Any:
        answer = await read(self)
        await asyncio.sleep(0.3)  # arrives after the probe's answer is recorded
        return answer

    monkeypatch.setattr(BillingRepository, "pause_state", slow_read)
    w = Worker(
        database,
        SlowProvider(1.1),
        clock,
        POLICY,
        WorkerSettings(concurrency=10, batch_size=10, poll_interval=0.5),
    )
    await asyncio.wait_for(w.run_until_idle(), 30)
    assert await statuses(database, ids) == {"PAID"}


async def test_leases_are_renewed_while_a_graceful_stop_waits_for_calls(
    database: Database,
) -> None:
    clock = SystemClock()
    [invoice_id] = await make_invoices(database, 1, datetime.now(UTC) - timedelta(seconds=1))
    await open_run(database, clock, POLICY, "api")
    provider = SlowProvider(3.5)
    w = Worker(
        database,
        provider,
        clock,
        POLICY,
        WorkerSettings(lease=timedelta(seconds=1.5), poll_interval=0.05),
    )
    stop = asyncio.Event()
    running = asyncio.create_task(w.run(stop))
    await asyncio.wait_for(provider.started.wait(), 10)
    stop.set()  # graceful: the call in flight is finished and recorded
    await asyncio.sleep(2.5)  # past the lease taken at the claim
    row = await invoice_row(database, invoice_id)
    assert (row.status, row.lease_owner) == ("PROCESSING", w.id)
    assert row.lease_expires_at > datetime.now(UTC)  # renewed, so no other worker takes it
    await asyncio.wait_for(running, 10)
    assert (await invoice_row(database, invoice_id)).status == "PAID"
    assert w.stats.lost_leases == 0


async def test_run_until_idle_raises_what_failed_to_record(
    database: Database, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await make_invoices(database, 3, clock.now() - timedelta(seconds=1))
    await open_run(database, clock, POLICY, "api")

    async def broken(*_: Any, **__: Any) -> list[int]:
        raise RuntimeError("disk full")

    monkeypatch.setattr(BillingRepository, "record", broken)
    w = Worker(database, ScriptedProvider(), clock, POLICY, WorkerSettings(poll_interval=0.05))
    with pytest.raises(RuntimeError, match="disk full"):
        await asyncio.wait_for(w.run_until_idle(), 30)


class Unreachable(ScriptedProvider):
    async def check(self) -> None:
        raise ProviderUnreachableError("nobody answers")


async def test_run_until_idle_does_not_wait_for_a_health_check(
    database: Database, clock: ManualClock
) -> None:
    ids = await make_invoices(database, 3, clock.now() - timedelta(seconds=1))
    await open_run(database, clock, POLICY, "api")
    w = Worker(database, Unreachable(default=Charged("ch_1")), clock, POLICY)
    await asyncio.wait_for(w.run_until_idle(), 30)
    assert await statuses(database, ids) == {"PAID"}


async def test_a_failed_claim_is_retried_and_the_worker_goes_on(
    database: Database, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await make_invoices(database, 5, clock.now() - timedelta(seconds=1))
    await open_run(database, clock, POLICY, "api")
    claim = BillingRepository.claim
    failures = iter([True, True])

    async def flaky(self: BillingRepository, *args: Any, **kw: Any) -> Any:
        if next(failures, False):
            raise ConnectionError("the database restarted")
        return await claim(self, *args, **kw)

    monkeypatch.setattr(BillingRepository, "claim", flaky)
    w = Worker(database, ScriptedProvider(), clock, POLICY, WorkerSettings(poll_interval=0.01))
    stop = asyncio.Event()
    with capture_logs() as logs:
        running = asyncio.create_task(w.run(stop))
        for _ in range(500):
            if await statuses(database, ids) == {"PAID"}:
                break
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(running, 10)
    assert await statuses(database, ids) == {"PAID"}
    assert [e["event"] for e in logs].count("claim_failed") == 2
