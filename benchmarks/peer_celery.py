"""The peer: the earlier RabbitMQ service's design, written the way most Python teams would.

    python benchmarks/peer_celery.py                    # 20,000 invoices, no latency, 8 threads
    python benchmarks/peer_celery.py --latency-ms 50    # 50 ms per provider call, 50 threads
    python benchmarks/peer_celery.py --invoices 5000 --threads 16 --processes 2
    python benchmarks/billing_run.py --vs-celery              # Antaeus and this peer, one go

Celery with RabbitMQ as the broker and PostgreSQL as the store, one task per
invoice. A task claims its invoice with a conditional UPDATE (PENDING ->
PROCESSING) and commits, calls the provider (a sleep of --latency-ms, none at 0),
then marks it PAID and inserts one attempt row in one transaction and commits.
Each worker thread keeps its own psycopg connection. The workers are real
`celery -A benchmarks.peer_celery:app worker --pool threads -c K` processes
(8 threads at no latency, 50 with latency, unless --threads says).

The script seeds N PENDING invoices, starts the worker(s) and waits until they
are ready, then publishes N tasks and waits until every invoice is PAID. The
clock runs from the first publish to the last PAID (so worker start-up is not
counted). It prints invoices/s and the wall time, then stops the workers (their
whole process group, SIGKILL if SIGTERM is not enough) and cleans up: the queue
is purged and deleted, and the tables are dropped.

Where the data lives: a database `antaeus_peer` on the server of --database-url
(created if missing and allowed; otherwise the database of --database-url
itself), and in it a schema of its own per run (`peer_<pid>_<hex>`, dropped at
the end), so nothing collides with the test suite's databases or a concurrent
run. The queue and its exchange are named the same way. What a run killed
with SIGKILL leaves (a schema, a queue) is dropped by the next run on this
machine; its workers, watching their parent, kill themselves. If RabbitMQ or
PostgreSQL cannot be reached, the script says which and exits 2 before starting
anything.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from celery import Celery
from celery.signals import worker_init, worker_ready
from kombu import Exchange, Queue

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/test"
PEER_DATABASE = "antaeus_peer"

# The workers read their configuration from these (set by the script for its subprocesses).
ENV_BROKER = "PEER_BROKER_URL"
ENV_DATABASE = "PEER_DATABASE_URL"
ENV_SCHEMA = "PEER_SCHEMA"
ENV_QUEUE = "PEER_QUEUE"
ENV_LATENCY = "PEER_LATENCY_MS"
ENV_READY_FILE = "PEER_READY_FILE"
ENV_PARENT = "PEER_PARENT_PID"

app = Celery("antaeus_peer")


class PeerError(Exception):
    """Something the peer needs is missing or broke; the message says what."""


def mask(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def libpq_url(url: str) -> str:
    """postgresql+asyncpg://... (SQLAlchemy's spelling) -> postgresql://... for psycopg."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+')[0]}{sep}{rest}"


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def configure(broker_url: str, queue: str) -> None:
    """The Celery settings: defaults, but for the run's own queue and no results."""
    app.conf.update(
        broker_url=broker_url,
        broker_connection_retry_on_startup=False,  # a broker that is down fails at once
        broker_connection_max_retries=3,
        task_ignore_result=True,
        task_default_queue=queue,
        task_default_exchange=queue,
        task_default_routing_key=queue,
        task_queues=[
            # a plain durable queue, as Celery declares it (an expiring one, x-expires,
            # would be declared again before every publish: kombu cannot cache it)
            Queue(queue, Exchange(queue, type="direct"), routing_key=queue)
        ],
    )


if os.environ.get(ENV_QUEUE):  # inside a worker started by this script
    configure(os.environ[ENV_BROKER], os.environ[ENV_QUEUE])


# --- the task: what the earlier service did per invoice --------------------------------

_local = threading.local()


def _connection() -> psycopg.Connection[Any]:
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(
            os.environ[ENV_DATABASE],
            options=f"-c search_path={os.environ[ENV_SCHEMA]}",
        )
        _local.conn = conn
    return conn


def provider_charge(customer_id: int, amount_minor: int, currency: str, key: str) -> str:
    """The simulated provider: the same latency as Antaeus's simulator, always succeeding."""
    latency = float(os.environ.get(ENV_LATENCY, "0"))
    if latency > 0:
        time.sleep(latency / 1000)
    return f"ch_{uuid.uuid4().hex}"


@app.task(name="peer.charge_invoice")
def charge_invoice(invoice_id: int) -> str:
    conn = _connection()
    with conn.transaction():  # claim, conditionally, and commit
        row = conn.execute(
            "UPDATE invoice SET status = 'PROCESSING', updated_at = now() "
            "WHERE id = %s AND status = 'PENDING' "
            "RETURNING customer_id, amount_minor, currency",
            (invoice_id,),
        ).fetchone()
    if row is None:
        return "skipped"  # someone else has it, or it is settled
    key = f"peer:{invoice_id}:1"
    started = time.time()
    charge_id = provider_charge(row[0], row[1], row[2], key)
    with conn.transaction():  # record PAID and the attempt, and commit
        conn.execute(
            "UPDATE invoice SET status = 'PAID', updated_at = now() "
            "WHERE id = %s AND status = 'PROCESSING'",
            (invoice_id,),
        )
        conn.execute(
            "INSERT INTO charge_attempt "
            "(invoice_id, number, idempotency_key, outcome, charge_id, started_at, finished_at) "
            "VALUES (%s, 1, %s, 'charged', %s, to_timestamp(%s), now())",
            (invoice_id, key, charge_id, started),
        )
    return "paid"


@worker_init.connect
def _watch_parent(**_: Any) -> None:
    """A worker whose script died (even by SIGKILL) kills its own process group."""
    parent = os.environ.get(ENV_PARENT)
    if not parent:
        return

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(0.5)
        os.killpg(os.getpgid(0), signal.SIGKILL)

    threading.Thread(target=watch, name="peer-parent-watch", daemon=True).start()


@worker_ready.connect
def _say_ready(**_: Any) -> None:
    path = os.environ.get(ENV_READY_FILE)
    if path:
        Path(path).write_text(str(os.getpid()))


# --- the script: seed, start workers, publish, wait, clean up --------------------------


@dataclass(frozen=True)
class PeerResult:
    invoices: int
    latency_ms: float
    threads: int
    processes: int
    seconds: float
    publish_seconds: float

    @property
    def rate(self) -> float:
        return self.invoices / self.seconds

    def line(self) -> str:
        return (
            f"peer (Celery, --pool threads -c {self.threads} x {self.processes} process"
            f"{'es' if self.processes != 1 else ''}, RabbitMQ, PostgreSQL): "
            f"{self.invoices:,} invoices, provider latency {self.latency_ms:g} ms: "
            f"{self.seconds:.1f} s = {self.rate:,.0f} invoices/s "
            f"(publishing the tasks took {self.publish_seconds:.1f} s of it)"
        )


def default_threads(latency_ms: float) -> int:
    return 8 if latency_ms == 0 else 50


def check_postgres(url: str) -> None:
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PeerError(f"PostgreSQL is not reachable at {mask(url)}: {detail}") from exc


def check_broker(url: str) -> None:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:
        raise PeerError(f"RabbitMQ is not reachable at {mask(url)}: {exc}") from exc


def peer_database(url: str) -> str:
    """The URL of `antaeus_peer` on url's server, created if missing; url itself if not allowed."""
    target = with_database(url, PEER_DATABASE)
    with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (PEER_DATABASE,)
        ).fetchone()
        if exists:
            return target
        try:
            conn.execute(f'CREATE DATABASE "{PEER_DATABASE}"')
        except psycopg.errors.DuplicateDatabase:
            pass  # a concurrent run made it
        except psycopg.errors.InsufficientPrivilege:
            return url  # a schema of its own in the given database, then
    return target


def create_tables(url: str, schema: str, n: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'SET search_path = "{schema}"')
        conn.execute(
            "CREATE TABLE invoice (id bigint PRIMARY KEY, customer_id bigint NOT NULL, "
            "amount_minor bigint NOT NULL, currency text NOT NULL, status text NOT NULL, "
            "updated_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(
            "CREATE TABLE charge_attempt (id bigserial PRIMARY KEY, "
            "invoice_id bigint NOT NULL REFERENCES invoice (id), number int NOT NULL, "
            "idempotency_key text NOT NULL UNIQUE, outcome text NOT NULL, charge_id text, "
            "started_at timestamptz NOT NULL, finished_at timestamptz)"
        )
        with conn.cursor().copy(
            "COPY invoice (id, customer_id, amount_minor, currency, status) FROM STDIN"
        ) as copy:
            for i in range(1, n + 1):
                copy.write_row((i, i, 1000 + i % 49_000, "EUR", "PENDING"))
        conn.execute("ANALYZE invoice")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def drop_leftovers(url: str) -> list[str]:
    """Drop the schemas (and queues) of earlier runs on this machine whose script was killed."""
    with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname ~ '^peer_[0-9]+_[0-9a-f]{6}$'"
            )
        ]
    left = [name for name in names if not _alive(int(name.split("_")[1]))]
    for name in left:
        with contextlib.suppress(Exception):
            remove_queue(name)
        with contextlib.suppress(psycopg.Error):
            drop_schema(url, name)
    return left


def drop_schema(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def count_paid(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM invoice WHERE status = 'PAID'").fetchone()
    return int(row[0]) if row else 0


def remove_queue(queue: str) -> None:
    """Purge and delete the run's queue, and delete its exchange (each on a fresh channel:
    the broker closes a channel whose operation fails, e.g. on a queue already gone)."""
    with app.connection_for_write() as conn:
        for operation in ("queue_purge", "queue_delete", "exchange_delete"):
            channel = conn.channel()
            try:
                getattr(channel, operation)(queue)
            except Exception:
                pass  # gone already, or never made
            finally:
                with contextlib.suppress(Exception):
                    channel.close()


def stop_group(process: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """SIGTERM the worker's whole process group, then SIGKILL what is left after `grace`.

    An idle Celery worker notices SIGTERM only when its event loop wakes, which
    without heartbeats takes up to 10 s; every task is done when this is called
    (or the run failed), so nothing is lost by not waiting for it.
    """
    if process.poll() is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # anything it left in its group
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(5)


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


@contextlib.contextmanager
def workers(
    count: int, threads: int, env: dict[str, str], logs: Path, tag: str
) -> Iterator[list[tuple[subprocess.Popen[bytes], Path]]]:
    started: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for i in range(count):
            log = logs / f"worker-{i}.log"
            ready = logs / f"worker-{i}.ready"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [
                        sys.executable, "-m", "celery", "-A", "benchmarks.peer_celery:app",
                        "worker", "--pool", "threads", "-c", str(threads),
                        "-n", f"{tag}-{i}@%h", "--loglevel", "WARNING",
                        "--without-gossip", "--without-mingle", "--without-heartbeat",
                    ],
                    cwd=ROOT,
                    env={**env, ENV_READY_FILE: str(ready)},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, killed as one
                )  # fmt: skip
            started.append((process, log))
        deadline = time.monotonic() + 60
        for i, (process, log) in enumerate(started):
            ready = logs / f"worker-{i}.ready"
            while not ready.exists():
                if process.poll() is not None:
                    raise PeerError(
                        f"the Celery worker exited with {process.returncode} before it was "
                        f"ready:\n{tail(log)}"
                    )
                if time.monotonic() > deadline:
                    raise PeerError(f"the Celery worker was not ready after 60 s:\n{tail(log)}")
                time.sleep(0.05)
        yield started
    finally:
        for process, _ in started:
            stop_group(process)


def run_peer(
    invoices: int,
    latency_ms: float = 0,
    threads: int | None = None,
    processes: int = 1,
    database_url: str = DEFAULT_DATABASE,
    broker_url: str = DEFAULT_BROKER,
    stall_seconds: float = 60,
) -> PeerResult:
    """Seed, run the Celery workers over every invoice, clean up; raises PeerError."""
    threads = threads or default_threads(latency_ms)
    database_url = libpq_url(database_url)
    check_postgres(database_url)
    check_broker(broker_url)
    tag = f"peer_{os.getpid()}_{secrets.token_hex(3)}"
    configure(broker_url, tag)
    url = peer_database(database_url)
    drop_leftovers(url)
    logs = Path(tempfile.mkdtemp(prefix="antaeus-peer-"))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        ENV_BROKER: broker_url,
        ENV_DATABASE: url,
        ENV_SCHEMA: tag,
        ENV_QUEUE: tag,
        ENV_LATENCY: str(latency_ms),
        ENV_PARENT: str(os.getpid()),
    }
    try:
        create_tables(url, tag, invoices)
        with (
            workers(processes, threads, env, logs, tag) as running,
            psycopg.connect(url, autocommit=True, options=f"-c search_path={tag}") as watch,
        ):
            started = time.perf_counter()
            with app.producer_or_acquire() as producer:
                for invoice_id in range(1, invoices + 1):
                    charge_invoice.apply_async((invoice_id,), producer=producer)
            published = time.perf_counter() - started
            paid, progressed = 0, time.monotonic()
            while paid < invoices:
                time.sleep(0.05)
                now_paid = count_paid(watch)
                if now_paid != paid:
                    paid, progressed = now_paid, time.monotonic()
                for process, log in running:
                    if process.poll() is not None:
                        raise PeerError(
                            f"a Celery worker exited with {process.returncode} at {paid:,} of "
                            f"{invoices:,} paid:\n{tail(log)}"
                        )
                if time.monotonic() - progressed > stall_seconds:
                    raise PeerError(
                        f"no invoice paid for {stall_seconds:g} s ({paid:,} of {invoices:,}); "
                        f"worker log:\n{tail(running[0][1])}"
                    )
            elapsed = time.perf_counter() - started
    finally:
        with contextlib.suppress(Exception):
            remove_queue(tag)
        with contextlib.suppress(psycopg.Error):
            drop_schema(url, tag)
        shutil.rmtree(logs, ignore_errors=True)
    return PeerResult(invoices, latency_ms, threads, processes, elapsed, published)


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the clean-up


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--invoices", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=float, default=0, help="per provider call")
    parser.add_argument(
        "--threads", type=int, default=None, help="per worker (default: 8, or 50 with latency)"
    )
    parser.add_argument("--processes", type=int, default=1, help="Celery worker processes")
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE,
        help="a PostgreSQL server (and a database to connect to); the peer works in "
        f"`{PEER_DATABASE}` there, in a schema of its own",
    )
    parser.add_argument("--broker-url", default=DEFAULT_BROKER)
    args = parser.parse_args()
    if args.invoices < 1 or args.processes < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--invoices, --threads and --processes must be at least 1")
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        result = run_peer(
            args.invoices,
            args.latency_ms,
            args.threads,
            args.processes,
            args.database_url,
            args.broker_url,
        )
    except PeerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(result.line())


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # the workers import this file as benchmarks.peer_celery
    main()
