"""What the dashboard reads and writes beyond the API's repositories: its sessions,
the money collected since a time, the invoices that wait for a person, and (issue 21)
what its subscription, customer and invoice pages and the overview's MRR read."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, Generic

from sqlalchemy import ColumnElement, Date, and_, case, delete, func, insert, literal, or_, select

from antaeus.domain.invoice import Invoice, InvoiceStatus
from antaeus.domain.money import Currency, Money
from antaeus.domain.policy import ChargeOutcome
from antaeus.storage.database import Conn, WriteConnection
from antaeus.storage.repositories.invoices import to_invoice
from antaeus.storage.tables import (
    billing_runs,
    charge_attempts,
    credit_entries,
    customers,
    dashboard_sessions,
    invoice_lines,
    invoices,
    subscriptions,
)

WAITING_FOR_PERSON = (InvoiceStatus.FAILED.value, InvoiceStatus.REVIEW.value)


@dataclass(frozen=True, slots=True)
class SessionRow:
    token_name: str
    csrf_token: str
    expires_at: datetime
    token_hash: str | None  # None: opened before sessions were bound to their token


class SessionRepository(Generic[Conn]):
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def create(
        self: SessionRepository[WriteConnection],
        id_hash: str,
        token_name: str,
        csrf_token: str,
        now: datetime,
        expires_at: datetime,
        *,
        token_hash: str,
    ) -> None:
        await self.conn.execute(
            insert(dashboard_sessions).values(
                id_hash=id_hash,
                token_name=token_name,
                token_hash=token_hash,
                csrf_token=csrf_token,
                created_at=now,
                expires_at=expires_at,
            )
        )

    async def get(self, id_hash: str, now: datetime) -> SessionRow | None:
        """The session, unless it has expired."""
        row = (
            await self.conn.execute(
                select(dashboard_sessions).where(
                    dashboard_sessions.c.id_hash == id_hash, dashboard_sessions.c.expires_at > now
                )
            )
        ).first()
        if row is None:
            return None
        return SessionRow(row.token_name, row.csrf_token, row.expires_at, row.token_hash)

    async def delete(self: SessionRepository[WriteConnection], id_hash: str) -> None:
        await self.conn.execute(
            delete(dashboard_sessions).where(dashboard_sessions.c.id_hash == id_hash)
        )

    async def delete_of_token(self: SessionRepository[WriteConnection], token_name: str) -> int:
        """End every session of the token of this name (it was just revoked)."""
        done = await self.conn.execute(
            delete(dashboard_sessions).where(dashboard_sessions.c.token_name == token_name)
        )
        return int(done.rowcount or 0)

    async def prune(self: SessionRepository[WriteConnection], now: datetime) -> int:
        """Forget every expired session."""
        done = await self.conn.execute(
            delete(dashboard_sessions).where(dashboard_sessions.c.expires_at <= now)
        )
        return int(done.rowcount or 0)


class DashboardRepository(Generic[Conn]):
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def collected_since(self, since: datetime) -> list[Money]:
        """Amounts charged since `since` per currency: every attempt that ended charged
        (by a worker, or a person's resolve as charged), by when it ended."""
        rows = await self.conn.execute(
            select(invoices.c.currency, func.sum(invoices.c.amount_minor))
            .select_from(
                charge_attempts.join(invoices, invoices.c.id == charge_attempts.c.invoice_id)
            )
            .where(
                charge_attempts.c.outcome == ChargeOutcome.CHARGED.value,
                charge_attempts.c.finished_at >= since,
            )
            .group_by(invoices.c.currency)
            .order_by(invoices.c.currency)
        )
        return [Money.from_minor(int(total), Currency(cur)) for cur, total in rows]

    async def waiting_counts(self) -> dict[str, int]:
        """How many invoices are FAILED and how many REVIEW."""
        counts = dict.fromkeys(WAITING_FOR_PERSON, 0)
        rows = await self.conn.execute(
            select(invoices.c.status, func.count())
            .where(invoices.c.status.in_(WAITING_FOR_PERSON))
            .group_by(invoices.c.status)
        )
        for status, n in rows:
            counts[status] = int(n)
        return counts

    async def waiting(self, limit: int) -> list[Invoice]:
        """The invoices that wait for a person, oldest first (REVIEW before FAILED)."""
        rows = await self.conn.execute(
            select(invoices)
            .where(invoices.c.status.in_(WAITING_FOR_PERSON))
            .order_by(invoices.c.status.desc(), invoices.c.id)
            .limit(limit)
        )
        return [to_invoice(r) for r in rows]

    async def recent_run_ids(self, *, before: int | None, limit: int) -> list[int]:
        """Run ids, newest first (`before`: older than this run)."""
        query = select(billing_runs.c.id)
        if before is not None:
            query = query.where(billing_runs.c.id < before)
        rows = await self.conn.execute(query.order_by(billing_runs.c.id.desc()).limit(limit))
        return [int(r[0]) for r in rows]


# -- subscriptions (issue 21) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanRecurring:
    """What one plan (the one billing each subscription today) adds to the overview:
    the summed quantity of its `active` subscriptions, and how many are active and
    trialing."""

    plan_id: int
    active_quantity: int
    active: int
    trialing: int


@dataclass(frozen=True, slots=True)
class LineRow:
    """An invoice line with its invoice's status (for the subscription and invoice pages)."""

    id: int
    invoice_id: int
    kind: str
    description: str
    amount: Money
    subscription_id: int | None
    plan_id: int | None
    period_start: date | None
    period_end: date | None
    quantity: int | None
    invoice_status: str
    due_at: datetime


@dataclass(frozen=True, slots=True)
class CreditEntryRow:
    id: int
    amount: Money
    balance: Money
    reason: str
    subscription_id: int | None
    invoice_id: int | None
    change_id: int | None
    note: str | None
    actor: str
    created_at: datetime


def _line(row: Any) -> LineRow:
    return LineRow(
        id=int(row.id),
        invoice_id=int(row.invoice_id),
        kind=row.kind,
        description=row.description,
        amount=Money.from_minor(int(row.amount_minor), Currency(row.currency)),
        subscription_id=row.subscription_id,
        plan_id=row.plan_id,
        period_start=row.period_start,
        period_end=row.period_end,
        quantity=row.quantity,
        invoice_status=row.status,
        due_at=row.due_at,
    )


def _entry(row: Any) -> CreditEntryRow:
    currency = Currency(row.currency)
    return CreditEntryRow(
        id=int(row.id),
        amount=Money.from_minor(int(row.amount_minor), currency),
        balance=Money.from_minor(int(row.balance_minor), currency),
        reason=row.reason,
        subscription_id=row.subscription_id,
        invoice_id=row.invoice_id,
        change_id=row.change_id,
        note=row.note,
        actor=row.actor,
        created_at=row.created_at,
    )


_LINE_COLUMNS: Final = (
    *invoice_lines.c,
    invoices.c.currency,
    invoices.c.status,
    invoices.c.due_at,
)


class SubscriptionPagesRepository(Generic[Conn]):
    """What the dashboard's subscription, customer and invoice pages and its overview read."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def subscription_zones(self) -> list[str]:
        """The time zones of the customers (each subscription's status is worked out on
        its customer's local date)."""
        rows = await self.conn.execute(select(customers.c.timezone).distinct())
        return sorted(str(r[0]) for r in rows)

    async def recurring(self, local_today: Mapping[str, date]) -> list[PlanRecurring]:
        """Per plan billing today: the quantity of `active` subscriptions, the counts of
        `active` and `trialing` ones, each status on its customer's local date
        (`local_today` by time zone: each is within a day of the UTC date, so a zone
        missing from it, a customer created meanwhile, counts at the commonest date).

        A pending change already in effect (its date reached, not billed yet) counts
        with its plan and quantity, as `current_period` does. One statement, grouped by
        plan: no row per subscription leaves the database.
        """
        s = subscriptions.c
        by_date: dict[date, list[str]] = {}
        for tz, day in local_today.items():
            by_date.setdefault(day, []).append(tz)
        if not by_date:
            return []
        commonest = max(by_date, key=lambda d: len(by_date[d]))
        today: ColumnElement[Any] = literal(commonest, Date())
        others = [(d, zones) for d, zones in sorted(by_date.items()) if d != commonest]
        if others:
            today = case(
                *[(customers.c.timezone.in_(zones), literal(d, Date())) for d, zones in others],
                else_=literal(commonest, Date()),
            )
        earliest = min(by_date)
        in_effect = and_(s.pending_effective_date.is_not(None), s.pending_effective_date <= today)
        plan_id = case((in_effect, s.pending_plan_id), else_=s.plan_id)
        quantity = case((in_effect, s.pending_quantity), else_=s.quantity)
        not_canceled = or_(s.cancel_at.is_(None), s.cancel_at > today)
        billing_start = func.coalesce(s.trial_end_date, s.start_date)
        active = and_(not_canceled, billing_start <= today)
        trialing = and_(
            not_canceled,
            s.trial_end_date.is_not(None),
            s.start_date <= today,
            today < s.trial_end_date,
        )
        each = (
            select(
                plan_id.label("plan_id"),
                case((active, quantity), else_=0).label("quantity"),
                case((active, 1), else_=0).label("active"),
                case((trialing, 1), else_=0).label("trialing"),
            )
            .select_from(subscriptions.join(customers, customers.c.id == s.customer_id))
            .where(or_(s.cancel_at.is_(None), s.cancel_at > earliest))
            .subquery()
        )
        rows = await self.conn.execute(
            select(
                each.c.plan_id,
                func.sum(each.c.quantity),
                func.sum(each.c.active),
                func.sum(each.c.trialing),
            )
            .group_by(each.c.plan_id)
            .order_by(each.c.plan_id)
        )
        return [
            PlanRecurring(int(p), int(q or 0), int(a or 0), int(t or 0))
            for p, q, a, t in rows
            if (a or 0) or (t or 0)
        ]

    async def periods(
        self, subscription_id: int, *, before: date | None, limit: int
    ) -> list[LineRow]:
        """The subscription's billed periods (its lines of kind `subscription`) with their
        invoices, newest first (`before`: periods starting before that date)."""
        query = (
            select(*_LINE_COLUMNS)
            .select_from(invoice_lines.join(invoices, invoices.c.id == invoice_lines.c.invoice_id))
            .where(
                invoice_lines.c.subscription_id == subscription_id,
                invoice_lines.c.kind == "subscription",
            )
        )
        if before is not None:
            query = query.where(invoice_lines.c.period_start < before)
        query = query.order_by(invoice_lines.c.period_start.desc()).limit(limit)
        return [_line(r) for r in await self.conn.execute(query)]

    async def change_lines(self, subscription_id: int, *, limit: int) -> list[LineRow]:
        """The subscription's lines of other kinds than `subscription` (a change's
        `proration` and `credit`), with their invoices, newest first."""
        query = (
            select(*_LINE_COLUMNS)
            .select_from(invoice_lines.join(invoices, invoices.c.id == invoice_lines.c.invoice_id))
            .where(
                invoice_lines.c.subscription_id == subscription_id,
                invoice_lines.c.kind != "subscription",
            )
            .order_by(invoice_lines.c.id.desc())
            .limit(limit)
        )
        return [_line(r) for r in await self.conn.execute(query)]

    async def subscription_credit_entries(
        self, customer_id: int, subscription_id: int, *, limit: int
    ) -> list[CreditEntryRow]:
        """The customer's credit entries that name this subscription, newest first."""
        query = (
            select(credit_entries)
            .where(
                credit_entries.c.customer_id == customer_id,
                credit_entries.c.subscription_id == subscription_id,
            )
            .order_by(credit_entries.c.id.desc())
            .limit(limit)
        )
        return [_entry(r) for r in await self.conn.execute(query)]

    async def lines_of_invoices(self, invoice_ids: Sequence[int]) -> list[LineRow]:
        """The lines of these invoices, by invoice then line id."""
        if not invoice_ids:
            return []
        query = (
            select(*_LINE_COLUMNS)
            .select_from(invoice_lines.join(invoices, invoices.c.id == invoice_lines.c.invoice_id))
            .where(invoice_lines.c.invoice_id.in_(list(invoice_ids)))
            .order_by(invoice_lines.c.invoice_id, invoice_lines.c.id)
        )
        return [_line(r) for r in await self.conn.execute(query)]

    async def credit_minor(self, customer_id: int) -> int | None:
        found = await self.conn.scalar(
            select(customers.c.credit_minor).where(customers.c.id == customer_id)
        )
        return None if found is None else int(found)

    async def credit_entries(
        self, customer_id: int, *, after: int = 0, limit: int = 100, newest_first: bool = True
    ) -> list[CreditEntryRow]:
        """The customer's credit entries after the id `after`."""
        order = credit_entries.c.id.desc() if newest_first else credit_entries.c.id
        query = (
            select(credit_entries)
            .where(credit_entries.c.customer_id == customer_id, credit_entries.c.id > after)
            .order_by(order)
            .limit(limit)
        )
        return [_entry(r) for r in await self.conn.execute(query)]

    async def customer_invoices(
        self, customer_id: int, *, after: int = 0, limit: int = 50, newest_first: bool = True
    ) -> list[Invoice]:
        """The customer's invoices after the id `after`."""
        order = invoices.c.id.desc() if newest_first else invoices.c.id
        query = (
            select(invoices)
            .where(invoices.c.customer_id == customer_id, invoices.c.id > after)
            .order_by(order)
            .limit(limit)
        )
        return [to_invoice(r) for r in await self.conn.execute(query)]

    async def marks(self, customer_id: int) -> tuple[int, int]:
        """The customer's largest invoice id and credit entry id (0: none): what an action
        adds after them is what it made."""
        invoice = await self.conn.scalar(
            select(func.max(invoices.c.id)).where(invoices.c.customer_id == customer_id)
        )
        entry = await self.conn.scalar(
            select(func.max(credit_entries.c.id)).where(credit_entries.c.customer_id == customer_id)
        )
        return int(invoice or 0), int(entry or 0)

    async def subscription_version(self, subscription_id: int) -> str | None:
        """A digest of every column of the subscription's row: another one after any write."""
        row = (
            await self.conn.execute(
                select(subscriptions).where(subscriptions.c.id == subscription_id)
            )
        ).first()
        if row is None:
            return None
        return hashlib.sha256(repr(tuple(row)).encode("utf-8")).hexdigest()[:32]

    async def subscriptions_of_invoice(self, invoice_id: int) -> list[int]:
        """The subscriptions an invoice's lines name."""
        rows = await self.conn.execute(
            select(invoice_lines.c.subscription_id)
            .where(
                invoice_lines.c.invoice_id == invoice_id,
                invoice_lines.c.subscription_id.is_not(None),
            )
            .distinct()
        )
        return sorted(int(r[0]) for r in rows)
