"""Every outcome that needs a person logs one `invoice_needs_person` warning and counts
once in `antaeus_invoices_need_person_total{reason}`: FAILED and REVIEW from the
worker, and REVIEW from the scheduler's key-retention sweep; only after commit."""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from antaeus.billing.runs import Scheduler
from antaeus.billing.service import open_run
from antaeus.billing.worker import Worker, WorkerSettings
from antaeus.clock import ManualClock
from antaeus.domain.policy import PolicySettings
from antaeus.payments.provider import (
    Charged,
    CustomerNotFoundError,
    Declined,
    KeyReusedError,
    OutcomeUnknownError,
    ProviderError,
)
from antaeus.storage.database import Database
from antaeus.storage.repositories.installation import InstallationRepository
from tests.billing.fakes import ScriptedProvider
from tests.billing.helpers import attempts_of, invoice_row, make_invoices

POLICY = PolicySettings()
CUT = POLICY.key_retention - POLICY.retention_margin
EVENT = "invoice_needs_person"
ENTRY_KEYS = {
    "event",
    "log_level",
    "invoice_id",
    "attempt",
    "idempotency_key",
    "status",
    "reason",
    "action",
}


def need_person(reason: str) -> float:
    value = REGISTRY.get_sample_value("antaeus_invoices_need_person_total", {"reason": reason})
    return value or 0.0


def to_review() -> float:
    return REGISTRY.get_sample_value("antaeus_invoices_review_total") or 0.0


def worker(db: Database, provider: ScriptedProvider, clock: ManualClock, **kw: Any) -> Worker:
    return Worker(
        db,
        provider,
        clock,
        POLICY,
        WorkerSettings(batch_size=50, concurrency=20, retry_after_max=1.0),
        **kw,
    )


async def installation(db: Database) -> str:
    async with db.read() as conn:
        return await InstallationRepository(conn).installation_id()


def events(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == EVENT]


async def charge_all(
    db: Database, provider: ScriptedProvider, clock: ManualClock, n: int = 1
) -> tuple[list[int], Worker, list[MutableMapping[str, Any]]]:
    ids = await make_invoices(db, n, clock.now() - timedelta(minutes=1))
    await open_run(db, clock, POLICY, "api")
    w = worker(db, provider, clock)
    with capture_logs() as logs:
        await w.run_until_idle()
    return ids, w, logs


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        (CustomerNotFoundError(), "FAILED", "customer_not_found"),
        (KeyReusedError("the provider says so"), "REVIEW", "idempotency_key_reused"),
    ],
)
async def test_a_worker_outcome_that_needs_a_person_logs_and_counts_once(
    database: Database, clock: ManualClock, error: ProviderError, status: str, reason: str
) -> None:
    before = need_person(reason)
    [iid], w, logs = await charge_all(database, ScriptedProvider(default=error), clock)
    assert (await invoice_row(database, iid)).status == status
    [entry] = events(logs)
    assert set(entry) == ENTRY_KEYS | {"worker"}
    assert entry["log_level"] == "warning"
    assert (entry["invoice_id"], entry["attempt"], entry["status"], entry["reason"]) == (
        iid,
        1,
        status,
        reason,
    )
    [attempt] = await attempts_of(database, iid)
    assert entry["idempotency_key"] == attempt.idempotency_key
    assert entry["idempotency_key"] == f"{await installation(database)}:{iid}:1"
    assert entry["worker"] == w.id
    assert str(iid) in entry["action"]
    assert need_person(reason) == before + 1


async def test_paid_and_dunned_outcomes_need_no_person(
    database: Database, clock: ManualClock
) -> None:
    provider = ScriptedProvider(default=Charged("ch_1"))
    ids = await make_invoices(database, 3, clock.now() - timedelta(minutes=1))
    provider.scripts[ids[1]] = [Declined()]
    provider.scripts[ids[2]] = [OutcomeUnknownError()]
    await open_run(database, clock, POLICY, "api")
    with capture_logs() as logs:
        await worker(database, provider, clock).run_until_idle()
    statuses = [(await invoice_row(database, i)).status for i in ids]
    assert statuses[0] == "PAID"
    assert set(statuses[1:]) == {"PENDING"}  # dunned, and repeated: no one needs to act
    assert events(logs) == []


async def test_many_at_once_each_log_once(database: Database, clock: ManualClock) -> None:
    before = need_person("customer_not_found")
    ids, _, logs = await charge_all(
        database, ScriptedProvider(default=CustomerNotFoundError()), clock, n=5
    )
    assert sorted(e["invoice_id"] for e in events(logs)) == sorted(ids)
    assert need_person("customer_not_found") == before + 5


async def test_nothing_is_logged_or_counted_when_the_transaction_does_not_commit(
    database: Database, clock: ManualClock
) -> None:
    before = need_person("customer_not_found")

    def crash(step: str, _items: list[Any]) -> None:
        if step == "before_commit":
            raise RuntimeError("crashed before commit")

    [iid] = await make_invoices(database, 1, clock.now() - timedelta(minutes=1))
    await open_run(database, clock, POLICY, "api")
    w = worker(database, ScriptedProvider(default=CustomerNotFoundError()), clock, crash_hook=crash)
    [claimed] = await w.claim(1)
    answer = await w._call(claimed)
    with capture_logs() as logs, pytest.raises(RuntimeError, match="crashed before commit"):
        await w.record([answer])
    assert events(logs) == []
    assert need_person("customer_not_found") == before
    assert (await invoice_row(database, iid)).status != "FAILED"


async def test_a_retention_review_by_the_scheduler_logs_and_counts_once(
    database: Database, clock: ManualClock
) -> None:
    before, before_review = need_person("unknown_outcome"), to_review()
    started = clock.now()
    [iid], _, logs = await charge_all(
        database, ScriptedProvider(default=OutcomeUnknownError()), clock
    )
    assert (await invoice_row(database, iid)).status == "PENDING"
    assert events(logs) == []  # an unknown outcome is repeated, by no one's hand

    scheduler = Scheduler(database, clock, POLICY, "external")
    clock.set(started + CUT)
    with capture_logs() as logs:
        await scheduler.tick()
        await scheduler.tick()  # nothing more moves: nothing more is said
    assert (await invoice_row(database, iid)).status == "REVIEW"
    [entry] = events(logs)
    assert set(entry) == ENTRY_KEYS
    assert entry["log_level"] == "warning"
    assert (entry["invoice_id"], entry["attempt"], entry["status"], entry["reason"]) == (
        iid,
        1,
        "REVIEW",
        "unknown_outcome",
    )
    [attempt] = await attempts_of(database, iid)
    assert entry["idempotency_key"] == attempt.idempotency_key
    assert need_person("unknown_outcome") == before + 1
    assert to_review() == before_review + 1  # the older, retention-only counter is kept
    assert "invoice_needs_review" not in [e["event"] for e in logs]
