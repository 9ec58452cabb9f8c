"""Runs and the charging pause write their events in the outbox, in the transaction of their
cause: `run.opened`, `run.completed`, `charging.paused` (once per pause), `charging.resumed`."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from antaeus.billing.service import open_run
from antaeus.clock import ManualClock
from antaeus.payments.provider import Charged
from antaeus.storage.database import Database
from antaeus.storage.repositories.billing import BillingRepository
from antaeus.storage.tables import events
from tests.billing.fakes import ScriptedProvider
from tests.billing.helpers import make_invoices
from tests.billing.test_charge_flow import POLICY, worker


async def outbox(db: Database) -> list[tuple[str, int | None, int | None, dict[str, Any]]]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(events.c.type, events.c.invoice_id, events.c.run_id, events.c.payload).order_by(
                events.c.id
            )
        )
        return [(r.type, r.invoice_id, r.run_id, json.loads(r.payload)) for r in rows]


async def test_a_run_is_opened_then_its_invoices_answered_then_it_completes(
    database: Database, clock: ManualClock
) -> None:
    ids = await make_invoices(database, 2, clock.now() - timedelta(minutes=1))
    run_id = await open_run(database, clock, POLICY, "api")
    await worker(database, ScriptedProvider(default=Charged("ch_1")), clock).run_until_idle()
    got = await outbox(database)
    assert got[0] == (
        "run.opened",
        None,
        run_id,
        {"runId": run_id, "trigger": "api", "invoices": 2},
    )
    assert sorted((t, i) for t, i, _r, _d in got[1:3]) == [
        ("invoice.paid", ids[0]),
        ("invoice.paid", ids[1]),
    ]
    assert got[3:] == [("run.completed", None, run_id, {"runId": run_id})]


async def test_an_empty_run_is_opened_and_completed_at_once(
    database: Database, clock: ManualClock
) -> None:
    run_id = await open_run(database, clock, POLICY, "cli")
    assert [(t, r) for t, _i, r, _d in await outbox(database)] == [
        ("run.opened", run_id),
        ("run.completed", run_id),
    ]


async def test_a_pause_is_one_event_however_often_it_is_repeated_and_resuming_is_another(
    database: Database, clock: ManualClock
) -> None:
    now = clock.now()
    async with database.write() as conn:
        repo = BillingRepository(conn)
        await repo.pause("provider_unauthorized", "401 from the provider", now)
        await repo.pause("provider_unauthorized", "401 again", now)  # another worker's
    async with database.write() as conn:
        assert await BillingRepository(conn).resume(now)
        assert not await BillingRepository(conn).resume(now)  # nothing paused: no event
    assert [(t, d) for t, _i, _r, d in await outbox(database)] == [
        ("charging.paused", {"reason": "provider_unauthorized", "detail": "401 from the provider"}),
        ("charging.resumed", {}),
    ]
    async with database.read() as conn:
        reason, _since = await BillingRepository(conn).pause_state()
    assert reason is None


async def test_the_scheduler_reads_invoices_by_status_and_the_due_backlog(
    database: Database, clock: ManualClock
) -> None:
    from antaeus.billing.runs import Scheduler
    from antaeus.observability import metrics

    await make_invoices(database, 3, clock.now() - timedelta(minutes=1))
    await make_invoices(database, 2, clock.now() + timedelta(days=3))
    scheduler = Scheduler(database, clock, POLICY, "external")
    await scheduler.read_gauges()
    assert metrics.INVOICES.labels("PENDING")._value.get() == 5
    assert metrics.INVOICES.labels("PAID")._value.get() == 0
    assert metrics.DUE_BACKLOG._value.get() == 3
