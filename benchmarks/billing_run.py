"""Bill N due invoices with the simulated provider, and measure a floor on the same database.

    python benchmarks/billing_run.py                                  # 100,000 on SQLite
    python benchmarks/billing_run.py --database-url postgresql://postgres@127.0.0.1/bench
    python benchmarks/billing_run.py --workers 2 --database-url postgresql://...
    python benchmarks/billing_run.py --latency-ms 50 --concurrency 200 --invoices 20000
    python benchmarks/billing_run.py --relay-compare --invoices 20000   # relay's cost
    python benchmarks/billing_run.py --vs-celery                        # against the Celery peer
    python benchmarks/billing_run.py --vs-celery --latency-ms 50 --runs 5
    python benchmarks/billing_run.py --processes 2 --invoices 20000     # antaeus bill, 2 processes

Workers are real `antaeus worker` processes; the provider always succeeds (failure
rate 0). The simulated provider runs in each worker's process with its state in a
file (ANTAEUS_SIMULATED_STATE), not `:memory:`, so the RSS printed is the engine's.
The floor settles the same number of fresh invoices with the bare minimum
of SQL: one batched status update and one batched attempt insert per thousand.
Prints invoices/s, the floor, their ratio, and the workers' peak RSS. A PostgreSQL
database given here is dropped and re-created.

--processes N times `antaeus bill --processes N` as a whole process instead (it opens
the run, its N worker processes charge it, it prints its summary and exits).

--relay-compare bills twice (fresh invoices each time): once with `worker --no-relay`,
once with the worker's relay on and one webhook endpoint (a local receiver in another
process answering 200), and prints both invoices/s and how long the relay took to
deliver every event after billing ended.

--vs-celery runs Antaeus and the Celery peer (benchmarks/peer_celery.py: the earlier
RabbitMQ service's design, a task per invoice) on the same N (default 20,000) and
provider latency, in one go, and prints both rates and their ratio. Antaeus is
`antaeus bill` with its defaults on PostgreSQL (--database-url, default
postgresql://postgres@127.0.0.1:5432/antaeus_vs_celery, re-created for every run and
dropped at the end), timed as a whole process, seeding excluded, the simulator's
state in a file. The peer is timed from its first published task to its last PAID
invoice, its workers started beforehand (which favours the peer). It needs RabbitMQ
(--broker-url) and PostgreSQL, and says which is down before starting anything.
--runs K repeats both K times and prints the median, min and max of each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
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


async def drop_pg(url: str) -> None:
    base, _, name = url.rpartition("/")
    conn = await asyncpg.connect(
        f"{base.split('://')[0].split('+')[0]}://{base.split('://')[1]}/postgres"
    )
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
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


FLOOR_SCRIPTS = (
    Path(ROOT).parent / "shared" / "bench" / "floor.py",  # the reference, when beside the clone
    Path(ROOT) / "benchmarks" / "floor.py",  # its verbatim copy (a fresh clone elsewhere)
)


def floor_script() -> Path:
    return next(p for p in FLOOR_SCRIPTS if p.exists())


def reference_floor(url: str, n: int) -> float:
    """`floor.py sqlite-batch` or `pg-batch` at the same N, in this sitting (invoices/s).

    On PostgreSQL it runs in a database of its own beside the benchmark's
    (`<name>_floor`, re-created), on the same server.
    """
    env = {**os.environ, "N": str(n)}
    if url.startswith("postgres"):
        floor_url = libpq(url) + "_floor"
        asyncio.run(recreate_pg(floor_url))
        env["LIMITS_PG_URL"] = floor_url
        which = "pg-batch"
    else:
        which = "sqlite-batch"
    try:
        out = subprocess.run(
            [sys.executable, str(floor_script()), which],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        if url.startswith("postgres"):
            asyncio.run(drop_pg(libpq(url) + "_floor"))
    found = re.search(r": ([0-9,]+) invoices/s", out)
    if found is None:
        raise SystemExit(f"error: floor.py printed no rate: {out!r}")
    return float(found.group(1).replace(",", ""))


def libpq(url: str) -> str:
    """postgresql+asyncpg://… as asyncpg and libpq spell it."""
    scheme, _, rest = url.partition("://")
    return f"{scheme.split('+')[0]}://{rest}"


class Timed:
    """One whole process: wall seconds, CPU seconds (its own and its children's), peak RSS."""

    def __init__(self, wall: float, cpu: float, rss_mb: float, output: str) -> None:
        self.wall, self.cpu, self.rss_mb, self.output = wall, cpu, rss_mb, output


def timed_process(command: list[str], env: dict[str, str], work: Path) -> Timed:
    """Run `command` to its end. CPU and peak RSS come from wait4: the process and
    every descendant it waited for (`bill --processes N`'s children included)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(command, env=env, cwd=work, stdout=out, stderr=subprocess.STDOUT)
        _pid, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read()
    if process.returncode != 0:
        raise SystemExit(f"error: {' '.join(command[2:])} exited {process.returncode}:\n{output}")
    return Timed(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, output)


def bill_command(processes: int | None, env: dict[str, str], work: Path) -> Timed:
    """`antaeus bill [--processes N]` as a whole process, with its defaults otherwise."""
    extra = ["--processes", str(processes)] if processes else []
    return timed_process([sys.executable, "-m", "antaeus", "bill", *extra], env, work)


async def count_paid(url: str) -> int:
    db = Database(url)
    try:
        async with db.read() as conn:
            paid = await conn.scalar(
                select(func.count()).select_from(invoices).where(invoices.c.status == "PAID")
            )
    finally:
        await db.dispose()
    return int(paid or 0)


def bill_runs(args: argparse.Namespace, base_env: dict[str, str], work: Path) -> None:
    """`antaeus bill` timed as a whole process, K runs, each on freshly seeded invoices
    with the reference floor measured beside it; the median, min and max of each."""
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # lines as they come
    n, postgres = args.invoices, bool(args.database_url)
    kind = "PostgreSQL" if postgres else "SQLite"
    latencies = [0.0, args.latency_ms] if args.latency_ms else [0.0]
    concurrency = int(base_env.get("ANTAEUS_WORKER_CONCURRENCY") or _default_concurrency())
    print(
        f"{kind}; invoices: {n:,}; antaeus bill"
        + (f" --processes {args.processes}" if args.processes else " (its defaults)")
        + f"; concurrency {concurrency}; provider latency: "
        + " and ".join(f"{x:g} ms" for x in latencies)
        + f"; the simulator in process, its state in a file; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    print(f"floor: {floor_script()}")
    rates: dict[float, list[float]] = {x: [] for x in latencies}
    cpus: dict[float, list[float]] = {x: [] for x in latencies}
    rss: dict[float, list[float]] = {x: [] for x in latencies}
    floors: list[float] = []
    for i in range(args.runs):
        for latency in latencies:
            url = args.database_url or f"sqlite:///{work / f'antaeus-{i}-{latency:g}.db'}"
            if postgres:
                asyncio.run(recreate_pg(url))
            env = {
                **base_env,
                "ANTAEUS_DATABASE_URL": url,
                "ANTAEUS_SIMULATED_STATE": str(work / f"simulator-{i}-{latency:g}.db"),
                "ANTAEUS_SIMULATED_LATENCY_MS": str(latency),
            }
            antaeus(
                "seed", "--seed", "1", "--customers", str(n), "--invoices-per-customer", "1",
                env=env, cwd=work,
            )  # fmt: skip
            timed = bill_command(args.processes, env, work)
            paid = asyncio.run(count_paid(url))
            if paid != n:
                raise SystemExit(f"error: antaeus bill paid {paid:,} of {n:,}:\n{timed.output}")
            rate = n / timed.wall
            rates[latency].append(rate)
            cpus[latency].append(timed.cpu / n * 1e6)
            rss[latency].append(timed.rss_mb)
            line = (
                f"run {i + 1}, latency {latency:g} ms: {timed.wall:.1f} s = {rate:,.0f}/s; "
                f"CPU {timed.cpu / n * 1e6:,.0f} µs/invoice; peak RSS {timed.rss_mb:.0f} MB"
            )
            if not postgres:
                Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
            if latency == 0 and not args.no_floor:
                floors.append(reference_floor(url, n))
                line += f"; floor {floors[-1]:,.0f}/s, ratio {rate / floors[-1]:.3f}"
            print(line)
    print("--- summary" + (f" of {args.runs} runs: median (min-max)" if args.runs > 1 else ""))
    for latency in latencies:
        print(
            f"latency {latency:g} ms: {spread(rates[latency])} invoices/s; "
            f"CPU {spread(cpus[latency])} µs/invoice; peak RSS {spread(rss[latency])} MB"
        )
    if floors:
        ratios = [r / f for r, f in zip(rates[0.0], floors, strict=True)]
        print(
            f"floor ({'pg' if postgres else 'sqlite'}-batch): {spread(floors)} invoices/s; "
            f"antaeus bill / floor: {spread(ratios, '.3f')} (target: 0.2)"
        )
    if args.latency_ms:
        ideal = concurrency * (args.processes or 1) / (args.latency_ms / 1000)
        zero = statistics.median(rates[0.0])
        bound = min(ideal, zero)
        got = statistics.median(rates[args.latency_ms])
        print(
            f"at {args.latency_ms:g} ms: {got:,.0f}/s against min(C/L = {ideal:,.0f}, "
            f"zero-latency {zero:,.0f}) = {bound:,.0f}: {got / bound:.2f}x (target: 0.8)"
        )


def _default_concurrency() -> int:
    from antaeus.config import Settings

    return int(Settings.model_fields["WORKER_CONCURRENCY"].default)


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
    args.workers = args.workers or 1
    env = {**env, "ANTAEUS_WEBHOOK_ALLOW_PRIVATE": "true"}  # the receiver is on 127.0.0.1
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


VS_CELERY_DATABASE = "postgresql://postgres@127.0.0.1:5432/antaeus_vs_celery"


def spread(values: list[float], fmt: str = ",.0f") -> str:
    if len(values) == 1:
        return f"{values[0]:{fmt}}"
    return (
        f"{statistics.median(values):{fmt}} (median of {len(values)}; "
        f"min {min(values):{fmt}}, max {max(values):{fmt}})"
    )


async def vs_celery(args: argparse.Namespace, env: dict[str, str], work: Path, url: str) -> None:
    """`antaeus bill` and the Celery peer on the same N and latency; both rates, the ratio."""
    sys.path.insert(0, ROOT)
    from benchmarks import peer_celery

    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # lines as they come
    if not url.startswith("postgres"):
        raise SystemExit("error: --vs-celery needs a PostgreSQL --database-url")
    try:  # before anything is dropped or seeded
        peer_celery.check_postgres(peer_celery.libpq_url(url.rpartition("/")[0] + "/postgres"))
        peer_celery.check_broker(args.broker_url)
    except peer_celery.PeerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    n, latency = args.invoices, args.latency_ms
    threads = args.peer_threads or peer_celery.default_threads(latency)
    print(
        f"PostgreSQL; invoices: {n:,}; provider latency: {latency:g} ms; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    ours: list[float] = []
    theirs: list[float] = []
    for i in range(args.runs):
        await recreate_pg(url)
        run_env = {**env, "ANTAEUS_SIMULATED_STATE": str(work / f"simulator-{i}.db")}
        antaeus(
            "seed", "--seed", "1", "--customers", str(n), "--invoices-per-customer", "1",
            env=run_env, cwd=work,
        )  # fmt: skip
        timed = bill_command(None, run_env, work)  # (exits with the output when it fails)
        elapsed = timed.wall
        paid = await count_paid(url)
        if paid != n:
            raise SystemExit(f"error: antaeus bill paid {paid:,} of {n:,} invoices")
        inside = re.search(r"completed in ([0-9.]+) s", timed.output)
        ours.append(n / elapsed)
        print(
            f"antaeus bill (defaults, whole process): {elapsed:.1f} s = {n / elapsed:,.0f} "
            f"invoices/s" + (f" ({inside.group(1)} s by its own count)" if inside else "")
        )
        try:
            peer = peer_celery.run_peer(
                n,
                latency,
                threads,
                args.peer_processes,
                database_url=url,
                broker_url=args.broker_url,
            )
        except peer_celery.PeerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        theirs.append(peer.rate)
        print(peer.line())
    print(f"Antaeus: {spread(ours)} invoices/s")
    print(
        f"Celery peer (threads -c {threads} x {args.peer_processes}): {spread(theirs)} invoices/s"
    )
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(f"Antaeus / Celery peer: {ratio:.1f}x (target: 20x)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--invoices", type=int, default=None, help="100,000 (20,000 with --vs-celery)"
    )
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="time N `antaeus worker` processes on a run instead of `antaeus bill`",
    )
    parser.add_argument("--concurrency", type=int, default=None, help="calls in flight per worker")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="antaeus bill --processes N (default: bill's own default)",
    )
    parser.add_argument("--no-floor", action="store_true")
    parser.add_argument(
        "--relay-compare",
        action="store_true",
        help="bill with and without the relay delivering to a webhook endpoint (no floor)",
    )
    parser.add_argument(
        "--vs-celery",
        action="store_true",
        help="antaeus bill against the Celery peer (benchmarks/peer_celery.py), same N, latency",
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="repeat K times; print the median, min and max"
    )
    parser.add_argument(
        "--peer-threads", type=int, default=None, help="the peer's (8, or 50 with latency)"
    )
    parser.add_argument("--peer-processes", type=int, default=1, help="Celery worker processes")
    parser.add_argument("--broker-url", default="amqp://guest:guest@127.0.0.1:5672//")
    args = parser.parse_args()
    if args.invoices is None:
        args.invoices = 20_000 if args.vs_celery else 100_000
    if args.invoices < 1 or args.runs < 1:
        parser.error("--invoices and --runs must be at least 1")

    work = Path(tempfile.mkdtemp(prefix="antaeus-bench-"))
    if args.vs_celery or args.relay_compare or args.workers:
        asyncio.run(other_modes(args, work))
        return
    env = {
        **os.environ,
        "ANTAEUS_LOG_LEVEL": "warning",
        "ANTAEUS_SIMULATED_FAILURE_RATE": "0",
        "ANTAEUS_SCHEDULE": "external",
    }
    if args.concurrency:
        env["ANTAEUS_WORKER_CONCURRENCY"] = str(args.concurrency)
    if args.batch_size:
        env["ANTAEUS_BATCH_SIZE"] = str(args.batch_size)
    try:
        bill_runs(args, env, work)
    finally:
        if args.database_url:
            asyncio.run(drop_pg(args.database_url))


async def other_modes(args: argparse.Namespace, work: Path) -> None:
    """--vs-celery, --relay-compare and --workers N."""
    if args.vs_celery:
        url = args.database_url or VS_CELERY_DATABASE
        env = {
            **os.environ,
            "ANTAEUS_DATABASE_URL": url,
            "ANTAEUS_LOG_LEVEL": "warning",
            "ANTAEUS_SIMULATED_FAILURE_RATE": "0",
            "ANTAEUS_SIMULATED_LATENCY_MS": str(args.latency_ms),
            "ANTAEUS_SCHEDULE": "external",
        }
        if args.concurrency:
            env["ANTAEUS_WORKER_CONCURRENCY"] = str(args.concurrency)
        if args.batch_size:
            env["ANTAEUS_BATCH_SIZE"] = str(args.batch_size)
        try:
            await vs_celery(args, env, work, url)
        finally:
            await drop_pg(url)
        return
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
    elapsed, opened, rss = await bill(db, args.workers or 1, env, work)
    async with db.read() as conn:
        paid = await conn.scalar(
            select(func.count()).select_from(invoices).where(invoices.c.status == "PAID")
        )
    rate = args.invoices / elapsed
    kind = url.split("://")[0].split("+")[0]
    print(
        f"database: {kind}; invoices: {args.invoices:,}; workers: {args.workers}; "
        f"provider latency: {args.latency_ms:g} ms"
    )
    # in a file: a `:memory:` store holds every key and charge of the run in the
    # worker's own memory (its RSS then measures the simulator, not the engine)
    print(
        "simulated provider in the worker's process, its state in a file: "
        + env["ANTAEUS_SIMULATED_STATE"]
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


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through every clean-up (the peer's workers)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    main()
