from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Generic

from sqlalchemy import func, insert, select

from antaeus.domain.customer import Customer
from antaeus.domain.money import Currency
from antaeus.storage.database import Conn, WriteConnection
from antaeus.storage.tables import customers


def _to_customer(row: Any) -> Customer:
    return Customer(
        id=row.id, currency=Currency(row.currency), timezone=row.timezone, created_at=row.created_at
    )


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
        self: CustomerRepository[WriteConnection], currency: Currency, timezone: str, now: datetime
    ) -> Customer:
        result = await self.conn.execute(
            insert(customers)
            .values(currency=currency.value, timezone=timezone, created_at=now)
            .returning(customers)
        )
        return _to_customer(result.one())

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
