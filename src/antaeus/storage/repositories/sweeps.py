"""The scheduler's sweeps: open attempts past their key's retention, and retries."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    and_,
    bindparam,
    or_,
    select,
    update,
)

from antaeus.storage.database import Conn, WriteConnection
from antaeus.storage.repositories.runs import PENDING, PROCESSING, RunsRepository
from antaeus.storage.tables import (
    invoices,
    run_invoices,
)


class SweepsRepository(RunsRepository[Conn]):
    # -- the scheduler's sweeps -----------------------------------------------

    async def to_review_past_retention(
        self: SweepsRepository[WriteConnection],
        now: datetime,
        cut: datetime,
        *,
        status: str,
        reason: str,
        run_outcome: str,
    ) -> list[tuple[int, int | None, int]]:
        """Apply the policy's `retention_ending` rule: open attempts first sent before
        `cut` can no longer be repeated safely (`status`, `reason`, leaving their run
        with `run_outcome`).

        Takes PENDING invoices and PROCESSING ones whose lease expired; answers
        (invoice id, run id, attempt number) of each moved.
        """
        past = and_(
            invoices.c.attempt_open_since.is_not(None),
            invoices.c.attempt_open_since <= cut,
            or_(
                invoices.c.status == PENDING,
                and_(invoices.c.status == PROCESSING, invoices.c.lease_expires_at <= now),
            ),
        )
        # Read the runs first: RETURNING would answer the run_id after it is cleared.
        query = select(invoices.c.id, invoices.c.run_id, invoices.c.attempt_count).where(past)
        if self.is_pg:
            query = query.with_for_update(skip_locked=True)
        found = {r.id: (r.run_id, r.attempt_count) for r in await self.conn.execute(query)}
        if not found:
            return []
        result = await self.conn.execute(
            update(invoices)
            .where(invoices.c.id.in_(list(found)), past)
            .values(
                status=status,
                last_failure=reason,
                next_attempt_at=None,
                lease_owner=None,
                lease_expires_at=None,
                run_id=None,
                updated_at=now,
            )
            .returning(invoices.c.id)
        )
        moved = [(r.id, *found[r.id]) for r in result]
        in_runs = [(i, r) for i, r, _ in moved if r is not None]
        if in_runs:
            ri = run_invoices.c
            await self.conn.execute(
                update(run_invoices)
                .where(
                    ri.run_id == bindparam("b_run"),
                    ri.invoice_id == bindparam("b_id"),
                    ri.outcome.is_(None),
                )
                .values(outcome=run_outcome, finished_at=now),
                [{"b_run": r, "b_id": i} for i, r in in_runs],
            )
            await self.complete_runs(sorted({r for _, r in in_runs}), now)
        return moved

    async def failed_pending_due_now(self: SweepsRepository[WriteConnection], now: datetime) -> int:
        """Every PENDING invoice with a past failure, waiting for a retry, becomes due now."""
        result = await self.conn.execute(
            update(invoices)
            .where(
                invoices.c.status == PENDING,
                invoices.c.last_failure.is_not(None),
                invoices.c.run_id.is_(None),
                invoices.c.eligible_at > now,
            )
            .values(next_attempt_at=now, eligible_at=now, updated_at=now)
        )
        return int(result.rowcount or 0)
