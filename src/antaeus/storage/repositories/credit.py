"""A customer's credit (issue 21): its balance (`customers.credit_minor`) and its entries.

Every change of the balance is one row of `credit_entries`, written in the same
transaction as the new balance, with its sign, the balance after it, and what it
came from (`reason`: `change`, `cancel`, `invoice`, `adjustment`; the change,
subscription or invoice it names). Whoever changes a balance holds the
customer's row first (`SubscriptionRepository.hold_customer_for_update` on
PostgreSQL; SQLite has one writer at a time): lock order customer, then
subscription, as invoice generation takes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Generic

from sqlalchemy import insert, select, update

from antaeus.domain.money import Currency, Money
from antaeus.storage.database import Conn, WriteConnection
from antaeus.storage.tables import credit_entries, customers, subscription_changes


class CreditReason(StrEnum):
    """Why a balance changed (an open set)."""

    CHANGE = "change"  # a change `now` whose net was not positive
    CANCEL = "cancel"  # a cancel `now` with `prorate`: the unused days
    INVOICE = "invoice"  # a generated invoice used it (a `balance` line)
    ADJUSTMENT = "adjustment"  # a person's, with a note


class ChangeKind(StrEnum):
    CHANGE = "change"
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class CreditEntry:
    id: int
    customer_id: int
    currency: Currency
    amount_minor: int  # with its sign
    balance_minor: int  # the balance after it
    reason: str
    subscription_id: int | None
    invoice_id: int | None
    change_id: int | None
    note: str | None
    actor: str
    created_at: datetime

    @property
    def amount(self) -> Money:
        return Money.from_minor(self.amount_minor, self.currency)

    @property
    def balance(self) -> Money:
        return Money.from_minor(self.balance_minor, self.currency)


def _entry(row: Any) -> CreditEntry:
    return CreditEntry(
        id=int(row.id),
        customer_id=int(row.customer_id),
        currency=Currency(row.currency),
        amount_minor=int(row.amount_minor),
        balance_minor=int(row.balance_minor),
        reason=row.reason,
        subscription_id=row.subscription_id,
        invoice_id=row.invoice_id,
        change_id=row.change_id,
        note=row.note,
        actor=row.actor,
        created_at=row.created_at,
    )


class CreditRepository(Generic[Conn]):
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def balance(self, customer_id: int) -> int | None:
        """The customer's credit in minor units; None: no such customer. Hold the
        customer first when the answer decides a write."""
        found = await self.conn.scalar(
            select(customers.c.credit_minor).where(customers.c.id == customer_id)
        )
        return None if found is None else int(found)

    async def page(self, customer_id: int, *, after: int, limit: int) -> list[CreditEntry]:
        """The customer's entries by ascending id (keyset pagination)."""
        c = credit_entries.c
        query = (
            select(credit_entries)
            .where(c.customer_id == customer_id, c.id > after)
            .order_by(c.id)
            .limit(limit)
        )
        return [_entry(r) for r in await self.conn.execute(query)]

    async def add(
        self: CreditRepository[WriteConnection],
        *,
        customer_id: int,
        currency: Currency,
        amount_minor: int,
        balance_before: int,
        reason: CreditReason,
        actor: str,
        now: datetime,
        subscription_id: int | None = None,
        invoice_id: int | None = None,
        change_id: int | None = None,
        note: str | None = None,
    ) -> CreditEntry:
        """One entry and the customer's new balance (`balance_before` + `amount_minor`,
        which the caller read while holding the customer). A balance below zero is the
        caller's bug: the table's check refuses it."""
        balance = balance_before + amount_minor
        if balance < 0:
            raise ValueError(f"customer {customer_id}: credit would fall below zero ({balance})")
        row = (
            await self.conn.execute(
                insert(credit_entries)
                .values(
                    customer_id=customer_id,
                    currency=currency.value,
                    amount_minor=amount_minor,
                    balance_minor=balance,
                    reason=reason.value,
                    subscription_id=subscription_id,
                    invoice_id=invoice_id,
                    change_id=change_id,
                    note=note,
                    actor=actor,
                    created_at=now,
                )
                .returning(credit_entries)
            )
        ).one()
        await self.conn.execute(
            update(customers).where(customers.c.id == customer_id).values(credit_minor=balance)
        )
        return _entry(row)

    async def record_change(
        self: CreditRepository[WriteConnection],
        *,
        subscription_id: int,
        kind: ChangeKind,
        from_plan_id: int,
        from_quantity: int,
        to_plan_id: int | None,
        to_quantity: int | None,
        effective_date: date,
        actor: str,
        now: datetime,
    ) -> int:
        """A change or cancel made `now` (`subscription_changes`); answers its id, which
        its invoice lines and credit entries name."""
        result = await self.conn.execute(
            insert(subscription_changes)
            .values(
                subscription_id=subscription_id,
                kind=kind.value,
                from_plan_id=from_plan_id,
                from_quantity=from_quantity,
                to_plan_id=to_plan_id,
                to_quantity=to_quantity,
                effective_date=effective_date,
                actor=actor,
                created_at=now,
            )
            .returning(subscription_changes.c.id)
        )
        return int(result.scalar_one())
