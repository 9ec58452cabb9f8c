"""The Celery peer (benchmarks/peer_celery.py) and `billing_run.py --vs-celery` still run.

Tiny N, so the scripts cannot rot; the numbers they print mean nothing here. They
need the `bench` extra (celery, psycopg), PostgreSQL (ANTAEUS_TEST_POSTGRES_URL)
and RabbitMQ at 127.0.0.1:5672 (guest/guest); without one, skipped, saying which.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parent.parent
PEER = ROOT / "benchmarks" / "peer_celery.py"
BILLING_RUN = ROOT / "benchmarks" / "billing_run.py"
PG_ENV = "ANTAEUS_TEST_POSTGRES_URL"
BROKER = "amqp://guest:guest@127.0.0.1:5672//"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("celery") is None or importlib.util.find_spec("psycopg") is None,
    reason="celery or psycopg is not installed (pip install -e '.[bench]'): "
    "benchmark smoke tests skipped",
)


def _broker_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def pg_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set: PostgreSQL tests skipped")
    return url


@pytest.fixture
def broker(pg_url: str) -> str:
    if not _broker_up():
        pytest.skip("RabbitMQ is not reachable at 127.0.0.1:5672: broker tests skipped")
    return BROKER


def _peer_workers(tag_prefix: str) -> list[tuple[int, str]]:
    """(pid, command line) of every Celery worker of the peer whose node name starts so."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "benchmarks.peer_celery:app" in cmdline and f"-n {tag_prefix}" in cmdline:
            found.append((int(entry.name), cmdline))
    return found


def _on_server(pg_url: str, database: str, sql: str, *args: object) -> list[str]:
    """The first column of `sql` run in `database` on pg_url's server."""

    async def run() -> list[str]:
        base = pg_url.partition("://")[2].rpartition("/")[0]
        conn = await asyncpg.connect(f"postgresql://{base}/{database}")
        try:
            return [r[0] for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(run())


def _peer_schemas(pg_url: str, prefix: str) -> list[str]:
    return _on_server(
        pg_url,
        "antaeus_peer",
        "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)",
        prefix,
    )


def test_the_peer_bills_every_invoice_and_leaves_nothing_behind(pg_url: str, broker: str) -> None:
    process = subprocess.Popen(
        [sys.executable, str(PEER), "--invoices", "50", "--database-url", pg_url],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, out + err
    assert re.search(
        r"--pool threads -c 8 x 1 process, RabbitMQ, PostgreSQL\): 50 invoices, "
        r"provider latency 0 ms: [0-9.]+ s = [0-9,]+ invoices/s",
        out,
    ), out
    tag = f"peer_{process.pid}_"
    assert _peer_workers(tag) == []
    assert _peer_schemas(pg_url, tag) == []


def test_sigterm_stops_the_workers_and_cleans_up(pg_url: str, broker: str) -> None:
    from amqp.exceptions import NotFound
    from kombu import Connection

    process = subprocess.Popen(  # 2,000 calls of 50 ms on 2 threads: far longer than this test
        [
            sys.executable, str(PEER), "--invoices", "2000", "--latency-ms", "50",
            "--threads", "2", "--database-url", pg_url,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    tag_prefix = f"peer_{process.pid}_"
    deadline = time.monotonic() + 90
    while not (workers := _peer_workers(tag_prefix)):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no Celery worker started"
        time.sleep(0.1)
    tag = re.search(rf"-n ({tag_prefix}[0-9a-f]{{6}})-0@", workers[0][1])
    assert tag is not None, workers
    time.sleep(1.0)  # let it publish and charge a little
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, out + err
    assert _peer_workers(tag_prefix) == []
    assert _peer_schemas(pg_url, tag_prefix) == []
    with Connection(broker) as conn:  # the queue is gone
        channel = conn.channel()
        with pytest.raises(NotFound):
            channel.queue_declare(tag.group(1), passive=True)


def test_the_peer_says_which_service_is_down() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]  # bound, not listening: connections are refused
    try:
        done = subprocess.run(
            [
                sys.executable, str(PEER), "--invoices", "50",
                "--database-url", f"postgresql://postgres:sekret@127.0.0.1:{port}/test",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.startswith(
            f"error: PostgreSQL is not reachable at postgresql://postgres:***@127.0.0.1:{port}/test"
        ), done.stderr
        assert "sekret" not in done.stderr
    finally:
        closed.close()


def test_the_peer_says_rabbitmq_is_down(pg_url: str) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    try:
        done = subprocess.run(
            [
                sys.executable, str(PEER), "--invoices", "50", "--database-url", pg_url,
                "--broker-url", f"amqp://guest:guest@127.0.0.1:{port}//",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.startswith(
            f"error: RabbitMQ is not reachable at amqp://guest:***@127.0.0.1:{port}//"
        ), done.stderr
    finally:
        closed.close()


def test_billing_run_vs_celery_prints_both_rates_and_the_ratio(pg_url: str, broker: str) -> None:
    base = pg_url.rpartition("/")[0]
    name = f"antaeus_vs_celery_{os.getpid()}"
    try:
        done = subprocess.run(
            [
                sys.executable, str(BILLING_RUN), "--vs-celery", "--invoices", "50",
                "--database-url", f"{base}/{name}",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )  # fmt: skip
    finally:
        _on_server(pg_url, "postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(re.match(r"antaeus bill .*: [0-9.]+ s = [0-9,]+ invoices/s", x) for x in lines)
    assert any(re.match(r"peer \(Celery.*: 50 invoices, provider latency 0 ms", x) for x in lines)
    assert re.match(r"Antaeus / Celery peer: [0-9.]+x", lines[-1]), done.stdout


def test_generation_benchmark_times_antaeus_generate_beside_the_floor(pg_url: str) -> None:
    """benchmarks/generation.py at a tiny N on both engines, in a database of its own."""
    base = pg_url.rpartition("/")[0]
    own = f"{base}/antaeus_generation_smoke_{os.getpid()}"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "generation.py"),
         "--n", "300", "--also", "100", "--engine", "both", "--pg-url", own],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for engine, floor in (("sqlite", "sqlite-generate"), ("postgres", "pg-generate")):
        for n in ("100", "300"):
            line = re.search(rf"^{engine} N={n}: antaeus generate .*$", done.stdout, re.MULTILINE)
            assert line, done.stdout
            assert "subscriptions/s" in line[0]
            assert f"floor ({floor})" in line[0]
            assert re.search(r"peak RSS \d+ MB", line[0])
        assert re.search(rf"{engine}: ratio to the floor [0-9.]+", done.stdout)
        assert re.search(
            rf"{engine}: throughput at 300 is [-+]\d+% of the throughput at 100", done.stdout
        )
