"""Ctrl-C and SIGTERM stop `serve`, `worker` and `bill` gracefully, with one line and
nothing else; a second `serve` on a busy port fails before it starts anything.

Issue: "Ctrl-C prints `Exception closing connection` and a `CancelledError`
traceback every time, idle or busy. A graceful stop prints one line with what it
finished and what it handed back, and nothing else." and "A second `serve` on a
busy port starts its worker and scheduler before the bind fails. Bind first (or
check the port first), then start the rest; exit with a one-line error naming the
port."

Real processes, real signals, on SQLite and PostgreSQL (the traceback came from
asyncpg's pool being cancelled while it closed).
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from antaeus.billing.worker import WorkerStats
from antaeus.cli.stopping import stopped_line
from tests.cli.test_cli import Cli, _clean_env, _free_port, serving
from tests.cli.test_provider_unreachable import started

STOPPED_WITHIN = 30.0  # seconds: the calls in flight (under 1 s each) and recording them
NOISE = ("Traceback", "Exception", "CancelledError", "Shutting down", "shutdown", "ERROR")


def _slow_provider(cli: Cli) -> None:
    """Calls that take a while, so that a signal finds some in flight."""
    cli.env.update(
        ANTAEUS_SIMULATED_LATENCY_MS="700",
        ANTAEUS_SIMULATED_FAILURE_RATE="0",
        ANTAEUS_WORKER_CONCURRENCY="10",
        ANTAEUS_LOG_LEVEL="error",  # only what the stop itself prints
    )


def _signal_and_wait(process: subprocess.Popen[bytes], stderr: Path, sig: int) -> list[str]:
    """Send `sig`; answers the lines written after it. Fails if it does not exit."""
    before = stderr.read_text(encoding="utf-8")
    process.send_signal(sig)
    try:
        process.wait(timeout=STOPPED_WITHIN)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"still running {STOPPED_WITHIN} s after {sig!r}\n{stderr.read_text()}")
    after = stderr.read_text(encoding="utf-8")
    assert after.startswith(before)
    return after[len(before) :].strip("\n").splitlines()


def _assert_one_stop_line(lines: list[str]) -> str:
    assert len(lines) == 1, lines
    [line] = lines
    assert line.startswith("stopped"), line
    assert not any(word in line for word in NOISE), line
    return line


def _assert_handed_back_at_most(line: str, most: int) -> None:
    match = re.search(r"handed back (nothing|(\d+) claimed invoices? unsent)$", line)
    assert match, line
    assert int(match[2] or 0) <= most, line


def _wait_for_paid(cli: Cli, at_least: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        [(paid,)] = cli.query("SELECT count(*) FROM invoices WHERE status = 'PAID'")
        if paid >= at_least:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"only {paid} invoices PAID after {timeout} s")
        time.sleep(0.1)


def _assert_nothing_held(cli: Cli) -> None:
    """Every invoice the process held was recorded or handed back: no lease is left."""
    held = cli.query("SELECT id, status FROM invoices WHERE lease_owner IS NOT NULL")
    assert held == [], held
    open_attempts = cli.query(
        "SELECT i.id FROM invoices i JOIN charge_attempts a ON a.invoice_id = i.id "
        "WHERE a.outcome IS NULL AND i.status = 'PAID'"
    )
    assert open_attempts == [], open_attempts


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_idle_serve_stops_with_one_line(cli: Cli, sig: int) -> None:
    cli.env["ANTAEUS_API_TOKEN"] = "ant_graceful_stop_test_token_0123456789abc"
    with serving(cli) as server:
        lines = _signal_and_wait(server.process, server.stderr_path, sig)
    assert server.process.returncode == 0, server.stderr()
    line = _assert_one_stop_line(lines)
    assert "handed back nothing" in line, line
    assert "0 answers recorded" in line, line


def test_a_busy_serve_finishes_what_is_in_flight_and_hands_back_the_rest(cli: Cli) -> None:
    _slow_provider(cli)
    cli.env["ANTAEUS_API_TOKEN"] = "ant_graceful_stop_test_token_0123456789abc"
    cli.ok("seed", "--seed", "11", "--customers", "200", "--invoices-per-customer", "1")
    with serving(cli, "--workers", "1") as server:  # its scheduler opens a run of 200
        _wait_for_paid(cli, 5)
        lines = _signal_and_wait(server.process, server.stderr_path, signal.SIGINT)
    assert server.process.returncode == 0, server.stderr()
    line = _assert_one_stop_line(lines)
    assert "every call in flight finished" in line, line
    _assert_handed_back_at_most(line, 10)  # claimed ahead: at most one round of calls
    [(paid,)] = cli.query("SELECT count(*) FROM invoices WHERE status = 'PAID'")
    assert f"{paid:,} answers recorded since start ({paid:,} paid)" in line, line
    assert 5 <= paid < 200
    _assert_nothing_held(cli)


def test_a_busy_worker_stops_with_one_line(cli: Cli) -> None:
    _slow_provider(cli)
    cli.ok("seed", "--seed", "12", "--customers", "200", "--invoices-per-customer", "1")
    with serving(cli, "--no-worker") as server:  # the scheduler opens the run
        with started(cli, "worker", "--processes", "1", name="worker") as (process, stderr):
            _wait_for_paid(cli, 5)
            lines = _signal_and_wait(process, stderr, signal.SIGINT)
        assert process.returncode == 0, stderr.read_text()
        line = _assert_one_stop_line(lines)
        _assert_handed_back_at_most(line, 10)
        _assert_nothing_held(cli)
        after_api = _signal_and_wait(server.process, server.stderr_path, signal.SIGTERM)
    assert _assert_one_stop_line(after_api) == "stopped: this process does not charge (--no-worker)"


def test_bill_interrupted_leaves_the_run_open_with_one_line(cli: Cli) -> None:
    _slow_provider(cli)
    cli.ok("seed", "--seed", "13", "--customers", "200", "--invoices-per-customer", "1")
    with started(cli, "bill", "--processes", "1", name="bill") as (process, stderr):
        _wait_for_paid(cli, 5)
        time.sleep(0.3)  # the progress bar has drawn
        lines = _signal_and_wait(process, stderr, signal.SIGINT)
    assert process.returncode == 128 + signal.SIGINT, stderr.read_text()
    # the progress bar may redraw once before the line
    line = _assert_one_stop_line([x for x in lines if not x.startswith("run ")])
    assert "stays open" in line, line
    assert "`antaeus worker` or `antaeus serve` finishes it" in line, line
    assert (cli.cwd / "bill.stdout").read_text() == ""  # no summary table for a run cut short
    [(status,)] = cli.query("SELECT status FROM billing_runs")
    assert status == "running"
    _assert_nothing_held(cli)


def test_bill_after_ctrl_c_resumes_the_open_run_and_charges_each_invoice_once(cli: Cli) -> None:
    """Issue 20, item 14: `bill` after a Ctrl-C printed a new run "completed, due 0" while
    the interrupted run stayed `running`. It resumes the open run first (saying so, with
    its id and what is left), then opens a new one."""
    _slow_provider(cli)
    cli.ok("seed", "--seed", "14", "--customers", "200", "--invoices-per-customer", "1")
    with started(cli, "bill", "--processes", "1", name="bill") as (process, stderr):
        _wait_for_paid(cli, 5)
        lines = _signal_and_wait(process, stderr, signal.SIGINT)
    assert process.returncode == 128 + signal.SIGINT, stderr.read_text()
    assert "`antaeus bill` resumes it" in "".join(lines)
    [(run_id, status)] = cli.query("SELECT id, status FROM billing_runs")
    assert status == "running"
    [(left,)] = cli.query(
        f"SELECT count(*) FROM run_invoices WHERE run_id = {run_id} AND outcome IS NULL"
    )
    assert 0 < left < 200

    cli.env["ANTAEUS_SIMULATED_LATENCY_MS"] = "50"
    again = cli.ok("bill", "--processes", "1")
    assert f"resuming run {run_id}: {left:,} of 200 invoices left" in again.stderr, again.stderr
    assert f"billing run {run_id} (completed)" in again.stdout, again.stdout
    runs = cli.query("SELECT id, status FROM billing_runs ORDER BY id")
    assert [s for _, s in runs] == ["completed", "completed"], runs
    assert f"run {runs[-1][0]} completed" in again.stdout
    # every invoice of the interrupted run paid, each charged exactly once at the provider
    members = {
        i for (i,) in cli.query(f"SELECT invoice_id FROM run_invoices WHERE run_id = {run_id}")
    }
    assert len(members) == 200
    paid = {i for (i,) in cli.query("SELECT id FROM invoices WHERE status = 'PAID'")}
    assert members <= paid
    charges = json.loads(cli.ok("provider", "ledger").stdout)["charges"]
    per_invoice = Counter(c["invoiceId"] for c in charges)
    assert {i: n for i, n in per_invoice.items() if n != 1} == {}
    assert members <= set(per_invoice)
    _assert_nothing_held(cli)


@contextmanager
def _port_taken() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_serve_on_a_busy_port_fails_first_with_one_line(tmp_path: Path) -> None:
    database = tmp_path / "antaeus.db"
    cli = Cli(tmp_path, _clean_env(ANTAEUS_DATABASE_URL=f"sqlite:///{database}"), "")
    with _port_taken() as port:
        done = cli.run("serve", "--port", str(port), timeout=60)
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"error: cannot listen on 127.0.0.1:{port}: the port is in use; "
        "choose another with --port or ANTAEUS_PORT"
    ], done.stderr
    assert done.stdout == ""  # no token was created
    assert not database.exists()  # nothing was migrated, no worker or scheduler started


def test_a_busy_metrics_port_fails_with_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'antaeus.db'}"
    cli = Cli(tmp_path, _clean_env(ANTAEUS_DATABASE_URL=url), url)
    with _port_taken() as port:
        done = cli.run("worker", "--metrics-port", str(port), timeout=60)
        served = cli.run("serve", "--port", str(_free_port()), "--metrics-port", str(port))
    for result in (done, served):
        assert result.returncode == 1, result
        assert result.stderr.strip().splitlines() == [
            f"error: cannot listen on 127.0.0.1:{port}: the port is in use; "
            "choose another with --metrics-port"
        ], result.stderr


def test_the_stop_line_says_what_was_finished_and_handed_back() -> None:
    stats = WorkerStats(recorded=12, handed_back=3, by_outcome={"charged": 9, "unknown_outcome": 3})
    assert stopped_line(stats) == (
        "stopped: every call in flight finished; 12 answers recorded since start "
        "(9 paid, 3 unknown outcome); handed back 3 claimed invoices unsent"
    )
    one = WorkerStats(recorded=1, handed_back=1, unrecordable=1, by_outcome={"charged": 1})
    assert stopped_line(one, " (run 4 stays open)") == (
        "stopped (run 4 stays open): every call in flight finished; 1 answer recorded since "
        "start (1 paid); handed back 1 claimed invoice unsent; 1 answer could not be "
        "recorded (charged again with the same key)"
    )
    assert stopped_line(None) == "stopped: this process does not charge (--no-worker)"
