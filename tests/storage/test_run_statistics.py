"""Opening a large run on PostgreSQL refreshes the planner's statistics at once.

Invoices loaded in bulk and then put in a run all at once leave the statistics
saying nothing of them, until autovacuum's next look: the claim was then planned
as a sort of every PENDING invoice (its cost grew with the run). A run of at least
`ANALYZE_RUNS_OF` invoices analyzes `invoices` and `run_invoices` in the
transaction that opens it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from antaeus.billing.service import open_run
from antaeus.clock import ManualClock
from antaeus.domain.policy import PolicySettings
from antaeus.seeding import seed
from antaeus.storage.database import Database
from antaeus.storage.repositories import runs

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


async def _analyzed(db: Database) -> dict[str, int]:
    async with db.read() as conn:
        rows = await conn.execute(
            text(
                "SELECT relname, analyze_count FROM pg_stat_user_tables "
                "WHERE relname IN ('invoices', 'run_invoices')"
            )
        )
        return {r[0]: int(r[1]) for r in rows}


async def _run_of(db: Database) -> int:
    await seed(db, now=NOW, seed_value=7, customers=30, invoices_per_customer=1)
    clock = ManualClock(NOW.replace(month=12, day=2))
    run_id = await open_run(db, clock, PolicySettings(), "cli")
    assert run_id is not None
    async with db.read() as conn:
        size = await conn.scalar(
            text("SELECT count(*) FROM run_invoices WHERE run_id = :r"), {"r": run_id}
        )
    assert size, "the seeded invoices were not due"
    return int(size)


async def test_a_large_run_analyzes_invoices_and_its_members(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if database.is_sqlite:
        pytest.skip("SQLite keeps no statistics here (never analyzed; its plans are fixed)")
    before = await _analyzed(database)
    monkeypatch.setattr(runs, "ANALYZE_RUNS_OF", 1)
    await _run_of(database)
    for _ in range(50):  # (the statistics collector's counters may lag a moment)
        after = await _analyzed(database)
        if all(after.get(t, 0) > before.get(t, 0) for t in ("invoices", "run_invoices")):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not analyzed: before {before}, after {after}")


async def test_a_small_run_leaves_it_to_autovacuum(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if database.is_sqlite:
        pytest.skip("SQLite keeps no statistics here (never analyzed; its plans are fixed)")
    monkeypatch.setattr(runs, "ANALYZE_RUNS_OF", 10**9)
    before = await _analyzed(database)
    await _run_of(database)
    await asyncio.sleep(0.5)
    assert (await _analyzed(database)).get("invoices", 0) == before.get("invoices", 0)
