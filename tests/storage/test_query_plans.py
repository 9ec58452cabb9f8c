"""Every statement of a hot or periodic path reaches the big tables through an index.

The statements are not written out here: they are captured (SQLAlchemy's
`before_cursor_execute`) while the real code runs: a worker charging a run, the
scheduler's ticks in both modes (with the Idempotency-Key sweep), the invoice
actions (void, retry, resolve), `POST /rest/v1/billing/retry` and
`GET /rest/v1/status`. Each captured statement is then explained with the
parameters it was sent with (`EXPLAIN` on PostgreSQL, `EXPLAIN QUERY PLAN` on
SQLite), so a query changed later is checked as it is then.

The database is fresh and never analyzed, with a few thousand rows: an index
that exists only helps if the planner can see it is usable, not because
statistics happen to favour it. On PostgreSQL the plans are taken with
`enable_seqscan = off`: on a small table a sequential scan is often the cheapest
plan even when a good index exists, so the planner is told to avoid one when it
can; a sequential scan that remains means that no index can serve the query
(the standard way to ask "is there an index for this?"). With sequential scans
off, PostgreSQL also falls back to reading a whole index in place of the table,
so a full scan of an index that is not partial fails as well.

What fails, on `invoices`, `charge_attempts` and `run_invoices` (tables that
grow with the history):

- a sequential scan (SQLite: a `SCAN` line without an index);
- a full scan of an index that is not partial (a partial index holds only rows
  of work in progress, not history);
- a search of `ix_invoices_status_id` by status alone for any status but
  `PROCESSING` (every PENDING or PAID invoice is a scan that grows with the
  table; PROCESSING ones are bounded by the leases in flight). For the worker's
  claim, checked on SQLite only (it walks ix_invoices_in_run there): unanalyzed,
  PostgreSQL serves it from ix_invoices_status_id and sorts; the first two rules
  hold for it on both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, insert
from sqlalchemy.engine import Connection

from antaeus.billing.runs import Scheduler
from antaeus.billing.worker import Worker, WorkerSettings
from antaeus.clock import ManualClock
from antaeus.domain.invoice import InvoiceStatus
from antaeus.domain.policy import PolicySettings
from antaeus.payments.provider import Declined, OutcomeUnknownError
from antaeus.storage.database import Database
from antaeus.storage.repositories.billing import BillingRepository
from antaeus.storage.tables import (
    billing_runs,
    charge_attempts,
    customers,
    idempotency_keys,
    invoices,
    metadata,
    run_invoices,
)
from tests.billing.fakes import ScriptedProvider

POLICY = PolicySettings()
BIG = frozenset({"invoices", "charge_attempts", "run_invoices", "idempotency_keys"})
STATUSES = frozenset(s.value for s in InvoiceStatus)
PARTIAL = frozenset(
    ix.name
    for table in metadata.tables.values()
    for ix in table.indexes
    if ix.name and ix.dialect_options["sqlite"].get("where") is not None
)
INDEX_TABLE = {
    ix.name: table.name for table in metadata.tables.values() for ix in table.indexes if ix.name
}
ROWS = 3_000  # invoices; enough for plans to mean something, few enough to be quick


# -- a realistic database: mostly history, some work in progress --------------------------


async def seed(db: Database, now: datetime) -> dict[str, list[int]]:
    """ROWS invoices: most PAID (with attempts and run history), the rest in every other state."""
    cut = now - (POLICY.key_retention - POLICY.retention_margin)
    past, future = now - timedelta(days=3), now + timedelta(days=20)
    kinds: dict[str, list[int]] = {}
    inv: list[dict[str, Any]] = []
    att: list[dict[str, Any]] = []
    ri: list[dict[str, Any]] = []

    def add(kind: str, status: str, **values: Any) -> int:
        invoice_id = len(inv) + 1
        row: dict[str, Any] = {
            "id": invoice_id,
            "customer_id": invoice_id % 50 + 1,
            "currency": "EUR",
            "amount_minor": 1000 + invoice_id,
            "status": status,
            "due_at": past,
            "eligible_at": past,
            "attempt_count": 0,
            "last_failure": None,
            "next_attempt_at": None,
            "run_id": None,
            "lease_owner": None,
            "lease_expires_at": None,
            "attempt_open_since": None,
            "created_at": past,
            "updated_at": past,
        }
        row.update(values)
        inv.append(row)
        kinds.setdefault(kind, []).append(invoice_id)
        return invoice_id

    def attempt(invoice_id: int, outcome: str | None, run_id: int) -> None:
        att.append(
            {
                "invoice_id": invoice_id,
                "number": 1,
                "idempotency_key": f"test:{invoice_id}:1",
                "run_id": run_id,
                "started_at": past,
                "finished_at": past if outcome else None,
                "outcome": outcome,
                "charge_id": f"ch_{invoice_id}" if outcome == "charged" else None,
            }
        )

    def member(invoice_id: int, run_id: int, outcome: str | None) -> None:
        ri.append(
            {
                "run_id": run_id,
                "invoice_id": invoice_id,
                "currency": "EUR",
                "amount_minor": 1000 + invoice_id,
                "outcome": outcome,
                "finished_at": past if outcome else None,
            }
        )

    for i in range(ROWS):
        slot = i % 100
        if slot < 70:  # history
            n = add("paid", "PAID", attempt_count=1)
            attempt(n, "charged", 1)
            member(n, 1, "paid")
        elif slot < 78:  # due, waiting for a run
            add("due", "PENDING")
        elif slot < 86:  # next month's
            add("future", "PENDING", due_at=future, eligible_at=future)
        elif slot < 90:  # in the open run, not claimed yet
            n = add("in_run", "PENDING", run_id=2)
            member(n, 2, None)
        elif slot < 92:  # claimed by a worker that crashed: lease expired
            n = add(
                "processing",
                "PROCESSING",
                run_id=2,
                attempt_count=1,
                attempt_open_since=now - timedelta(minutes=5),
                lease_owner="gone",
                lease_expires_at=now - timedelta(seconds=1),
            )
            attempt(n, None, 2)
            member(n, 2, None)
        elif slot < 94:  # unknown outcome, waiting for its repeat
            repeat = now + timedelta(minutes=5) if slot == 92 else now - timedelta(seconds=1)
            n = add(
                "unknown",
                "PENDING",
                attempt_count=1,
                last_failure="unknown_outcome",
                next_attempt_at=repeat,
                eligible_at=repeat,
                attempt_open_since=now - timedelta(hours=1),
            )
            attempt(n, "unknown", 1)
            member(n, 1, "rescheduled")
        elif slot == 94:  # unknown for too long: past the key's retention margin
            n = add(
                "stale_unknown",
                "PENDING",
                attempt_count=1,
                last_failure="unknown_outcome",
                attempt_open_since=cut - timedelta(minutes=1),
            )
            attempt(n, "unknown", 1)
            member(n, 1, "rescheduled")
        elif slot < 97:
            n = add("failed", "FAILED", attempt_count=1, last_failure="customer_not_found")
            attempt(n, "customer_not_found", 1)
            member(n, 1, "failed")
        elif slot < 98:
            n = add("review", "REVIEW", attempt_count=1, last_failure="unknown_outcome")
            attempt(n, "unknown", 1)
            member(n, 1, "review")
        else:
            n = add("dunning", "PENDING", attempt_count=1, last_failure="insufficient_funds")
            attempt(n, "insufficient_funds", 1)
            member(n, 1, "rescheduled")

    async with db.write() as conn:
        await conn.execute(
            insert(customers),
            [
                {"id": c, "currency": "EUR", "timezone": "UTC", "created_at": past}
                for c in range(1, 51)
            ],
        )
        await conn.execute(
            insert(billing_runs),
            [
                {"id": 1, "trigger": "schedule", "status": "completed", "started_at": past},
                {"id": 2, "trigger": "schedule", "status": "running", "started_at": past},
            ],
        )
        await conn.execute(insert(invoices), inv)
        await conn.execute(insert(charge_attempts), att)
        await conn.execute(insert(run_invoices), ri)
        await conn.execute(
            insert(idempotency_keys),
            [
                {
                    "scope": "test",
                    "key": f"k{i}",
                    "request_hash": "0" * 64,
                    "status_code": 202,
                    "response_body": "{}",
                    "created_at": now - timedelta(days=i % 20),
                }
                for i in range(500)
            ],
        )
        if db.dialect == "postgresql":  # explicit ids above: move the sequences on
            for table in ("customers", "billing_runs", "invoices", "idempotency_keys"):
                await conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
    return kinds


# -- capturing the statements ---------------------------------------------------------------


class Captured:
    def __init__(self) -> None:
        self.statements: dict[str, tuple[Any, str]] = {}  # sql -> (parameters, where from)
        self.phase: str | None = None  # None: not capturing

    def __call__(
        self,
        _conn: Connection,
        _cursor: Any,
        statement: str,
        parameters: Any,
        _context: Any,
        executemany: bool,
    ) -> None:
        if self.phase is None:
            return
        if executemany:
            parameters = parameters[0] if parameters else ()
        self.statements.setdefault(statement, (parameters, self.phase))


@pytest.fixture
def captured(database: Database) -> Iterator[Captured]:
    capture = Captured()
    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield capture
    finally:
        event.remove(engine, "before_cursor_execute", capture)


# -- reading the plans ---------------------------------------------------------------------

SQLITE_SCAN = re.compile(r"^SCAN (\w+)(?: USING (?:COVERING )?INDEX (\w+))?")
SQLITE_STATUS_ONLY = re.compile(r"USING (?:COVERING )?INDEX ix_invoices_status_id \(status=\?\)$")


def is_claim(sql: str) -> bool:
    return sql.startswith("UPDATE invoices") and "ORDER BY invoices.eligible_at" in sql


def _where_statuses(sql: str, parameters: Any) -> set[str]:
    """The statuses bound in the WHERE clause of a positional statement (not in its SET)."""
    values = list(parameters.values() if isinstance(parameters, dict) else parameters)
    head = re.split(r"\sWHERE\s", sql, maxsplit=1)[0]
    return {v for v in values[head.count("?") :] if isinstance(v, str) and v in STATUSES}


def sqlite_problems(sql: str, plan: list[str], parameters: Any, strict: bool) -> list[str]:
    problems = []
    for line in plan:
        scan = SQLITE_SCAN.match(line)
        full_scan = bool(scan and scan.group(1) in BIG and scan.group(2) not in PARTIAL)
        by_status = bool(SQLITE_STATUS_ONLY.search(line)) and _where_statuses(sql, parameters) != {
            "PROCESSING"
        }
        if full_scan or (strict and by_status):
            problems.append(line)
    return problems


def _pg_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _pg_nodes(child)


def pg_problems(plan: dict[str, Any], strict: bool) -> list[str]:
    problems = []
    for node in _pg_nodes(plan):
        kind = node["Node Type"]
        index = node.get("Index Name")
        table = node.get("Relation Name") or INDEX_TABLE.get(index or "")
        if table not in BIG:
            continue
        cond = node.get("Index Cond")
        described = f"{kind} on {table}" + (f" using {index} ({cond})" if index else "")
        full_scan = kind == "Seq Scan" or bool(index and cond is None and index not in PARTIAL)
        by_status = (
            index == "ix_invoices_status_id"
            and cond is not None
            and "id" not in re.sub(r"\bstatus\b", "", cond)
            and "'PROCESSING'" not in cond
        )
        if full_scan or (strict and by_status):
            problems.append(described)
    return problems


async def explain_all(db: Database, capture: Captured) -> dict[str, tuple[str, list[str], str]]:
    """Explains each captured statement that touches a big table: sql -> (phase, problems, plan)."""
    capture.phase = None
    found = {}
    touching = re.compile(r"\b(" + "|".join(BIG) + r")\b")
    async with db.read() as conn:
        if db.dialect == "postgresql":
            await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        for sql, (parameters, phase) in capture.statements.items():
            head = sql.lstrip().split(None, 1)[0].upper()
            if head not in ("SELECT", "UPDATE", "DELETE", "INSERT", "WITH") or not touching.search(
                sql
            ):
                continue
            if head == "INSERT" and " SELECT " not in sql.upper():
                continue  # a plain INSERT ... VALUES reads nothing
            strict = db.dialect == "sqlite" or not is_claim(sql)
            if db.dialect == "postgresql":
                rows = await conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + sql, parameters)
                raw = rows.scalar_one()
                plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
                problems = pg_problems(plan, strict)
                text = json.dumps(plan, indent=1)
            else:
                rows = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameters)
                lines = [r[3] for r in rows]
                problems = sqlite_problems(sql, lines, parameters, strict)
                text = "\n".join(lines)
            found[sql] = (phase, problems, text)
    return found


# -- the paths -----------------------------------------------------------------------------


async def test_hot_and_periodic_statements_use_indexes(
    database: Database,
    clock: ManualClock,
    client: httpx.AsyncClient,
    captured: Captured,
) -> None:
    now = clock.now()
    kinds = await seed(database, now)

    captured.phase = "scheduler (external)"
    await Scheduler(database, clock, POLICY, "external").tick()

    captured.phase = "api"
    assert (await client.get("/rest/v1/status")).status_code == 200
    for invoice_id in (kinds["in_run"][-1], kinds["future"][0], kinds["failed"][0]):
        response = await client.post(f"/rest/v1/invoices/{invoice_id}/void")
        assert response.status_code == 200, response.text
    response = await client.post(f"/rest/v1/invoices/{kinds['failed'][1]}/retry")
    assert response.status_code == 200, response.text
    review = kinds["review"]
    response = await client.post(
        f"/rest/v1/invoices/{review[0]}/resolve", json={"charged": True, "chargeId": "ch_x"}
    )
    assert response.status_code == 200, response.text
    response = await client.post(f"/rest/v1/invoices/{review[1]}/resolve", json={"charged": False})
    assert response.status_code == 200, response.text

    captured.phase = "scheduler (automatic)"
    await Scheduler(database, clock, POLICY, "automatic").tick()

    captured.phase = "worker"
    provider = ScriptedProvider(
        scripts={
            kinds["in_run"][0]: [Declined("insufficient_funds")],
            kinds["in_run"][1]: [OutcomeUnknownError("timeout")] * 20,
        }
    )
    settings = WorkerSettings(batch_size=50, concurrency=20)
    worker = Worker(database, provider, clock, POLICY, settings)
    claimed = await worker.claim(5)
    await worker.renew_leases()
    async with database.write() as conn:
        repo = BillingRepository(conn)
        await repo.still_owned(worker.id, [c.invoice_id for c in claimed])
        await repo.release(worker.id, [(c.invoice_id, c.attempt) for c in claimed], now, now)
    await worker.run_until_idle()

    captured.phase = "api (after the run)"
    assert (await client.post("/rest/v1/billing/retry")).status_code == 202
    assert (await client.get("/rest/v1/status")).status_code == 200

    plans = await explain_all(database, captured)
    for sql, (phase, problems, text) in plans.items():
        print(f"--- {phase}\n{sql}\n{text}\n{problems}\n")
    bad = {sql: v for sql, v in plans.items() if v[1]}
    assert not bad, "\n\n".join(
        f"[{phase}] {sql}\n  -> {'; '.join(problems)}" for sql, (phase, problems, _) in bad.items()
    )
