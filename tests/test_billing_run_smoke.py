"""`benchmarks/billing_run.py` in its default mode still runs, end to end.

Tiny N so the script cannot rot; the numbers it prints mean nothing here. It times
`antaeus bill` as a whole process and the reference floor (`floor.py`) beside it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BILLING_RUN = ROOT / "benchmarks" / "billing_run.py"


def _run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BILLING_RUN), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_billing_run_times_antaeus_bill_beside_the_floor_on_sqlite() -> None:
    out = _run("--invoices", "400", "--runs", "2", "--latency-ms", "20")
    # every run: the rate, the CPU per invoice, the peak RSS, and the floor of that run
    runs = re.findall(
        r"run (\d), latency 0 ms: .* = ([0-9,]+)/s; CPU ([0-9,]+) µs/invoice; "
        r"peak RSS (\d+) MB; floor ([0-9,]+)/s, ratio ([0-9.]+)",
        out,
    )
    assert [r[0] for r in runs] == ["1", "2"], out
    for _, rate, cpu, rss, floor, ratio in runs:
        assert int(rate.replace(",", "")) > 0
        assert int(cpu.replace(",", "")) > 0
        assert 20 < int(rss) < 2000  # MB: a whole process, not kB or bytes
        assert int(floor.replace(",", "")) > int(rate.replace(",", ""))
        assert 0 <= float(ratio) < 1  # (printed to 3 places: tiny N rounds to 0.000)
    assert len(re.findall(r"run \d, latency 20 ms: ", out)) == 2, out
    assert "floor (sqlite-batch): " in out
    assert "(median of 2;" in out
    assert re.search(r"at 20 ms: [0-9,]+/s against min\(C/L = [0-9,]+, zero-latency", out), out


def test_billing_run_with_processes_on_postgres() -> None:
    url = os.environ.get("ANTAEUS_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("ANTAEUS_TEST_POSTGRES_URL is not set: PostgreSQL tests skipped")
    bench_url = url.rpartition("/")[0] + f"/bench_smoke_{os.getpid()}"
    out = _run("--invoices", "300", "--database-url", bench_url, "--processes", "2")
    assert "antaeus bill --processes 2" in out
    assert re.search(r"floor \(pg-batch\): [0-9,]+ invoices/s; antaeus bill / floor: 0\.", out), out


def test_profile_bill_sums_the_samples_by_part() -> None:
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        pytest.skip("py-spy is not installed (pip install -e '.[bench]'): profile test skipped")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "profile_bill.py"), "--invoices", "1000"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    if done.returncode != 0 and "Permission denied" in done.stderr + done.stdout:
        pytest.skip("py-spy may not trace processes here (ptrace refused)")
    assert done.returncode == 0, done.stdout + done.stderr
    shares = re.findall(r"^(\S.*?)\s+([0-9.]+)%\s+[0-9,.]+$", done.stdout, re.MULTILINE)
    assert any(name.startswith("claim") for name, _ in shares), done.stdout
    assert 99.0 <= sum(float(s) for _, s in shares) <= 101.0, done.stdout


def test_sql_ceiling_replays_the_engines_own_sql_to_the_same_end() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sql_ceiling.py"), "--invoices", "600"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    # (the script itself fails unless both replays leave every invoice PAID)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"replayed with bare sqlite3: [0-9,]+ invoices/s", done.stdout), done.stdout
    assert "UPDATE invoices" in done.stdout
    assert re.search(r"the replay is [0-9.]+x the floor", done.stdout), done.stdout
