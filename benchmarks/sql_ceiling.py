"""The ceiling the schema sets: Antaeus's own SQL for a run, replayed with no Python around it.

    python benchmarks/sql_ceiling.py                  # SQLite, 100,000 invoices
    python benchmarks/sql_ceiling.py --invoices 20000

Seeds N due invoices (every charge succeeds), copies the database, and bills the
original in this process with the real worker (the simulated provider, its state
in a file) while SQLAlchemy's events capture every statement the engine sends
after the run is opened: its text, its parameters (as the driver gets them), and
where each transaction begins and commits, per connection. Then it replays that
exact sequence on the copy through the bare stdlib `sqlite3` (one connection per
connection captured, the same PRAGMAs, executemany where the engine used it) and
times only the replay. The replay is what the charge flow's SQL costs on this
schema with zero Python of ours: the most `antaeus bill` could reach without
writing less. Beside it, `floor.py sqlite-batch` (three statements per 1,000
invoices on a two-table schema) at the same N, measured in the same sitting.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import event

from antaeus.billing.service import open_run
from antaeus.billing.worker import Worker, WorkerSettings
from antaeus.clock import SystemClock
from antaeus.domain.policy import PolicySettings
from antaeus.observability.logging import configure_logging
from antaeus.simulators.simulated import SimulatedPaymentProvider
from antaeus.storage.database import SQLITE_BUSY_TIMEOUT_MS, Database

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.billing_run import floor_script  # noqa: E402

#: (connection, statement or "COMMIT"/"ROLLBACK", parameters, executemany)
Step = tuple[int, str, Any, bool]


async def bill_capturing(path: Path, state: Path, copies: list[Path]) -> tuple[list[Step], float]:
    """Open a run on the database at `path`, copy the database to each of `copies`,
    then bill every invoice of the run, capturing the SQL sent from then on."""
    url = f"sqlite:///{path}"
    db = Database(url)
    steps: list[Step] = []
    capturing = False
    sync_engine = db.engine.sync_engine

    def key(conn: Any) -> int:
        return id(conn.connection.dbapi_connection)

    @event.listens_for(sync_engine, "before_cursor_execute")
    def _execute(
        conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, many: bool
    ) -> None:
        if capturing:
            steps.append((key(conn), statement, params, many))

    @event.listens_for(sync_engine, "commit")
    def _commit(conn: Any) -> None:
        if capturing:
            steps.append((key(conn), "COMMIT", None, False))

    @event.listens_for(sync_engine, "rollback")
    def _rollback(conn: Any) -> None:
        if capturing:
            steps.append((key(conn), "ROLLBACK", None, False))

    clock = SystemClock()
    policy = PolicySettings()
    provider = SimulatedPaymentProvider(str(state), failure_rate=0)
    try:
        await open_run(db, clock, policy, "cli")
        for copy in copies:
            with sqlite3.connect(path) as src, sqlite3.connect(copy) as dst:
                src.backup(dst)  # the state the captured SQL starts from, WAL included
        capturing = True
        started = time.perf_counter()
        await Worker(db, provider, clock, policy, WorkerSettings()).run_until_idle()
        billed = time.perf_counter() - started
        capturing = False
    finally:
        await provider.aclose()
        await db.dispose()
    return steps, billed


def replay(path: Path, steps: list[Step], synchronous: str = "FULL") -> float:
    """Run `steps` on the database at `path` with bare sqlite3; seconds taken."""
    connections: dict[int, sqlite3.Connection] = {}

    def connection(which: int) -> sqlite3.Connection:
        found = connections.get(which)
        if found is None:
            found = sqlite3.connect(path, isolation_level=None, timeout=SQLITE_BUSY_TIMEOUT_MS)
            found.execute("PRAGMA journal_mode=WAL")
            found.execute(f"PRAGMA synchronous={synchronous}")
            found.execute("PRAGMA foreign_keys=ON")
            connections[which] = found
        return found

    for which in {s[0] for s in steps}:
        connection(which)  # opened before the clock starts, as the engine's pool is
    started = time.perf_counter()
    for which, statement, params, many in steps:
        conn = connection(which)
        if statement in ("COMMIT", "ROLLBACK"):
            if conn.in_transaction:
                conn.execute(statement)
        elif many:
            conn.executemany(statement, params)
        else:
            conn.execute(statement, params or ()).fetchall()
    elapsed = time.perf_counter() - started
    for conn in connections.values():
        conn.close()
    return elapsed


def kind(statement: str) -> str:
    words = statement.split()
    verb = words[0].upper() if words else "?"
    table = next(
        (w for prev, w in itertools.pairwise(words) if prev.upper() in {"UPDATE", "INTO", "FROM"}),
        "",
    )
    return f"{verb} {table}".strip()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--invoices", type=int, default=100_000)
    args = parser.parse_args()
    n = args.invoices
    work = Path(tempfile.mkdtemp(prefix="antaeus-ceiling-"))
    original, full, normal = work / "antaeus.db", work / "full.db", work / "normal.db"
    env = {**os.environ, "ANTAEUS_DATABASE_URL": f"sqlite:///{original}"}
    subprocess.run(
        [sys.executable, "-m", "antaeus", "seed", "--seed", "1", "--customers", str(n),
         "--invoices-per-customer", "1"],
        env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    configure_logging("warning")
    steps, billed = asyncio.run(bill_capturing(original, work / "simulator.db", [full, normal]))
    writes = Counter(
        kind(s) for _, s, _, _ in steps if not s.upper().startswith(("BEGIN", "COMMIT", "SELECT"))
    )
    rows = sum(len(p) if many else 1 for _, s, p, many in steps if s not in ("COMMIT", "ROLLBACK"))
    seconds = replay(full, steps)
    seconds_normal = replay(normal, steps, "NORMAL")
    for copy in (full, normal):
        with sqlite3.connect(copy) as check:
            paid = check.execute("SELECT count(*) FROM invoices WHERE status = 'PAID'").fetchone()
        if paid[0] != n:
            raise SystemExit(f"error: the replay left {paid[0]:,} of {n:,} invoices PAID")
    floor_out = subprocess.run(
        [sys.executable, str(floor_script()), "sqlite-batch"],
        env={**os.environ, "N": str(n)}, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    found = re.search(r": ([0-9,]+) invoices/s", floor_out)
    floor = float(found.group(1).replace(",", "")) if found else float("nan")
    print(f"SQLite; {n:,} invoices")
    print(
        f"the worker in process (captured while billing, so slower than antaeus bill): "
        f"{n / billed:,.0f} invoices/s"
    )
    print(
        f"its SQL replayed with bare sqlite3: {n / seconds:,.0f} invoices/s with "
        f"synchronous=FULL (Antaeus's default), {n / seconds_normal:,.0f} with NORMAL "
        f"(the floor's); {len(steps):,} statements, {rows / n:.1f} executions per invoice"
    )
    print("  writes, by statement kind (executions): " + ", ".join(
        f"{k} {v:,}" for k, v in writes.most_common()
    ))  # fmt: skip
    print(
        f"floor.py sqlite-batch (NORMAL), same N: {floor:,.0f} invoices/s; the replay is "
        f"{n / seconds / floor:.3f}x the floor (FULL), {n / seconds_normal / floor:.3f}x (NORMAL)"
    )


if __name__ == "__main__":
    main()
