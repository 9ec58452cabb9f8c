"""Billing runs: opening, completing and reading them, and the outbox events every
statement of the charge flow writes (the base of the billing repositories)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Generic

from sqlalchemy import (
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)

from antaeus.domain.events import RunCompleted, RunOpened, row
from antaeus.domain.invoice import InvoiceStatus
from antaeus.domain.money import Currency, Money
from antaeus.domain.policy import RunOutcome
from antaeus.storage.batch import Batch, execute_arrays
from antaeus.storage.database import Conn, WriteConnection
from antaeus.storage.tables import (
    billing_runs,
    events,
    invoices,
    run_invoices,
)

_CHUNK: Final = 5_000  # ids per IN list (bound parameters stay well within both engines' limits)
#: Serializes run openings on PostgreSQL, so two schedulers never open the same run twice.
RUN_LOCK_ID: Final = 7_000_002
PENDING: Final = InvoiceStatus.PENDING.value
PROCESSING: Final = InvoiceStatus.PROCESSING.value


@dataclass(frozen=True, slots=True)
class RunRow:
    id: int
    trigger: str
    status: str
    started_at: datetime
    completed_at: datetime | None


@dataclass(frozen=True, slots=True)
class RunStats:
    counts: dict[str, int]  # due, paid, failed, review, rescheduled, void
    collected: list[Money]


_INSERT_EVENTS = Batch(
    insert(events).values(
        type=bindparam("b_type"),
        invoice_id=bindparam("b_invoice"),
        run_id=bindparam("b_run"),
        payload=bindparam("b_payload"),
        created_at=bindparam("b_now"),
    )
)

#: `_INSERT_EVENTS` on PostgreSQL: one statement per batch, ids in the batch's order.
_PG_INSERT_EVENTS: Final = """\
INSERT INTO events (type, invoice_id, run_id, payload, created_at) \
SELECT v.type, v.invoice_id, v.run_id, v.payload, $5::timestamptz
FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[])
 WITH ORDINALITY AS v(type, invoice_id, run_id, payload, n)
ORDER BY v.n"""


def _due_not_in_run(now: datetime, cut: datetime, open_attempts_only: bool) -> Any:
    cond = and_(
        invoices.c.status == PENDING,
        invoices.c.run_id.is_(None),
        invoices.c.eligible_at <= now,
        or_(invoices.c.attempt_open_since.is_(None), invoices.c.attempt_open_since > cut),
    )
    if open_attempts_only:
        cond = and_(cond, invoices.c.attempt_open_since.is_not(None))
    return cond


class BillingBase(Generic[Conn]):
    """A connection, and what every billing repository shares."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.is_pg = conn.dialect.name == "postgresql"

    async def add_events(
        self: BillingBase[WriteConnection],
        items: Sequence[tuple[str, int | None, int | None, str]],
        now: datetime,
    ) -> None:
        if not items:
            return
        if self.is_pg:
            types, invoice_ids, run_ids, payloads = zip(*items, strict=True)
            await execute_arrays(
                self.conn,
                _PG_INSERT_EVENTS,
                (list(types), list(invoice_ids), list(run_ids), list(payloads), now),
            )
            return
        await _INSERT_EVENTS.executemany(
            self.conn,
            [{"b_type": t, "b_invoice": i, "b_run": r, "b_payload": p} for t, i, r, p in items],
            {"b_now": now},
        )


#: Opening a run of at least this many invoices refreshes PostgreSQL's statistics.
ANALYZE_RUNS_OF = 10_000


class RunsRepository(BillingBase[Conn]):
    # -- runs ---------------------------------------------------------------

    async def open_run(
        self: RunsRepository[WriteConnection],
        trigger: str,
        now: datetime,
        cut: datetime,
        *,
        open_attempts_only: bool = False,
        skip_if_empty: bool = False,
        only_invoice: int | None = None,
        only_invoices: Sequence[int] | None = None,
    ) -> int | None:
        """Open a run with every due invoice not in an open run; None if skipped (empty).

        `cut`: an open attempt first sent before it is past its key's retention
        margin and never sent again (the scheduler moves it to REVIEW).
        `only_invoice`: a run of that one invoice (a person's retry), if it is due
        and in no open run; `only_invoices`: a run of those (a person's bulk retry,
        one batch of it).
        """
        if self.is_pg:
            await self.conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": RUN_LOCK_ID})
        cond = _due_not_in_run(now, cut, open_attempts_only)
        if only_invoice is not None:
            cond = and_(cond, invoices.c.id == only_invoice)
        if only_invoices is not None:
            cond = and_(cond, invoices.c.id.in_(list(only_invoices)))
        if skip_if_empty:
            found = await self.conn.scalar(select(invoices.c.id).where(cond).limit(1))
            if found is None:
                return None
        run_id: int = (
            await self.conn.execute(
                insert(billing_runs)
                .values(trigger=trigger, status="running", started_at=now)
                .returning(billing_runs.c.id)
            )
        ).scalar_one()
        await self.conn.execute(
            update(invoices)
            .where(cond)
            .values(run_id=run_id, run_unknown_since=None, unknown_repeats=0)
        )
        added = await self.conn.execute(
            insert(run_invoices).from_select(
                ["run_id", "invoice_id", "currency", "amount_minor"],
                select(
                    literal(run_id), invoices.c.id, invoices.c.currency, invoices.c.amount_minor
                ).where(invoices.c.run_id == run_id),
            )
        )
        count = max(int(added.rowcount or 0), 0)
        if self.is_pg and count >= ANALYZE_RUNS_OF:
            # A run this size just changed its invoices' rows (run_id set), usually
            # after they were loaded in bulk: until the planner's statistics say so,
            # it plans each claim as a sort of every PENDING invoice (a claim's cost
            # then grows with the run, quadratic over it) instead of walking
            # ix_invoices_in_run for the first few. Autovacuum would analyze within
            # its next minute; the run starts now. (Seen in this transaction, our own
            # changes are sampled; a tenth of a second or so, once per run.)
            await self.conn.execute(text("ANALYZE invoices, run_invoices"))
        await self.add_events([row(RunOpened(run_id=run_id, trigger=trigger, invoices=count))], now)
        if count == 0:
            await self.complete_runs([run_id], now)
        return run_id

    async def complete_runs(
        self: RunsRepository[WriteConnection], run_ids: Sequence[int], now: datetime
    ) -> list[int]:
        """Complete the runs of `run_ids` whose invoices all have an outcome (answers those).

        On PostgreSQL the runs' rows are locked first (in id order). Two
        transactions recording a run's last answers at the same time would each
        see the other's answers as not yet written (read committed) and neither
        would complete the run: it stayed `running` forever with every invoice
        done (seen with `bill --processes 2`). Locked, the second waits for the
        first to commit, and its next statement sees the first's answers.
        """
        if not run_ids:
            return []
        if self.is_pg:
            await self.conn.execute(
                select(billing_runs.c.id)
                .where(billing_runs.c.id.in_(sorted(run_ids)), billing_runs.c.status == "running")
                .order_by(billing_runs.c.id)
                .with_for_update(key_share=True)  # FOR NO KEY UPDATE: not in the way of FK checks
            )
        open_left = exists().where(
            run_invoices.c.run_id == billing_runs.c.id, run_invoices.c.outcome.is_(None)
        )
        result = await self.conn.execute(
            update(billing_runs)
            .where(
                billing_runs.c.id.in_(list(run_ids)),
                billing_runs.c.status == "running",
                ~open_left,
            )
            .values(status="completed", completed_at=now)
            .returning(billing_runs.c.id)
        )
        completed = [r.id for r in result]
        await self.add_events([row(RunCompleted(run_id=r)) for r in completed], now)
        return completed

    async def running_run_ids(self) -> list[int]:
        rows = await self.conn.execute(
            select(billing_runs.c.id).where(billing_runs.c.status == "running")
        )
        return [r.id for r in rows]

    async def get_run(self, run_id: int) -> RunRow | None:
        row = (
            await self.conn.execute(select(billing_runs).where(billing_runs.c.id == run_id))
        ).first()
        return (
            RunRow(row.id, row.trigger, row.status, row.started_at, row.completed_at)
            if row
            else None
        )

    async def get_runs(self, run_ids: Sequence[int]) -> list[RunRow]:
        if not run_ids:
            return []
        rows = await self.conn.execute(
            select(billing_runs)
            .where(billing_runs.c.id.in_(list(run_ids)))
            .order_by(billing_runs.c.id)
        )
        return [RunRow(r.id, r.trigger, r.status, r.started_at, r.completed_at) for r in rows]

    async def list_runs(self, *, after: int, limit: int, status: str | None) -> list[RunRow]:
        query = select(billing_runs).where(billing_runs.c.id > after)
        if status is not None:
            query = query.where(billing_runs.c.status == status)
        rows = await self.conn.execute(query.order_by(billing_runs.c.id).limit(limit))
        return [RunRow(r.id, r.trigger, r.status, r.started_at, r.completed_at) for r in rows]

    async def needs_person(
        self, run_ids: Sequence[int], first: int = 5
    ) -> list[tuple[str, str, int, list[int]]]:
        """What the runs of `run_ids` left for a person: (status, reason, count, the first
        `first` invoice ids) per status and last failure, of invoices still FAILED or REVIEW."""
        if not run_ids:
            return []
        waiting = and_(
            run_invoices.c.run_id.in_(list(run_ids)),
            run_invoices.c.outcome.in_([RunOutcome.FAILED.value, RunOutcome.REVIEW.value]),
            invoices.c.id == run_invoices.c.invoice_id,
            invoices.c.status.in_([InvoiceStatus.FAILED.value, InvoiceStatus.REVIEW.value]),
        )
        reason = func.coalesce(invoices.c.last_failure, "")
        groups = await self.conn.execute(
            select(invoices.c.status, reason.label("reason"), func.count().label("n"))
            .where(waiting)
            .group_by(invoices.c.status, reason)
            .order_by(invoices.c.status, func.count().desc(), reason)
        )
        out = []
        for status, why, count in groups.all():
            ids = await self.conn.scalars(
                select(invoices.c.id)
                .where(waiting, invoices.c.status == status, reason == why)
                .order_by(invoices.c.id)
                .limit(first)
            )
            out.append((str(status), str(why), int(count), [int(i) for i in ids]))
        return out

    async def open_members(self, run_id: int) -> int:
        """How many of the run's invoices have no outcome yet (on ix_run_invoices_open:
        it costs what is left, where `run_stats` reads every membership)."""
        return int(
            await self.conn.scalar(
                select(func.count()).where(
                    run_invoices.c.run_id == run_id, run_invoices.c.outcome.is_(None)
                )
            )
            or 0
        )

    async def run_stats(self, run_ids: Sequence[int]) -> dict[int, RunStats]:
        """Counts per outcome and amounts collected per currency, for each run."""
        stats = {
            rid: RunStats({"due": 0, **{o.value: 0 for o in RunOutcome}}, []) for rid in run_ids
        }
        if not run_ids:
            return stats
        ids = list(run_ids)
        rows = await self.conn.execute(
            select(run_invoices.c.run_id, run_invoices.c.outcome, func.count())
            .where(run_invoices.c.run_id.in_(ids))
            .group_by(run_invoices.c.run_id, run_invoices.c.outcome)
        )
        for run_id, outcome, n in rows:
            counts = stats[run_id].counts
            counts["due"] += n
            if outcome is not None:
                counts[outcome] = counts.get(outcome, 0) + n
        paid = await self.conn.execute(
            select(
                run_invoices.c.run_id,
                run_invoices.c.currency,
                func.sum(run_invoices.c.amount_minor),
            )
            .where(run_invoices.c.run_id.in_(ids), run_invoices.c.outcome == RunOutcome.PAID.value)
            .group_by(run_invoices.c.run_id, run_invoices.c.currency)
            .order_by(run_invoices.c.run_id, run_invoices.c.currency)
        )
        for run_id, currency, total in paid:
            stats[run_id].collected.append(Money.from_minor(int(total), Currency(currency)))
        return stats
