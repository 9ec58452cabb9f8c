"""A payment provider that does not answer at start-up: `worker` and `serve` say so and wait.

Issue: "A provider URL that does not answer at start-up is reported clearly by
`serve` and `worker`, which keep retrying rather than exit."

Real `antaeus` processes on a SQLite file in a temporary directory, pointed at
a port nobody listens on (`ANTAEUS_PAYMENT_PROVIDER_URL`); later, a real
`antaeus provider serve` comes up on that port. Every process is stopped with
SIGTERM (SIGKILL if it hangs) whatever happens.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from antaeus.billing.service import open_run
from antaeus.clock import SystemClock
from antaeus.domain.policy import PolicySettings
from antaeus.storage.database import Database
from antaeus.storage.tables import invoices
from tests.billing.helpers import make_invoices
from tests.cli.test_cli import Cli, _clean_env, _free_port, serving
from tests.payments.simulator import stop

STARTED_WITHIN = 30.0  # seconds: interpreter start-up and imports, on a busy machine
REPORTED_WITHIN = 10.0  # seconds after the worker started
API_TOKEN = "ant_provider_unreachable_test_token_0123456789"


def sqlite_cli(tmp_path: Path, provider_url: str) -> Cli:
    env = _clean_env(ANTAEUS_PAYMENT_PROVIDER_URL=provider_url, ANTAEUS_API_TOKEN=API_TOKEN)
    return Cli(tmp_path, env, f"sqlite:///{tmp_path / 'antaeus.db'}")


@contextmanager
def started(cli: Cli, *args: str, name: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`antaeus ARGS` in the background, its stderr in a file; stopped on exit."""
    err = cli.cwd / f"{name}.stderr"
    with (cli.cwd / f"{name}.stdout").open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "antaeus", *args],
            cwd=cli.cwd,
            env=cli.env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        yield process, err
    finally:
        stop(process)


def wait_for_text(
    process: subprocess.Popen[bytes], stderr: Path, text: str, timeout: float, count: int = 1
) -> str:
    """Until `text` appears `count` times in the process's stderr; fail if it exits first."""
    deadline = time.monotonic() + timeout
    while True:
        output = stderr.read_text(encoding="utf-8", errors="replace")
        if output.count(text) >= count:
            return output
        if process.poll() is not None:
            pytest.fail(f"exited {process.returncode} before saying {text!r}\n{output}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {text!r} (x{count}) after {timeout} s\n{output}")
        time.sleep(0.05)


def unreachable_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "provider_unreachable" in line]


def assert_stops_on_sigterm(
    process: subprocess.Popen[bytes], stderr: Path, codes: tuple[int, ...] = (0,)
) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running 10 s after SIGTERM\n{stderr.read_text()}")
    assert code in codes, (code, stderr.read_text())


def test_worker_reports_an_unreachable_provider_and_keeps_retrying(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    cli = sqlite_cli(tmp_path, url)
    cli.ok("db", "upgrade")  # a worker never migrates; it would wait for the schema instead
    with started(cli, "worker", name="worker") as (process, stderr):
        wait_for_text(process, stderr, "worker_started", STARTED_WITHIN)
        output = wait_for_text(process, stderr, "provider_unreachable", REPORTED_WITHIN)
        [first, *_] = unreachable_lines(output)
        assert url in first, first  # names the URL it cannot reach
        # it retries (1 s later, then backing off) instead of exiting
        output = wait_for_text(process, stderr, "provider_unreachable", 5.0, count=2)
        assert process.poll() is None, output
        assert all(url in line for line in unreachable_lines(output))
        assert "Traceback" not in output
        assert_stops_on_sigterm(process, stderr)
        assert stderr.read_text().splitlines()[-1].startswith("stopped: "), stderr.read_text()


def test_serve_reports_an_unreachable_provider_and_keeps_serving_the_api(
    tmp_path: Path,
) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    cli = sqlite_cli(tmp_path, url)
    with serving(cli) as server:  # ready: GET /rest/health answered
        output = wait_for_text(
            server.process, server.stderr_path, "provider_unreachable", REPORTED_WITHIN
        )
        [first, *_] = unreachable_lines(output)
        assert url in first, first
        # it retries (1 s later, then backing off) instead of exiting
        output = wait_for_text(server.process, server.stderr_path, "provider_unreachable", 5.0, 2)
        assert server.process.poll() is None, output
        assert all(url in line for line in unreachable_lines(output))
        # the API keeps answering while the provider is down
        health = httpx.get(f"{server.base_url}/rest/health", timeout=5)
        assert (health.status_code, health.json()) == (200, "ok")
        status = httpx.get(
            f"{server.base_url}/rest/v1/status",
            headers={"Authorization": f"Bearer {API_TOKEN}"},
            timeout=5,
        )
        assert status.status_code == 200, status.text
        assert "Traceback" not in server.stderr()
        assert_stops_on_sigterm(server.process, server.stderr_path)
        assert server.stderr().splitlines()[-1].startswith("stopped: "), server.stderr()


async def _due_invoices_in_a_run(database_url: str, n: int) -> list[int]:
    db = Database(database_url)
    try:
        ids = await make_invoices(db, n, datetime.now(UTC) - timedelta(seconds=1))
        await open_run(db, SystemClock(), PolicySettings(), "api")
        return ids
    finally:
        await db.dispose()


async def _statuses(database_url: str, ids: list[int]) -> set[str]:
    db = Database(database_url)
    try:
        async with db.read() as conn:
            rows = await conn.execute(select(invoices.c.status).where(invoices.c.id.in_(ids)))
            return set(rows.scalars())
    finally:
        await db.dispose()


def test_worker_starts_charging_once_the_provider_comes_up(tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cli = sqlite_cli(tmp_path, url)
    cli.ok("db", "upgrade")
    ids = asyncio.run(_due_invoices_in_a_run(cli.database_url, 3))
    with started(cli, "worker", name="worker") as (worker, worker_err):
        wait_for_text(worker, worker_err, "worker_started", STARTED_WITHIN)
        wait_for_text(worker, worker_err, "provider_unreachable", REPORTED_WITHIN)
        assert asyncio.run(_statuses(cli.database_url, ids)) == {"PENDING"}  # nothing claimed
        provider_cmd = ("provider", "serve", "--port", str(port))
        with started(cli, *provider_cmd, name="provider") as (provider, provider_err):
            # the worker checks again 1, 3, 7, ... s after its first try
            output = wait_for_text(worker, worker_err, "provider_reachable", 20.0)
            assert provider.poll() is None, provider_err.read_text()
            assert "after_failures" in output
            deadline = time.monotonic() + 10
            while asyncio.run(_statuses(cli.database_url, ids)) != {"PAID"}:
                assert time.monotonic() < deadline, worker_err.read_text()
                assert worker.poll() is None, worker_err.read_text()
                time.sleep(0.1)
            assert_stops_on_sigterm(worker, worker_err)


@pytest.mark.parametrize(
    ("command", "bad_url"),
    [
        ("worker", "ftp://x"),
        ("worker", "not a url"),
        ("worker", "http://"),
        ("serve", "ftp://x"),
        ("worker", "ftp://user:sekret@x"),
    ],
)
def test_a_malformed_provider_url_stops_the_command_at_once(
    tmp_path: Path, command: str, bad_url: str
) -> None:
    cli = sqlite_cli(tmp_path, bad_url)
    began = time.monotonic()
    done = cli.run(command, timeout=30)
    assert done.returncode != 0, done.stderr
    assert time.monotonic() - began < 15  # no retrying: a wrong setting is not an outage
    assert "PAYMENT_PROVIDER_URL" in done.stderr, done.stderr
    said = " ".join(done.stderr.split())
    shown = bad_url.replace("sekret", "***")
    assert repr(shown) in said, said  # the value that is wrong, without its password
    assert "sekret" not in done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "antaeus.db").exists()  # it stopped before touching the database
