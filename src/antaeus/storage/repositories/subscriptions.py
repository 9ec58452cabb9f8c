"""Subscriptions (issue 21): their rows, and the terms the pure date rules take.

A row holds local dates (the customer's time zone); status and the current
period are worked out when read (domain/subscription.py `status_on`,
`current_period`), never stored. Invoice generation (a later step) reads the
same rows as `SubscriptionTerms` and writes back `next_period_start`,
`periods_from` and `next_due_at`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final, Generic

from sqlalchemy import ColumnElement, and_, func, insert, or_, select, true, update

from antaeus.domain.periods import BillingAnchor
from antaeus.domain.subscription import (
    PendingChange,
    SubscriptionStatus,
    SubscriptionTerms,
    next_due_at,
)
from antaeus.storage.batch import sqlite_datetime
from antaeus.storage.database import Conn, WriteConnection
from antaeus.storage.repositories.plans import Plan, PlanRepository
from antaeus.storage.tables import customers, subscriptions

#: the columns an action may set (change, cancel, reactivate; generation later)
CHANGEABLE: Final = frozenset(
    {
        "plan_id",
        "quantity",
        "cancel_at",
        "canceled_at",
        "pending_plan_id",
        "pending_quantity",
        "pending_effective_date",
        "next_due_at",
        "trial_notice_on",
        "cancel_notice_on",
    }
)


@dataclass(frozen=True, slots=True)
class SubscriptionRow:
    id: int
    customer_id: int
    timezone: str  # the customer's, now
    plan_id: int
    quantity: int
    billing_anchor: BillingAnchor
    start_date: date
    trial_end_date: date | None
    cancel_at: date | None
    canceled_at: datetime | None
    pending_plan_id: int | None
    pending_quantity: int | None
    pending_effective_date: date | None
    periods_from: date | None
    next_period_start: date | None
    next_due_at: datetime | None
    created_at: datetime

    def plan_ids(self) -> tuple[int, ...]:
        return (
            (self.plan_id,)
            if self.pending_plan_id is None
            else (
                self.plan_id,
                self.pending_plan_id,
            )
        )

    def lone_key(self) -> tuple[Any, ...]:
        """What its invoices depend on but its id and customer: its terms and zone."""
        return (
            self.plan_id,
            self.quantity,
            self.billing_anchor,
            self.start_date,
            self.trial_end_date,
            self.cancel_at,
            self.pending_plan_id,
            self.pending_quantity,
            self.pending_effective_date,
            self.periods_from,
            self.next_period_start,
            self.timezone,
        )

    def terms(self, plans: Mapping[int, Plan]) -> SubscriptionTerms:
        """The row as the date rules take it; `plans` holds its plan (and pending one)."""
        pending = None
        if (
            self.pending_plan_id is not None
            and self.pending_quantity is not None
            and self.pending_effective_date is not None
        ):
            pending = PendingChange(
                plans[self.pending_plan_id].terms,
                self.pending_quantity,
                self.pending_effective_date,
            )
        return SubscriptionTerms(
            id=self.id,
            plan=plans[self.plan_id].terms,
            quantity=self.quantity,
            billing_anchor=self.billing_anchor,
            start_date=self.start_date,
            trial_end_date=self.trial_end_date,
            cancel_at=self.cancel_at,
            pending_change=pending,
            periods_from=self.periods_from,
            next_period_start=self.next_period_start,
        )


_COLUMNS: Final = (*subscriptions.c, customers.c.timezone)

#: the columns of `insert_many`'s rows, in order
BULK_COLUMNS: Final = (
    "customer_id",
    "plan_id",
    "quantity",
    "billing_anchor",
    "start_date",
    "trial_end_date",
    "next_due_at",
    "trial_notice_on",
    "created_at",
    "updated_at",
)


def _sqlite_value(value: Any) -> Any:
    """A value as SQLite stores it (see antaeus.storage.batch)."""
    if isinstance(value, datetime):
        return sqlite_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _to_row(row: Any) -> SubscriptionRow:
    return SubscriptionRow(
        id=row.id,
        customer_id=row.customer_id,
        timezone=row.timezone,
        plan_id=row.plan_id,
        quantity=row.quantity,
        billing_anchor=BillingAnchor(row.billing_anchor),
        start_date=row.start_date,
        trial_end_date=row.trial_end_date,
        cancel_at=row.cancel_at,
        canceled_at=row.canceled_at,
        pending_plan_id=row.pending_plan_id,
        pending_quantity=row.pending_quantity,
        pending_effective_date=row.pending_effective_date,
        periods_from=row.periods_from,
        next_period_start=row.next_period_start,
        next_due_at=row.next_due_at,
        created_at=row.created_at,
    )


to_subscription_row = _to_row


def _joined() -> Any:
    return select(*_COLUMNS).join_from(
        subscriptions, customers, customers.c.id == subscriptions.c.customer_id
    )


def may_have_status(status: SubscriptionStatus, utc_today: date) -> ColumnElement[bool]:
    """A superset of the rows with `status` on some customer's local date, which is
    within a day of the UTC date `utc_today` in every zone; the caller decides exactly
    (`status_on`, on each customer's own date)."""
    low, high = utc_today - timedelta(days=1), utc_today + timedelta(days=1)
    c = subscriptions.c
    not_canceled = or_(c.cancel_at.is_(None), c.cancel_at > low)
    billing_start = func.coalesce(c.trial_end_date, c.start_date)
    if status is SubscriptionStatus.CANCELED:
        return and_(c.cancel_at.is_not(None), c.cancel_at <= high)
    if status is SubscriptionStatus.SCHEDULED:
        return and_(not_canceled, c.start_date > low)
    if status is SubscriptionStatus.TRIALING:
        return and_(
            not_canceled,
            c.trial_end_date.is_not(None),
            c.start_date <= high,
            c.trial_end_date > low,
        )
    return and_(not_canceled, billing_start <= high)


class SubscriptionRepository(Generic[Conn]):
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def billing_of(self, customer_id: int) -> list[SubscriptionRow]:
        """The customer's subscriptions with a period left to bill (what generation and
        the preview read), by id."""
        query = (
            _joined()
            .where(
                subscriptions.c.customer_id == customer_id, subscriptions.c.next_due_at.is_not(None)
            )
            .order_by(subscriptions.c.id)
        )
        return [_to_row(r) for r in await self.conn.execute(query)]

    async def customer_of(self, subscription_id: int) -> int | None:
        """The subscription's customer (a subscription never changes customer)."""
        found = await self.conn.scalar(
            select(subscriptions.c.customer_id).where(subscriptions.c.id == subscription_id)
        )
        return int(found) if found is not None else None

    async def count_due(self, now: datetime) -> int:
        """Subscriptions with a period due by `now` not yet billed (the generator's index)."""
        c = subscriptions.c
        found = await self.conn.scalar(
            select(func.count())
            .select_from(subscriptions)
            .where(c.next_due_at.is_not(None), c.next_due_at <= now)
        )
        return int(found or 0)

    async def hold_customer_for_update(
        self: SubscriptionRepository[WriteConnection], customer_id: int
    ) -> None:
        """Hold the customer's row exclusively (PostgreSQL) until the transaction ends:
        what changes a subscription or the customer's credit takes the customer first,
        then the subscription, in the order invoice generation takes them."""
        if self.conn.dialect.name == "postgresql":
            await self.conn.execute(
                select(customers.c.id).where(customers.c.id == customer_id).with_for_update()
            )

    async def get(self, subscription_id: int, *, lock: bool = False) -> SubscriptionRow | None:
        """One subscription; `lock`: its row held until the transaction ends (PostgreSQL),
        so that two actions on it take turns."""
        query = _joined().where(subscriptions.c.id == subscription_id)
        if lock and self.conn.dialect.name == "postgresql":
            query = query.with_for_update(of=subscriptions)
        row = (await self.conn.execute(query)).first()
        return _to_row(row) if row else None

    async def page(
        self,
        *,
        after: int,
        limit: int,
        customer_id: int | None = None,
        plan_id: int | None = None,
        where: ColumnElement[bool] | None = None,
    ) -> list[SubscriptionRow]:
        terms: list[ColumnElement[bool]] = [subscriptions.c.id > after]
        if customer_id is not None:
            terms.append(subscriptions.c.customer_id == customer_id)
        if plan_id is not None:
            terms.append(subscriptions.c.plan_id == plan_id)
        query = (
            _joined()
            .where(and_(true(), *terms), where if where is not None else true())
            .order_by(subscriptions.c.id)
            .limit(limit)
        )
        return [_to_row(r) for r in await self.conn.execute(query)]

    async def create(
        self: SubscriptionRepository[WriteConnection],
        *,
        customer_id: int,
        plan_id: int,
        quantity: int,
        billing_anchor: BillingAnchor,
        start_date: date,
        trial_end_date: date | None,
        next_due_at: datetime | None,
        now: datetime,
        trial_notice_on: date | None = None,
    ) -> int:
        result = await self.conn.execute(
            insert(subscriptions)
            .values(
                customer_id=customer_id,
                plan_id=plan_id,
                quantity=quantity,
                billing_anchor=billing_anchor.value,
                start_date=start_date,
                trial_end_date=trial_end_date,
                next_due_at=next_due_at,
                trial_notice_on=trial_notice_on,
                created_at=now,
                updated_at=now,
            )
            .returning(subscriptions.c.id)
        )
        return int(result.scalar_one())

    async def insert_many(
        self: SubscriptionRepository[WriteConnection], rows: Sequence[tuple[Any, ...]]
    ) -> None:
        """Bulk insert of ready-made rows of `BULK_COLUMNS` (seeding), at the driver's speed:
        a COPY on PostgreSQL, one executemany of plain tuples on SQLite."""
        if not rows:
            return
        if self.conn.dialect.name == "postgresql":
            raw = await self.conn.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            await driver.copy_records_to_table(
                "subscriptions", records=rows, columns=list(BULK_COLUMNS)
            )
            return
        names = ", ".join(BULK_COLUMNS)
        marks = ", ".join("?" for _ in BULK_COLUMNS)
        await self.conn.exec_driver_sql(
            f"INSERT INTO subscriptions ({names}) VALUES ({marks})",  # noqa: S608
            [tuple(_sqlite_value(v) for v in r) for r in rows],
        )

    async def analyze(self: SubscriptionRepository[WriteConnection]) -> None:
        """Refresh PostgreSQL's statistics of subscriptions and customers (after a bulk
        load, so that the planner knows how many are due)."""
        if self.conn.dialect.name == "postgresql":
            await self.conn.exec_driver_sql("ANALYZE subscriptions, customers")

    async def set(
        self: SubscriptionRepository[WriteConnection],
        subscription_id: int,
        values: Mapping[str, Any],
        now: datetime,
    ) -> None:
        """Set what `CHANGEABLE` names (validated by the caller) on one subscription."""
        unknown = set(values) - CHANGEABLE
        if unknown:
            raise ValueError(f"not changeable: {sorted(unknown)}")
        await self.conn.execute(
            update(subscriptions)
            .where(subscriptions.c.id == subscription_id)
            .values(**values, updated_at=now)
        )

    async def follow_zone(
        self: SubscriptionRepository[WriteConnection], customer_id: int, now: datetime
    ) -> int:
        """After the customer's time zone changed: each subscription's next due moment is
        the first instant of its next period's start date in the new zone (the dates stay).
        Answers how many moved."""
        query = _joined().where(
            subscriptions.c.customer_id == customer_id, subscriptions.c.next_due_at.is_not(None)
        )
        rows = [_to_row(r) for r in await self.conn.execute(query)]
        plans = await PlanRepository(self.conn).many(i for r in rows for i in r.plan_ids())
        moved = 0
        for sub in rows:
            due = next_due_at(sub.terms(plans), sub.timezone)
            if due != sub.next_due_at:
                await self.set(sub.id, {"next_due_at": due}, now)
                moved += 1
        return moved
