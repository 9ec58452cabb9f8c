"""Crash-point tests: a real `antaeus worker` process is SIGKILLed at each step of the
charge flow; a fresh worker recovers; the simulator's ledger and the database agree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from antaeus.billing.service import open_run
from antaeus.clock import SystemClock
from antaeus.domain.policy import PolicySettings
from antaeus.simulators.simulated import SimulatorStore
from antaeus.storage.database import Database
from antaeus.storage.repositories.billing import BillingRepository
from antaeus.storage.tables import charge_attempts, invoices
from tests.billing.helpers import make_invoices

pytestmark = pytest.mark.slow

N = 40


def start_worker(
    url: str, state: Path, failpoint: str | None, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ANTAEUS_DATABASE_URL": url,
        "ANTAEUS_SIMULATED_STATE": str(state),
        "ANTAEUS_SIMULATED_FAILURE_RATE": "0",
        "ANTAEUS_SIMULATED_LATENCY_MS": "20",
        "ANTAEUS_LEASE_SECONDS": "5",
        "ANTAEUS_LOG_LEVEL": "warning",
    }
    env.pop("ANTAEUS_FAILPOINT", None)
    if failpoint:
        env["ANTAEUS_FAILPOINT"] = failpoint
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "antaeus", "worker", "--processes", "1", "--concurrency", "10"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )


async def wait_run_completed(db: Database, run_id: int, seconds: float) -> bool:
    import asyncio

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        async with db.read() as conn:
            run = await BillingRepository(conn).get_run(run_id)
        if run is not None and run.status == "completed":
            return True
        await asyncio.sleep(0.2)
    return False


@pytest.mark.parametrize("failpoint", ["after_claim", "before_record", "before_commit"])
async def test_killed_worker_is_recovered_without_double_charge(
    database: Database, database_url: str, tmp_path: Path, failpoint: str
) -> None:
    clock = SystemClock()
    ids = await make_invoices(database, N, datetime.now(UTC) - timedelta(minutes=1))
    run_id = await open_run(database, clock, PolicySettings(), "api")
    state = tmp_path / "simulator.db"

    log = tmp_path / "workers.log"
    doomed = start_worker(database_url, state, failpoint, log)
    assert doomed.wait(timeout=60) == -signal.SIGKILL, log.read_text()

    async with database.read() as conn:
        stuck = (
            await conn.execute(select(invoices.c.id).where(invoices.c.status == "PROCESSING"))
        ).all()
    assert stuck, "the killed worker held claimed invoices"

    rescuer = start_worker(database_url, state, None, log)
    try:
        assert await wait_run_completed(database, run_id, 60), "the run did not complete"
    finally:
        rescuer.send_signal(signal.SIGTERM)
        rescuer.wait(timeout=30)
    assert rescuer.returncode == 0, log.read_text()

    store = SimulatorStore(str(state))
    ledger = store.ledger()
    stats = store.stats()
    store.close()
    charged = [entry.invoice_id for entry in ledger]
    assert sorted(charged) == sorted(ids), "each invoice charged exactly once"
    async with database.read() as conn:
        rows = (
            await conn.execute(
                select(invoices.c.id, invoices.c.status, invoices.c.amount_minor).where(
                    invoices.c.id.in_(ids)
                )
            )
        ).all()
        attempts = (
            await conn.execute(select(charge_attempts).where(charge_attempts.c.invoice_id.in_(ids)))
        ).all()
    assert {r.status for r in rows} == {"PAID"}
    by_invoice = {e.invoice_id: e for e in ledger}
    for r in rows:
        assert by_invoice[r.id].amount.minor == r.amount_minor
    # one attempt each: the rescuer repeated the open attempt's key, never a new one
    assert sorted(a.invoice_id for a in attempts) == sorted(ids)
    assert {a.charge_id for a in attempts} == {e.charge_id for e in ledger}
    if failpoint != "after_claim":
        # the provider had answered before the kill: the repeat was a replay
        assert stats.get("replays", 0) > 0
