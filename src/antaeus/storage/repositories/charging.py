"""Whether charging is paused everywhere, and the due backlog (`GET /rest/v1/status`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    func,
    select,
    update,
)

from antaeus.domain.events import ChargingPaused, ChargingResumed, row
from antaeus.storage.database import Conn, WriteConnection
from antaeus.storage.repositories.runs import PENDING, PROCESSING, BillingBase
from antaeus.storage.tables import (
    charging_state,
    invoices,
)


class ChargingStateRepository(BillingBase[Conn]):
    # -- charging pause -------------------------------------------------------

    async def pause_state(self) -> tuple[str | None, datetime | None]:
        row = (
            await self.conn.execute(
                select(charging_state.c.paused_reason, charging_state.c.paused_since).where(
                    charging_state.c.id == 1
                )
            )
        ).first()
        return (row.paused_reason, row.paused_since) if row else (None, None)

    async def pause(
        self: ChargingStateRepository[WriteConnection], reason: str, detail: str, now: datetime
    ) -> None:
        """Pause charging everywhere (`reason`: provider_unauthorized, provider_unavailable);
        a `charging.paused` event when it was running. Stored as `reason: detail`."""
        shown = f"{reason}: {detail}"
        started = await self.conn.execute(
            update(charging_state)
            .where(charging_state.c.id == 1, charging_state.c.paused_reason.is_(None))
            .values(paused_reason=shown, paused_since=now, updated_at=now)
        )
        if started.rowcount:
            await self.add_events([row(ChargingPaused(reason=reason, detail=detail))], now)
            return
        await self.conn.execute(
            update(charging_state)
            .where(charging_state.c.id == 1)
            .values(
                paused_reason=shown,
                paused_since=func.coalesce(charging_state.c.paused_since, now),
                updated_at=now,
            )
        )

    async def resume(self: ChargingStateRepository[WriteConnection], now: datetime) -> bool:
        result = await self.conn.execute(
            update(charging_state)
            .where(charging_state.c.id == 1, charging_state.c.paused_reason.is_not(None))
            .values(paused_reason=None, paused_since=None, updated_at=now)
        )
        if result.rowcount:
            await self.add_events([row(ChargingResumed())], now)
        return bool(result.rowcount)

    # -- status ---------------------------------------------------------------

    async def status_counts(self) -> dict[str, int]:
        """How many invoices are in each status (the `antaeus_invoices` gauge)."""
        rows = await self.conn.execute(
            select(invoices.c.status, func.count()).group_by(invoices.c.status)
        )
        return {status: int(n) for status, n in rows}

    async def due_backlog(self, now: datetime) -> int:
        """Invoices that are due and not yet charged: waiting for a run, or in one.

        PENDING and eligible, or PROCESSING; counted in three disjoint parts, each
        on a partial index whose predicate it repeats, not by a scan of every
        invoice: waiting (ix_invoices_pending_not_in_run), in a run
        (ix_invoices_in_run: the status is a FILTER, not a WHERE term, or the
        planner would walk every PENDING invoice by ix_invoices_status_id), and
        PROCESSING (ix_invoices_status_id: as many as leases in flight).
        """
        pending = invoices.c.status == PENDING
        due = invoices.c.eligible_at <= now
        waiting = select(func.count()).where(pending, invoices.c.run_id.is_(None), due)
        in_runs = select(func.count().filter(pending)).where(invoices.c.run_id.is_not(None), due)
        processing = select(func.count()).where(invoices.c.status == PROCESSING)
        total = 0
        for query in (waiting, in_runs, processing):
            total += int(await self.conn.scalar(query.select_from(invoices)) or 0)
        return total
