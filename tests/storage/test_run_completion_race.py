"""Two transactions that record a run's last answers at once still complete it.

Under read committed each saw the other's answer as not yet written, and neither
completed the run: it stayed `running` with every invoice done, and `antaeus bill
--processes 2` on PostgreSQL waited for it forever. `complete_runs` now locks the
run's row first, so the second waits for the first to commit and then sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from antaeus.billing.service import open_run
from antaeus.clock import ManualClock
from antaeus.domain.policy import PolicySettings
from antaeus.storage.database import Database, ReadConnection, WriteConnection
from antaeus.storage.repositories.billing import BillingRepository
from antaeus.storage.tables import billing_runs, run_invoices
from tests.billing.helpers import make_invoices

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def _repo(conn: AsyncConnection) -> BillingRepository[WriteConnection]:
    """A repository on a transaction this test begins and commits itself."""
    return BillingRepository(WriteConnection(ReadConnection(conn)))


async def test_the_last_two_answers_recorded_at_once_complete_the_run(database: Database) -> None:
    first, second = await make_invoices(database, 2, NOW)
    run_id = await open_run(database, ManualClock(NOW), PolicySettings(), "cli")
    assert run_id is not None

    async def answer(conn: AsyncConnection, invoice_id: int) -> None:
        await conn.execute(
            update(run_invoices)
            .where(run_invoices.c.run_id == run_id, run_invoices.c.invoice_id == invoice_id)
            .values(outcome="paid", finished_at=NOW)
        )

    async with contextlib.AsyncExitStack() as stack:
        one = await stack.enter_async_context(database.engine.connect())
        await one.begin()
        await answer(one, first)
        completed_first = await _repo(one).complete_runs([run_id], NOW)
        if not database.is_sqlite:
            two = await stack.enter_async_context(database.engine.connect())
            await two.begin()
            await answer(two, second)  # both answers written, neither committed
            later = asyncio.create_task(_repo(two).complete_runs([run_id], NOW))
            await asyncio.sleep(0.3)  # (it waits for the first's lock on the run)
            await one.commit()
            completed_second = await asyncio.wait_for(later, 10)
            await two.commit()
        else:  # SQLite's writers take turns: the second begins after the first commits
            await one.commit()
            two = await stack.enter_async_context(database.engine.connect())
            await two.begin()
            await answer(two, second)
            completed_second = await _repo(two).complete_runs([run_id], NOW)
            await two.commit()
    assert completed_first == []
    assert completed_second == [run_id]
    async with database.read() as conn:
        status = await conn.scalar(select(billing_runs.c.status).where(billing_runs.c.id == run_id))
    assert status == "completed"
