"""Time the scheduler's tick, the status backlog and void on a big, mostly-paid database.

    python benchmarks/scheduler_tick.py                                # 1,000,000 on SQLite
    python benchmarks/scheduler_tick.py --database postgres            # the same on PostgreSQL
    python benchmarks/scheduler_tick.py --invoices 200000 --ticks 20 --analyze

Builds N invoices (88 % PAID with an attempt and a run membership each; 5 % PENDING
due next month; 4 % PENDING due and waiting for a run; 2 % PENDING in an open run;
0.5 % with an attempt of unknown outcome waiting for its repeat; 0.2 % PROCESSING
under a live lease; the rest FAILED or REVIEW), then times, with a ManualClock that
moves a second per tick:

- `Scheduler.tick` in `external` mode (the REVIEW sweep, the probe for repeats);
- `GET /rest/v1/status`'s backlog count (BillingRepository.due_backlog);
- void of a PENDING invoice (ActionRepository.void: its run_invoices update);
- `Scheduler.tick` in `automatic` mode (its first tick opens a run of every due
  invoice and is reported on its own).

Prints p50 / p90 in ms for each. The PostgreSQL database (`--database-url`,
default postgresql://postgres@127.0.0.1:5432/antaeus_bench_ticks) is dropped and
re-created. Statistics are left as the bulk load leaves them unless `--analyze`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from antaeus.billing.runs import Scheduler
from antaeus.clock import ManualClock
from antaeus.domain.policy import PolicySettings
from antaeus.storage import migrate
from antaeus.storage.database import Database
from antaeus.storage.repositories.actions import ActionRepository
from antaeus.storage.repositories.billing import BillingRepository
from antaeus.storage.repositories.invoices import InvoiceRepository
from antaeus.storage.tables import billing_runs, charge_attempts, customers, run_invoices
from antaeus.storage.types import UTCDateTime
from benchmarks.billing_run import recreate_pg

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
CHUNK = 100_000
CUSTOMERS = 1_000


async def bulk(conn: AsyncConnection, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """COPY on PostgreSQL; one executemany of plain tuples on SQLite."""
    if not rows:
        return
    columns = list(rows[0])
    if conn.dialect.name == "postgresql":
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.copy_records_to_table(
            table.name, records=[tuple(r[c] for c in columns) for r in rows], columns=columns
        )
        return
    utc = UTCDateTime()
    cache: dict[datetime, str] = {}

    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            text = cache.get(value)
            if text is None:
                bound = utc.process_bind_param(value, conn.dialect)
                assert bound is not None
                text = cache[value] = bound.strftime("%Y-%m-%d %H:%M:%S.%f")
            return text
        return value

    compiled = (
        insert(table).values({c: bindparam(c) for c in columns}).compile(dialect=conn.dialect)
    )
    order = list(compiled.positiontup or [])
    await conn.exec_driver_sql(str(compiled), [tuple(plain(r[c]) for c in order) for r in rows])


def kind_of(i: int) -> str:
    slot = i % 1000
    if slot < 880:
        return "paid"
    if slot < 930:
        return "future"
    if slot < 970:
        return "due"
    if slot < 990:
        return "in_run"
    if slot < 995:
        return "unknown"
    if slot < 997:
        return "processing"
    return "failed" if slot < 999 else "review"


async def build(db: Database, n: int) -> dict[str, list[int]]:
    past, future = NOW - timedelta(days=40), NOW + timedelta(days=29)
    kinds: dict[str, list[int]] = {}
    async with db.write() as conn:
        await conn.execute(
            insert(customers),
            [{"currency": "EUR", "timezone": "UTC", "created_at": past} for _ in range(CUSTOMERS)],
        )
        history = (
            await conn.execute(
                insert(billing_runs)
                .values(trigger="schedule", status="completed", started_at=past, completed_at=past)
                .returning(billing_runs.c.id)
            )
        ).scalar_one()
        current = (
            await conn.execute(
                insert(billing_runs)
                .values(trigger="schedule", status="running", started_at=NOW)
                .returning(billing_runs.c.id)
            )
        ).scalar_one()
    for start in range(0, n, CHUNK):
        inv: list[dict[str, Any]] = []
        att: list[dict[str, Any]] = []
        ri: list[dict[str, Any]] = []
        for i in range(start, min(n, start + CHUNK)):
            invoice_id = i + 1
            kind = kind_of(i)
            kinds.setdefault(kind, []).append(invoice_id)
            row: dict[str, Any] = {
                "id": invoice_id,
                "customer_id": i % CUSTOMERS + 1,
                "currency": "EUR",
                "amount_minor": 1000 + i % 5000,
                "status": "PENDING",
                "due_at": past,
                "eligible_at": past,
                "attempt_count": 0,
                "last_failure": None,
                "next_attempt_at": None,
                "run_id": None,
                "lease_owner": None,
                "lease_expires_at": None,
                "attempt_open_since": None,
                "created_at": past,
                "updated_at": past,
            }
            outcome: str | None = None
            run_outcome: str | None = None
            if kind == "paid":
                row.update(status="PAID", attempt_count=1)
                outcome, run_outcome = "charged", "paid"
            elif kind == "due":
                pass  # PENDING, due, waiting for a run
            elif kind == "future":
                row.update(due_at=future, eligible_at=future)
            elif kind == "in_run":
                row.update(run_id=current)
            elif kind == "unknown":
                repeat = NOW + timedelta(hours=1)
                row.update(
                    attempt_count=1,
                    last_failure="unknown_outcome",
                    next_attempt_at=repeat,
                    eligible_at=repeat,
                    attempt_open_since=NOW - timedelta(hours=2),
                )
                outcome, run_outcome = "unknown", "rescheduled"
            elif kind == "processing":
                row.update(
                    status="PROCESSING",
                    run_id=current,
                    attempt_count=1,
                    attempt_open_since=NOW - timedelta(seconds=5),
                    lease_owner="bench",
                    lease_expires_at=NOW + timedelta(days=1),
                )
            elif kind == "failed":
                row.update(status="FAILED", attempt_count=1, last_failure="customer_not_found")
                outcome, run_outcome = "customer_not_found", "failed"
            elif kind == "review":
                row.update(status="REVIEW", attempt_count=1, last_failure="unknown_outcome")
                outcome, run_outcome = "unknown", "review"
            inv.append(row)
            if row["attempt_count"]:
                att.append(
                    {
                        "invoice_id": invoice_id,
                        "number": 1,
                        "idempotency_key": f"bench:{invoice_id}:1",
                        "run_id": history if run_outcome else current,
                        "started_at": past,
                        "finished_at": past if outcome and outcome != "unknown" else None,
                        "outcome": outcome,
                        "charge_id": f"ch_{invoice_id}" if outcome == "charged" else None,
                        "sends": 1,
                    }
                )
            if run_outcome or row["run_id"]:
                ri.append(
                    {
                        "run_id": history if run_outcome else current,
                        "invoice_id": invoice_id,
                        "currency": "EUR",
                        "amount_minor": row["amount_minor"],
                        "outcome": run_outcome,
                        "finished_at": past if run_outcome else None,
                    }
                )
        async with db.write() as conn:
            await InvoiceRepository(conn).insert_many(inv)
            await bulk(conn, charge_attempts, att)
            await bulk(conn, run_invoices, ri)
    if db.dialect == "postgresql":
        async with db.write() as conn:
            await conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('invoices', 'id'), "
                "(SELECT max(id) FROM invoices))"
            )
    return kinds


async def timed(n: int, step: Callable[[int], Awaitable[Any]]) -> list[float]:
    out = []
    for i in range(n):
        started = time.perf_counter()
        await step(i)
        out.append((time.perf_counter() - started) * 1000)
    return out


def summary(name: str, ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=10) if len(ms) > 1 else ms * 9
    return f"{name:<34} p50 {statistics.median(ms):8.2f} ms   p90 {q[8]:8.2f} ms   (n={len(ms)})"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--ticks", type=int, default=30, help="samples per measurement")
    parser.add_argument("--analyze", action="store_true", help="ANALYZE after the load")
    args = parser.parse_args()

    if args.database == "postgres":
        url = args.database_url or "postgresql://postgres@127.0.0.1:5432/antaeus_bench_ticks"
        await recreate_pg(url)
    else:
        work = Path(tempfile.mkdtemp(prefix="antaeus-ticks-"))
        url = args.database_url or f"sqlite:///{work / 'antaeus.db'}"
    db = Database(url)
    await migrate.upgrade(db)
    revision = await migrate.current_revision(db)
    started = time.perf_counter()
    kinds = await build(db, args.invoices)
    loaded = time.perf_counter() - started
    if args.analyze:
        async with db.write() as conn:
            await conn.exec_driver_sql("ANALYZE")

    policy = PolicySettings()
    clock = ManualClock(NOW)
    print(
        f"database: {args.database} (schema {revision}); invoices: {args.invoices:,} "
        f"(loaded in {loaded:.0f} s); analyzed: {'yes' if args.analyze else 'no'}"
    )

    external = Scheduler(db, clock, policy, "external")

    async def external_tick(_: int) -> None:
        clock.advance(timedelta(seconds=1))
        await external.tick()

    await external_tick(0)  # the first tick also sweeps Idempotency-Keys
    print(summary("scheduler tick (external)", await timed(args.ticks, external_tick)))

    async def backlog(_: int) -> None:
        async with db.read() as conn:
            await BillingRepository(conn).due_backlog(clock.now())

    print(summary("status: due backlog", await timed(args.ticks, backlog)))

    victims = kinds["due"][: args.ticks]

    async def void(i: int) -> None:
        async with db.write() as conn:
            result = await ActionRepository(conn).void(victims[i], "bench", None, clock.now())
        assert result.ok, result

    print(summary("void (PENDING, not in a run)", await timed(len(victims), void)))

    automatic = Scheduler(db, clock, policy, "automatic")

    async def automatic_tick(_: int) -> None:
        clock.advance(timedelta(seconds=1))
        await automatic.tick()

    first = await timed(1, automatic_tick)
    print(f"{'scheduler tick (automatic), first':<34} {first[0]:8.0f} ms (opens a run of the due)")
    print(summary("scheduler tick (automatic)", await timed(args.ticks, automatic_tick)))
    await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
