from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Generic

from sqlalchemy import bindparam, func, insert, select, update

from antaeus.domain.calendar import first_of_month_in_new_zone
from antaeus.domain.customer import Customer
from antaeus.domain.invoice import InvoiceStatus
from antaeus.domain.money import Currency
from antaeus.storage.database import Conn, WriteConnection
from antaeus.storage.tables import customers, invoices

#: what `PATCH /rest/v1/customers/{id}` may change (column names)
CHANGEABLE: Final = frozenset({"provider_customer_id", "provider_payment_method_id", "timezone"})


def _to_customer(row: Any) -> Customer:
    return Customer(
        id=row.id,
        currency=Currency(row.currency),
        timezone=row.timezone,
        created_at=row.created_at,
        provider_customer_id=row.provider_customer_id,
        provider_payment_method_id=row.provider_payment_method_id,
        credit_minor=int(row.credit_minor),
    )


@dataclass(frozen=True, slots=True)
class CustomerChange:
    customer: Customer  # as it is after the change
    invoices_moved: int  # invoices not yet due whose due time followed a new time zone


class CustomerRepository(Generic[Conn]):
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def get(self, customer_id: int) -> Customer | None:
        row = (
            await self.conn.execute(select(customers).where(customers.c.id == customer_id))
        ).first()
        return _to_customer(row) if row else None

    async def page(self, *, after: int, limit: int) -> list[Customer]:
        query = (
            select(customers).where(customers.c.id > after).order_by(customers.c.id).limit(limit)
        )
        return [_to_customer(r) for r in await self.conn.execute(query)]

    async def create(
        self: CustomerRepository[WriteConnection],
        currency: Currency,
        timezone: str,
        now: datetime,
        *,
        provider_customer_id: str | None = None,
        provider_payment_method_id: str | None = None,
    ) -> Customer:
        result = await self.conn.execute(
            insert(customers)
            .values(
                currency=currency.value,
                timezone=timezone,
                created_at=now,
                provider_customer_id=provider_customer_id,
                provider_payment_method_id=provider_payment_method_id,
            )
            .returning(customers)
        )
        return _to_customer(result.one())

    async def change(
        self: CustomerRepository[WriteConnection],
        customer_id: int,
        values: dict[str, str | None],
        now: datetime,
    ) -> CustomerChange | None:
        """Change what `CHANGEABLE` names (validated by the caller); None: no such customer.

        A new time zone applies to the customer's invoices not yet due: PENDING, due
        after `now`, never attempted and in no run. One due at midnight on a first
        of the month in the old zone moves to midnight on the same first of the
        month in the new zone (it may then be due at once); any other due time was
        given explicitly and stays. Invoices already due, attempted or in a run keep
        theirs. Locked on PostgreSQL, so a concurrent change waits.
        """
        unknown = set(values) - CHANGEABLE
        if unknown:
            raise ValueError(f"not changeable: {sorted(unknown)}")
        query = select(customers).where(customers.c.id == customer_id)
        if self.conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = (await self.conn.execute(query)).first()
        if row is None:
            return None
        before = _to_customer(row)
        if values:
            row = (
                await self.conn.execute(
                    update(customers)
                    .where(customers.c.id == customer_id)
                    .values(**values)
                    .returning(customers)
                )
            ).one()
        after = _to_customer(row)
        moved = 0
        if after.timezone != before.timezone:
            moved = await self._follow_zone(customer_id, before.timezone, after.timezone, now)
        return CustomerChange(after, moved)

    async def _follow_zone(
        self: CustomerRepository[WriteConnection],
        customer_id: int,
        old: str,
        new: str,
        now: datetime,
    ) -> int:
        not_yet_due = (
            invoices.c.customer_id == customer_id,
            invoices.c.status == InvoiceStatus.PENDING.value,
            invoices.c.due_at > now,
            invoices.c.run_id.is_(None),
            invoices.c.attempt_count == 0,
            invoices.c.attempt_open_since.is_(None),
            invoices.c.next_attempt_at.is_(None),
        )
        rows = await self.conn.execute(select(invoices.c.id, invoices.c.due_at).where(*not_yet_due))
        moves = []
        for r in rows:
            due = first_of_month_in_new_zone(r.due_at, old, new)
            if due is not None and due != r.due_at:
                moves.append({"b_id": r.id, "b_old": r.due_at, "b_due": due, "b_now": now})
        if not moves:
            return 0
        result = await self.conn.execute(
            update(invoices)
            .where(
                invoices.c.id == bindparam("b_id"),
                invoices.c.due_at == bindparam("b_old"),  # as read: not changed meanwhile
                *not_yet_due,
            )
            .values(
                due_at=bindparam("b_due"),
                eligible_at=bindparam("b_due"),
                updated_at=bindparam("b_now"),
            ),
            moves,
        )
        return max(int(result.rowcount or 0), 0)

    async def create_many(
        self: CustomerRepository[WriteConnection],
        rows: Sequence[tuple[Currency, str]],
        now: datetime,
    ) -> list[int]:
        """Insert customers in bulk; answers their new ids in the order given."""
        if not rows:
            return []
        result = await self.conn.execute(
            insert(customers).returning(customers.c.id, sort_by_parameter_order=True),
            [{"currency": c.value, "timezone": tz, "created_at": now} for c, tz in rows],
        )
        return [r.id for r in result]

    async def count(self) -> int:
        return int(await self.conn.scalar(select(func.count()).select_from(customers)) or 0)

    async def exists_any(self) -> bool:
        return (await self.conn.scalar(select(customers.c.id).limit(1))) is not None
