"""Bill N due invoices with the simulated provider, and measure a floor on the same database.

    python benchmarks/billing_run.py                                  # 100,000 on SQLite
    python benchmarks/billing_run.py --database-url postgresql://postgres@127.0.0.1/bench
    python benchmarks/billing_run.py --workers 2 --database-url postgresql://...
    python benchmarks/billing_run.py --latency-ms 50 --concurrency 200 --invoices 20000
    python benchmarks/billing_run.py --relay-compare --invoices 20000   # relay's cost
    python benchmarks/billing_run.py --processes 2 --invoices 20000     # antaeus bill, 2 processes

Workers are real `antaeus worker` processes; the provider always succeeds (failure
rate 0). The floor settles the same number of fresh invoices with the bare minimum
of SQL: one batched status update and one batched attempt insert per thousand.
Prints invoices/s, the floor, their ratio, and the workers' peak RSS. A PostgreSQL
database given here is dropped and re-created.

--processes N times `antaeus bill --processes N` as a whole process instead (it opens
the run, its N worker processes charge it, it prints its summary and exits).

--relay-compare bills twice (fresh invoices each time): once with `worker --no-relay`,
once with the worker's relay on and one webhook endpoint (a local receiver in another
process answering 200), and prints both invoices/s and how long the relay took to
deliver every event after billing ended.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from sqlalchemy import func, insert, select, update

from antaeus.billing.service import open_run
from antaeus.clock import SystemClock
from antaeus.domain.policy import PolicySettings
from antaeus.notify.webhooks import new_secret
from antaeus.storage.database import Database
from antaeus.storage.repositories.billing import BillingRepository
from antaeus.storage.repositories.outbox import DestinationRepository
from antaeus.storage.tables import charge_attempts, event_deliveries, events, invoices

ROOT = str(Path(__file__).resolve().parent.parent)


async def recreate_pg(url: str) -> None:
    base, _, name = url.rpartition("/")
    conn = await asyncpg.connect(
        f"{base.split('://')[0].split('+')[0]}://{base.split('://')[1]}/postgres"
    )
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def antaeus(*args: str, env: dict[str, str], cwd: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "antaeus", *args],
        env=env,
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def wait_completed(db: Database, run_id: int) -> None:
    while True:
        async with db.read() as conn:
            run = await BillingRepository(conn).get_run(run_id)
        if run is not None and run.status == "completed":
            return
        await asyncio.sleep(0.05)


async def floor(db: Database, n: int) -> float:
    """Settle n PENDING invoices with one status UPDATE and one attempt INSERT per thousand."""
    async with db.read() as conn:
        ids = list(
            (
                await conn.execute(
                    select(invoices.c.id)
                    .where(invoices.c.status == "PENDING")
                    .order_by(invoices.c.id)
                    .limit(n)
                )
            ).scalars()
        )
    now = datetime.now(UTC)
    started = time.perf_counter()
    for i in range(0, len(ids), 1000):
        chunk = ids[i : i + 1000]
        async with db.write() as conn:
            await conn.execute(
                update(invoices)
                .where(invoices.c.id.in_(chunk))
                .values(status="PAID", updated_at=now)
            )
            await conn.execute(
                insert(charge_attempts),
                [
                    {
                        "invoice_id": x,
                        "number": 1,
                        "idempotency_key": f"floor:{x}:1",
                        "started_at": now,
                        "finished_at": now,
                        "outcome": "charged",
                        "charge_id": f"ch_{x}",
                    }
                    for x in chunk
                ],
            )
    return len(ids) / (time.perf_counter() - started)


async def bill(
    db: Database, n_workers: int, env: dict[str, str], work: Path, *extra: str
) -> tuple[float, float, list[float]]:
    """One run over every due invoice with real workers: (seconds, seconds opening, RSS)."""
    workers = [
        subprocess.Popen(  # noqa: ASYNC220 (starts the workers; nothing to wait for)
            [sys.executable, "-m", "antaeus", "worker", *extra], env=env, cwd=work
        )
        for _ in range(n_workers)
    ]
    try:
        await asyncio.sleep(2.0)  # let the workers start (imports, connections)
        started = time.perf_counter()
        run_id = await open_run(db, SystemClock(), PolicySettings(), "cli")
        opened = time.perf_counter() - started
        await wait_completed(db, run_id)
        elapsed = time.perf_counter() - started
        rss = [peak_rss_mb(w.pid) for w in workers]
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(30)
    return elapsed, opened, rss


def bill_command(processes: int, env: dict[str, str], work: Path) -> float:
    """`antaeus bill --processes N`, timed as a whole process (seconds)."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "antaeus", "bill", "--processes", str(processes)],
        env=env,
        cwd=work,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


async def undelivered(db: Database) -> int:
    async with db.read() as conn:
        waiting = await conn.scalar(
            select(func.count())
            .select_from(event_deliveries)
            .where(event_deliveries.c.delivered_at.is_(None))
        )
        unfanned = await conn.scalar(
            select(func.count()).select_from(events).where(events.c.fanned_out_at.is_(None))
        )
    return int(waiting or 0) + int(unfanned or 0)


async def relay_compare(
    db: Database, args: argparse.Namespace, env: dict[str, str], work: Path, url: str
) -> None:
    """Billing without the relay, then with it delivering to one webhook endpoint."""
    sys.path.insert(0, ROOT)
    from benchmarks.relay import start_receiver

    kind = url.split("://")[0].split("+")[0]
    print(f"database: {kind}; invoices: {args.invoices:,} per run; workers: {args.workers}")
    without, _, _ = await bill(db, args.workers, env, work, "--no-relay")
    print(f"without relay (worker --no-relay): {args.invoices / without:,.0f} invoices/s")

    antaeus(
        "seed", "--seed", "2", "--customers", str(args.invoices),
        "--invoices-per-customer", "1", "--append", env=env, cwd=work,
    )  # fmt: skip
    async with db.write() as conn:  # the first run's events are not the second's
        await conn.execute(update(events).values(fanned_out_at=datetime.now(UTC)))
    receiver, hook = start_receiver()
    try:
        async with db.write() as conn:
            await DestinationRepository(conn).create(
                "webhook", hook, None, new_secret(), datetime.now(UTC)
            )
        with_relay, _, _ = await bill(db, args.workers, env, work)
        ended = time.perf_counter()
        left = await undelivered(db)
        # the workers stopped with billing; one relay delivers what is left
        relay_process = subprocess.Popen(  # noqa: ASYNC220 (a worker left to relay)
            [sys.executable, "-m", "antaeus", "worker"], env=env, cwd=work
        )
        try:
            while await undelivered(db):  # noqa: ASYNC110 (polls the database)
                await asyncio.sleep(0.2)
        finally:
            relay_process.send_signal(signal.SIGTERM)
            relay_process.wait(30)
        drained = time.perf_counter() - ended
    finally:
        receiver.terminate()
        receiver.join(10)
    async with db.read() as conn:
        delivered = await conn.scalar(select(func.count()).select_from(event_deliveries))
    print(
        f"with relay + 1 webhook endpoint: {args.invoices / with_relay:,.0f} invoices/s "
        f"({with_relay / without:.2f}x the time); {left:,} of {delivered:,} events "
        f"undelivered when billing ended, all delivered {drained:.1f} s later"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=None, help="calls in flight per worker")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="time `antaeus bill --processes N` (a whole process) instead of `antaeus worker`s",
    )
    parser.add_argument("--no-floor", action="store_true")
    parser.add_argument(
        "--relay-compare",
        action="store_true",
        help="bill with and without the relay delivering to a webhook endpoint (no floor)",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="antaeus-bench-"))
    url = args.database_url or f"sqlite:///{work / 'antaeus.db'}"
    if url.startswith("postgres"):
        await recreate_pg(url)
    env = {
        **os.environ,
        "ANTAEUS_DATABASE_URL": url,
        "ANTAEUS_LOG_LEVEL": "warning",
        "ANTAEUS_SIMULATED_FAILURE_RATE": "0",
        "ANTAEUS_SIMULATED_STATE": str(work / "simulator.db"),
        "ANTAEUS_SIMULATED_LATENCY_MS": str(args.latency_ms),
        "ANTAEUS_SCHEDULE": "external",
    }
    if args.concurrency:
        env["ANTAEUS_WORKER_CONCURRENCY"] = str(args.concurrency)
    if args.batch_size:
        env["ANTAEUS_BATCH_SIZE"] = str(args.batch_size)
    antaeus(
        "seed",
        "--seed",
        "1",
        "--customers",
        str(args.invoices),
        "--invoices-per-customer",
        "1",
        env=env,
        cwd=work,
    )

    db = Database(url)
    if args.relay_compare:
        await relay_compare(db, args, env, work, url)
        await db.dispose()
        return
    if args.processes:
        elapsed = bill_command(args.processes, env, work)
        opened, rss = float("nan"), []
    else:
        elapsed, opened, rss = await bill(db, args.workers, env, work)
    async with db.read() as conn:
        paid = await conn.scalar(
            select(func.count()).select_from(invoices).where(invoices.c.status == "PAID")
        )
    rate = args.invoices / elapsed
    kind = url.split("://")[0].split("+")[0]
    who = f"antaeus bill --processes {args.processes}" if args.processes else "workers"
    print(
        f"database: {kind}; invoices: {args.invoices:,}; {who}; workers: {args.workers}; "
        f"provider latency: {args.latency_ms:g} ms"
    )
    print(
        f"billing: {elapsed:.1f} s ({opened:.2f} s opening the run) = {rate:,.0f} invoices/s; "
        f"paid {paid:,}"
    )
    if args.latency_ms:
        ideal = (
            args.workers
            * int(env.get("ANTAEUS_WORKER_CONCURRENCY", "500"))
            / (args.latency_ms / 1000)
        )
        print(
            f"ideal at this latency and concurrency: {ideal:,.0f}/s -> {rate / ideal:.0%} of ideal"
        )
    if rss:
        print(f"worker peak RSS: {', '.join(f'{r:.0f} MB' for r in rss)}")
    if not args.no_floor:
        antaeus(
            "seed",
            "--seed",
            "2",
            "--customers",
            str(args.invoices),
            "--invoices-per-customer",
            "1",
            "--append",
            env=env,
            cwd=work,
        )
        floor_rate = await floor(db, args.invoices)
        print(
            f"floor (1 UPDATE + 1 INSERT per 1,000): {floor_rate:,.0f} invoices/s; "
            f"billing is {rate / floor_rate:.0%} of the floor"
        )
    await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
