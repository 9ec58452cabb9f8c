"""`worker --processes N`, `bill --processes N`: N worker processes under one parent.

Issue 13 ("Every core"): the parent forwards signals, restarts a dead child and
stops them gracefully; on SQLite the children share the file. Real processes,
real signals, on SQLite and PostgreSQL: a SIGKILLed child is restarted and the
run completes with every invoice charged exactly once (the provider's own
ledger says so); SIGTERM to the parent stops every child, with one stop line
and no lease left behind; `--processes 1` runs no child at all.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.cli.test_cli import Cli, serving
from tests.cli.test_graceful_stop import (
    _assert_nothing_held,
    _assert_one_stop_line,
    _signal_and_wait,
    _wait_for_paid,
)
from tests.cli.test_provider_unreachable import started, wait_for_text

INVOICES = 120


def _children(pid: int) -> set[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        if ppid == pid:
            found.add(int(entry.name))
    return found


def _wait_for_children(pid: int, count: int, timeout: float = 60.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while True:
        children = _children(pid)
        if len(children) == count:
            return children
        if time.monotonic() > deadline:
            pytest.fail(f"{len(children)} children of {pid}, not {count}, after {timeout} s")
        time.sleep(0.1)


def _charged_once_each(cli: Cli) -> None:
    """Every invoice PAID, and the provider's ledger holds exactly one charge per invoice."""
    statuses = cli.query("SELECT status, count(*) FROM invoices GROUP BY status")
    assert statuses == [("PAID", INVOICES)], statuses
    with sqlite3.connect(cli.cwd / "antaeus-simulator.db") as ledger:
        rows = ledger.execute("SELECT count(*), count(DISTINCT invoice_id) FROM charges").fetchall()
    assert rows == [(INVOICES, INVOICES)], rows
    unfinished = cli.query("SELECT count(*) FROM charge_attempts WHERE outcome IS NULL")
    assert unfinished == [(0,)], unfinished


def _multi_process(cli: Cli) -> None:
    cli.env.update(
        ANTAEUS_SIMULATED_LATENCY_MS="300",
        ANTAEUS_SIMULATED_FAILURE_RATE="0",
        ANTAEUS_WORKER_CONCURRENCY="10",
        ANTAEUS_BATCH_SIZE="10",
        ANTAEUS_LEASE_SECONDS="5",  # a killed child's claims come back quickly
        ANTAEUS_LOG_LEVEL="warning",  # the supervisor's restart lines
    )


def test_bill_with_two_processes_bills_every_invoice_once(cli: Cli) -> None:
    cli.env.update(ANTAEUS_SIMULATED_FAILURE_RATE="0", ANTAEUS_BATCH_SIZE="10")
    cli.ok("seed", "--seed", "21", "--customers", str(INVOICES), "--invoices-per-customer", "1")
    done = cli.ok("bill", "--processes", "2")
    assert "run 1 completed in" in done.stdout, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    _charged_once_each(cli)
    _assert_nothing_held(cli)
    [(runs,)] = cli.query("SELECT count(*) FROM billing_runs WHERE status = 'completed'")
    assert runs == 1


def test_a_killed_child_is_restarted_and_sigterm_stops_them_all(cli: Cli) -> None:
    _multi_process(cli)
    cli.ok("seed", "--seed", "22", "--customers", str(INVOICES), "--invoices-per-customer", "1")
    with serving(cli, "--no-worker") as server:  # the scheduler opens the run
        with started(cli, "worker", "--processes", "2", name="worker") as (process, stderr):
            first = _wait_for_children(process.pid, 2)
            _wait_for_paid(cli, 5)
            victim = min(first)
            os.kill(victim, signal.SIGKILL)
            wait_for_text(process, stderr, "worker_process_restarted", 30)
            second = _wait_for_children(process.pid, 2)
            assert victim not in second, (first, second)
            assert len(second & first) == 1, (first, second)
            _wait_for_paid(cli, INVOICES, timeout=120)  # the victim's claims: after their lease
            lines = _signal_and_wait(process, stderr, signal.SIGTERM)
            assert process.returncode == 0, stderr.read_text()
            line = _assert_one_stop_line(lines)
            assert "every call in flight finished" in line, line
            for pid in second:  # every child is gone with its parent
                assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid), pid
        output = stderr.read_text()
        assert "worker_process_died" in output, output
        assert "SIGKILL" in output, output
        _charged_once_each(cli)
        _assert_nothing_held(cli)
        _signal_and_wait(server.process, server.stderr_path, signal.SIGTERM)


def test_sigterm_mid_run_stops_every_child_with_one_line(cli: Cli) -> None:
    _multi_process(cli)
    cli.ok("seed", "--seed", "23", "--customers", str(INVOICES), "--invoices-per-customer", "1")
    with started(cli, "bill", "--processes", "2", name="bill") as (process, stderr):
        children = _wait_for_children(process.pid, 2)
        _wait_for_paid(cli, 5)
        lines = _signal_and_wait(process, stderr, signal.SIGTERM)
    assert process.returncode == 128 + signal.SIGTERM, stderr.read_text()
    line = _assert_one_stop_line([x for x in lines if not x.startswith("run ")])
    assert "stays open" in line, line
    [(paid,)] = cli.query("SELECT count(*) FROM invoices WHERE status = 'PAID'")
    # the one line adds up what both children recorded
    assert f"{paid:,} answer{'s' if paid != 1 else ''} recorded since start" in line, line
    assert paid < INVOICES
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid), pid
    _assert_nothing_held(cli)


def test_one_process_runs_no_child(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    cli.env["ANTAEUS_LOG_LEVEL"] = "info"
    with started(cli, "worker", "--processes", "1", name="worker") as (process, stderr):
        wait_for_text(process, stderr, "worker_started", 60)
        assert _children(process.pid) == set()
        lines = _signal_and_wait(process, stderr, signal.SIGTERM)
    assert process.returncode == 0
    assert _assert_one_stop_line(lines).endswith("handed back nothing")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "Z"
