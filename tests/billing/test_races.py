"""Races: concurrent workers, schedulers and triggers never charge an invoice twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from antaeus.billing.runs import Scheduler
from antaeus.billing.service import open_run
from antaeus.billing.worker import Worker, WorkerSettings
from antaeus.clock import ManualClock, SystemClock
from antaeus.domain.policy import PolicySettings
from antaeus.simulators.simulated import SimulatedPaymentProvider, SimulatorStore
from antaeus.storage.database import Database
from antaeus.storage.repositories.billing import BillingRepository
from antaeus.storage.tables import invoices, run_invoices
from tests.billing.helpers import make_invoices

POLICY = PolicySettings()


async def assert_each_paid_exactly_once(db: Database, state: Path, ids: list[int]) -> None:
    store = SimulatorStore(str(state))
    try:
        charged = sorted(e.invoice_id for e in store.ledger())
    finally:
        store.close()
    assert charged == sorted(ids)
    async with db.read() as conn:
        statuses = (
            await conn.execute(select(invoices.c.status).where(invoices.c.id.in_(ids)))
        ).scalars()
        assert set(statuses) == {"PAID"}


async def test_two_workers_and_two_schedulers_race_on_postgres(
    postgres_url: str, database: Database, tmp_path: Path
) -> None:
    if not database.url.startswith("postgresql"):
        pytest.skip("this race is PostgreSQL's (SKIP LOCKED); SQLite runs the process race")
    clock = SystemClock()
    ids = await make_invoices(database, 300, datetime.now(UTC) - timedelta(seconds=1))
    state = tmp_path / "sim.db"
    engines = [Database(postgres_url) for _ in range(4)]
    providers = [
        SimulatedPaymentProvider(str(state), latency_ms=2, jitter_ms=2, seed=i) for i in range(2)
    ]
    try:
        schedulers = [Scheduler(engines[i], clock, POLICY, "automatic") for i in (0, 1)]
        runs = await asyncio.gather(*(s.tick() for s in schedulers))
        assert sorted(r is None for r in runs) == [False, True]  # one run, not two
        workers = [
            Worker(
                engines[2 + i],
                providers[i],
                clock,
                POLICY,
                WorkerSettings(batch_size=20, concurrency=20),
            )
            for i in (0, 1)
        ]
        await asyncio.gather(*(w.run_until_idle() for w in workers))
        assert all(w.stats.recorded > 0 for w in workers), "both workers took part"
        await assert_each_paid_exactly_once(database, state, ids)
    finally:
        for p in providers:
            await p.aclose()
        for e in engines:
            await e.dispose()


async def test_twenty_concurrent_triggers_never_share_an_invoice(
    database: Database, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    # due by the app's clock (the real date may be anywhere relative to it)
    ids = await make_invoices(database, 200, clock.now() - timedelta(seconds=1))
    responses = await asyncio.gather(*(client.post("/rest/v1/billing") for _ in range(20)))
    assert {r.status_code for r in responses} == {202}
    assert sum(r.json()["counts"]["due"] for r in responses) == len(ids)
    async with database.read() as conn:
        per_invoice = (
            await conn.execute(
                select(run_invoices.c.invoice_id, func.count()).group_by(run_invoices.c.invoice_id)
            )
        ).all()
    assert sorted(i for i, _ in per_invoice) == sorted(ids)
    assert {n for _, n in per_invoice} == {1}


def _worker_process(url: str, state: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ANTAEUS_DATABASE_URL": url,
        "ANTAEUS_SIMULATED_STATE": str(state),
        "ANTAEUS_SIMULATED_FAILURE_RATE": "0",
        "ANTAEUS_SIMULATED_LATENCY_MS": "5",
        "ANTAEUS_BATCH_SIZE": "25",
        "ANTAEUS_LOG_LEVEL": "info",  # `worker_started` says its stop handlers are in place
    }
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "antaeus", "worker", "--processes", "1", "--concurrency", "25"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )


async def test_two_worker_processes_share_one_sqlite_file(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    if not database.is_sqlite:
        pytest.skip("the SQLite variant of the race (PostgreSQL has its own above)")
    ids = await make_invoices(database, 400, datetime.now(UTC) - timedelta(seconds=1))
    run_id = await open_run(database, SystemClock(), POLICY, "api")
    state = tmp_path / "sim.db"
    log = tmp_path / "workers.log"
    procs = [_worker_process(database_url, state, log) for _ in range(2)]
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            async with database.read() as conn:
                run = await BillingRepository(conn).get_run(run_id)
            if run is not None and run.status == "completed":
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail(f"run did not complete: {log.read_text()}")
        # One worker may finish the run before the other is up: stop both only once
        # each has started (before that, SIGTERM ends a process still importing).
        while log.read_text().count("worker_started") < 2:
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.1)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=30)
    assert [p.returncode for p in procs] == [0, 0], log.read_text()
    await assert_each_paid_exactly_once(database, state, ids)
