"""Without PostgreSQL, pytest says in one line why tests were skipped, and how many."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_skipped_postgres_tests_are_counted_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ANTAEUS_TEST_POSTGRES_URL"}
    selected = "tests/billing/test_hardening.py::test_a_400_on_a_first_send_fails_the_invoice"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", selected],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if "PostgreSQL test" in line]
    assert lines == [
        "1 PostgreSQL test skipped: ANTAEUS_TEST_POSTGRES_URL is not set "
        "(e.g. ANTAEUS_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test)"
    ]
