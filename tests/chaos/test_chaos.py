"""The chaos test of the issue, on both databases (see `harness` for what it does)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.harness import PG_ENV, ChaosConfig, run_chaos

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
async def test_no_double_charge_and_no_lost_invoice_while_processes_are_killed(
    database: str, tmp_path: Path
) -> None:
    if database == "postgres" and not os.environ.get(PG_ENV):
        pytest.skip(f"{PG_ENV} is not set: the PostgreSQL chaos test is skipped")
    config = ChaosConfig(database=database, seed=int.from_bytes(os.urandom(2)), workdir=tmp_path)
    report = await run_chaos(config)
    print(report.summary())  # shown with -s, and with the failure
    assert not report.problems, f"seed {config.seed}\n{report.summary()}"
    assert report.kills >= config.min_kills, report.summary()
    if database == "postgres":
        assert report.api_kills == 1, report.summary()
    assert report.seconds < 180, report.summary()
