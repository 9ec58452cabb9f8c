"""What people do to invoices: retry a FAILED one, resolve a REVIEW one, void.

Each action is one conditional UPDATE (the status it is allowed from, checked by
row count), recorded with who did it and why, and announced in the outbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic

from sqlalchemy import and_, insert, select, update

from antaeus.domain.events import ActionTaken, row
from antaeus.domain.invoice import TRANSITIONS, Invoice, InvoiceEvent, InvoiceStatus, transition
from antaeus.domain.policy import RunOutcome
from antaeus.storage.database import Conn, WriteConnection
from antaeus.storage.repositories.billing import BillingRepository
from antaeus.storage.repositories.invoices import to_invoice
from antaeus.storage.tables import (
    charge_attempt_answers,
    charge_attempts,
    invoice_actions,
    invoices,
    run_invoices,
)

S = InvoiceStatus


@dataclass(frozen=True, slots=True)
class ActionRow:
    """One recorded action: who did what to the invoice, from and to which status, and why."""

    id: int
    invoice_id: int
    action: str
    actor: str
    note: str | None
    charge_id: str | None
    from_status: str
    to_status: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ActionResult:
    ok: bool
    status: InvoiceStatus | None  # the status now (None: no such invoice)
    reason: str | None = None
    before: InvoiceStatus | None = None  # the status the action changed (when ok)
    invoice: Invoice | None = None  # the invoice after the action (when ok)
    attempt: int | None = None  # refused naming an attempt: the invoice's current one


class ActionRepository(Generic[Conn]):
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def _status(self, invoice_id: int) -> InvoiceStatus | None:
        value = await self.conn.scalar(select(invoices.c.status).where(invoices.c.id == invoice_id))
        return InvoiceStatus(value) if value else None

    async def _audit(
        self: ActionRepository[WriteConnection],
        invoice_id: int,
        action: str,
        actor: str,
        note: str | None,
        before: InvoiceStatus,
        after: InvoiceStatus,
        now: datetime,
        charge_id: str | None = None,
    ) -> Invoice:
        """Record the action and its event; answers the invoice as the action left it."""
        [invoice] = await self._audit_many(
            [(invoice_id, before)], action, actor, note, after, now, charge_id
        )
        return invoice

    async def _audit_many(
        self: ActionRepository[WriteConnection],
        changed: Sequence[tuple[int, InvoiceStatus]],
        action: str,
        actor: str,
        note: str | None,
        after: InvoiceStatus,
        now: datetime,
        charge_id: str | None = None,
    ) -> list[Invoice]:
        """Record the action and its event for each (invoice, status before), in that order;
        answers the invoices as the action left them."""
        if not changed:
            return []
        await self.conn.execute(
            insert(invoice_actions),
            [
                {
                    "invoice_id": invoice_id,
                    "action": action,
                    "actor": actor,
                    "note": note,
                    "charge_id": charge_id,
                    "from_status": before.value,
                    "to_status": after.value,
                    "created_at": now,
                }
                for invoice_id, before in changed
            ],
        )
        ids = [invoice_id for invoice_id, _before in changed]
        found = {
            r.id: to_invoice(r)
            for r in await self.conn.execute(select(invoices).where(invoices.c.id.in_(ids)))
        }
        events = []
        for invoice_id, before in changed:
            events.append(
                row(
                    ActionTaken(
                        invoice=found[invoice_id],  # changed just now, in this transaction
                        action=action,
                        actor=actor,
                        note=note,
                        charge_id=charge_id,
                        from_status=before.value,
                        to_status=after.value,
                    )
                )
            )
        await BillingRepository(self.conn).add_events(events, now)
        return [found[invoice_id] for invoice_id in ids]

    async def retry(
        self: ActionRepository[WriteConnection],
        invoice_id: int,
        actor: str,
        note: str | None,
        now: datetime,
    ) -> ActionResult:
        """FAILED -> PENDING, due now, a fresh dunning cycle; the next charge is a new attempt."""
        [(_id, result)] = await self.retry_many([invoice_id], actor, note, now)
        if not result.ok:
            return ActionResult(False, await self._status(invoice_id))
        return result

    async def retry_many(
        self: ActionRepository[WriteConnection],
        invoice_ids: Sequence[int],
        actor: str,
        note: str | None,
        now: datetime,
    ) -> list[tuple[int, ActionResult]]:
        """`retry` of each invoice: one conditional UPDATE (still FAILED) for them all.

        Answers each invoice's result, in order; a refused one's `status` is None
        here (`retry` reads it for one invoice).
        """
        after = transition(S.FAILED, InvoiceEvent.RETRY)
        result = await self.conn.execute(
            update(invoices)
            .where(invoices.c.id.in_(invoice_ids), invoices.c.status == S.FAILED.value)
            .values(
                status=after.value,
                next_attempt_at=now,
                eligible_at=now,
                dunning_count=0,
                attempt_open_since=None,
                updated_at=now,
            )
            .returning(invoices.c.id)
        )
        done = {r.id for r in result}
        ordered = [i for i in invoice_ids if i in done]
        changed = await self._audit_many(
            [(i, S.FAILED) for i in ordered], "retried", actor, note, after, now
        )
        by_id = dict(zip(ordered, changed, strict=True))
        return [
            (
                i,
                ActionResult(True, after, before=S.FAILED, invoice=by_id[i])
                if i in by_id
                else ActionResult(False, None),
            )
            for i in invoice_ids
        ]

    async def resolve(
        self: ActionRepository[WriteConnection],
        invoice_id: int,
        charged: bool,
        charge_id: str | None,
        actor: str,
        note: str | None,
        now: datetime,
        *,
        attempt: int | None = None,
    ) -> ActionResult:
        """REVIEW -> PAID (with the provider's charge id), or -> PENDING due now (new attempt).

        With `attempt` (the reconciler, or a person who names the attempt they
        decided about), only while that attempt is still the invoice's latest: an
        answer about an older attempt never settles a newer one. Refused so, the
        result carries the invoice's current attempt number.
        """
        event = InvoiceEvent.RESOLVE_CHARGED if charged else InvoiceEvent.RESOLVE_NOT_CHARGED
        after = transition(S.REVIEW, event)
        values: dict[str, Any] = {
            "status": after.value,
            "attempt_open_since": None,
            "updated_at": now,
            "run_id": None,
            "lease_owner": None,
            "lease_expires_at": None,
        }
        if charged:
            values.update(last_failure=None, next_attempt_at=None, eligible_at=now)
        else:
            values.update(next_attempt_at=now, eligible_at=now, dunning_count=0)
        guard = and_(invoices.c.id == invoice_id, invoices.c.status == S.REVIEW.value)
        if attempt is not None:
            guard = and_(guard, invoices.c.attempt_count == attempt)
        result = await self.conn.execute(
            update(invoices).where(guard).values(**values).returning(invoices.c.attempt_count)
        )
        row = result.first()
        if row is None:
            if attempt is None:
                return ActionResult(False, await self._status(invoice_id))
            return await self._refused_attempt(invoice_id, attempt)
        attempt_values: dict[str, Any] = {"finished_at": now}
        if charged:
            attempt_values.update(outcome="charged", charge_id=charge_id)
        await self.conn.execute(
            update(charge_attempts)
            .where(
                charge_attempts.c.invoice_id == invoice_id,
                charge_attempts.c.number == row.attempt_count,
            )
            .values(**attempt_values)
        )
        action = "resolved_charged" if charged else "resolved_not_charged"
        changed = await self._audit(
            invoice_id, action, actor, note, S.REVIEW, after, now, charge_id
        )
        return ActionResult(True, after, before=S.REVIEW, invoice=changed)

    async def _refused_attempt(self, invoice_id: int, attempt: int) -> ActionResult:
        """Why a resolve naming `attempt` changed nothing, with the current attempt."""
        found = (
            await self.conn.execute(
                select(invoices.c.status, invoices.c.attempt_count).where(
                    invoices.c.id == invoice_id
                )
            )
        ).first()
        if found is None:
            return ActionResult(False, None)
        status, current = InvoiceStatus(found.status), int(found.attempt_count)
        reason = None
        if status is S.REVIEW:
            reason = (
                f"attempt {attempt} is not the open attempt of invoice {invoice_id}: it is in "
                f"REVIEW at attempt {current}; check attempt {current} with the provider, "
                "then resolve it"
            )
        return ActionResult(False, status, reason, attempt=current)

    async def void(
        self: ActionRepository[WriteConnection],
        invoice_id: int,
        actor: str,
        note: str | None,
        now: datetime,
    ) -> ActionResult:
        """FAILED -> VOID, or PENDING -> VOID when no attempt of unknown outcome is open."""
        before = await self._status(invoice_id)
        if before is None or (before, InvoiceEvent.VOID) not in TRANSITIONS:
            return ActionResult(False, before)
        [(_id, result)] = await self.void_many([invoice_id], actor, note, now)
        if not result.ok:
            status = await self._status(invoice_id)
            reason = None
            if status is S.PENDING:
                reason = (
                    "an attempt of unknown outcome is open: the provider may have charged it; "
                    "wait for its repeat, or for REVIEW, before voiding"
                )
            return ActionResult(False, status, reason)
        return result

    async def void_many(
        self: ActionRepository[WriteConnection],
        invoice_ids: Sequence[int],
        actor: str,
        note: str | None,
        now: datetime,
    ) -> list[tuple[int, ActionResult]]:
        """`void` of each invoice: a conditional UPDATE per status it is allowed from
        (FAILED; PENDING with no attempt of unknown outcome open) for them all.

        Answers each invoice's result, in order; a refused one's `status` is None
        here (`void` reads it, and why, for one invoice).
        """
        values = {
            "status": S.VOID.value,
            "next_attempt_at": None,
            "run_id": None,
            "updated_at": now,
        }
        guards = {
            S.FAILED: invoices.c.status == S.FAILED.value,
            S.PENDING: and_(
                invoices.c.status == S.PENDING.value, invoices.c.attempt_open_since.is_(None)
            ),
        }
        befores: dict[int, InvoiceStatus] = {}
        for before, guard in guards.items():
            result = await self.conn.execute(
                update(invoices)
                .where(invoices.c.id.in_(invoice_ids), guard)
                .values(**values)
                .returning(invoices.c.id)
            )
            befores.update((r.id, before) for r in result)
        ordered = [i for i in invoice_ids if i in befores]
        if ordered:
            open_runs = await self.conn.execute(
                update(run_invoices)
                .where(run_invoices.c.invoice_id.in_(ordered), run_invoices.c.outcome.is_(None))
                .values(outcome=RunOutcome.VOID.value, finished_at=now)
                .returning(run_invoices.c.run_id)
            )
            run_ids = sorted({r.run_id for r in open_runs})
            if run_ids:
                await BillingRepository(self.conn).complete_runs(run_ids, now)
        changed = await self._audit_many(
            [(i, befores[i]) for i in ordered], "voided", actor, note, S.VOID, now
        )
        by_id = dict(zip(ordered, changed, strict=True))
        return [
            (
                i,
                ActionResult(True, S.VOID, before=befores[i], invoice=by_id[i])
                if i in by_id
                else ActionResult(False, None),
            )
            for i in invoice_ids
        ]

    async def attempts(self, invoice_id: int) -> list[Any]:
        rows = await self.conn.execute(
            select(charge_attempts)
            .where(charge_attempts.c.invoice_id == invoice_id)
            .order_by(charge_attempts.c.number)
        )
        return list(rows)

    async def answers(self, invoice_id: int) -> list[Any]:
        """Every answer the provider gave to the invoice's attempts, in order."""
        rows = await self.conn.execute(
            select(charge_attempt_answers)
            .where(charge_attempt_answers.c.invoice_id == invoice_id)
            .order_by(charge_attempt_answers.c.attempt, charge_attempt_answers.c.id)
        )
        return list(rows)

    async def history(self, invoice_id: int, *, after: int, limit: int) -> list[ActionRow]:
        """The invoice's recorded actions with ids greater than `after`, oldest first."""
        rows = await self.conn.execute(
            select(invoice_actions)
            .where(invoice_actions.c.invoice_id == invoice_id, invoice_actions.c.id > after)
            .order_by(invoice_actions.c.id)
            .limit(limit)
        )
        return [
            ActionRow(
                id=r.id,
                invoice_id=r.invoice_id,
                action=r.action,
                actor=r.actor,
                note=r.note,
                charge_id=r.charge_id,
                from_status=r.from_status,
                to_status=r.to_status,
                created_at=r.created_at,
            )
            for r in rows
        ]
