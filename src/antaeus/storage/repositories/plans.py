"""Plans (issue 21): created, listed, archived. A plan's price and interval never change."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from antaeus.domain.money import Currency, Money
from antaeus.domain.periods import Interval
from antaeus.domain.subscription import PlanTerms
from antaeus.storage.database import Conn, WriteConnection
from antaeus.storage.tables import plans


@dataclass(frozen=True, slots=True)
class Plan:
    id: int
    code: str
    name: str
    amount: Money
    interval: Interval
    interval_count: int
    trial_days: int
    created_at: datetime
    archived_at: datetime | None

    @property
    def terms(self) -> PlanTerms:
        """What billing needs of the plan (domain/subscription.py)."""
        return PlanTerms(self.id, self.name, self.amount, self.interval, self.interval_count)


def to_plan(row: Any) -> Plan:
    return Plan(
        id=row.id,
        code=row.code,
        name=row.name,
        amount=Money.from_minor(row.amount_minor, Currency(row.currency)),
        interval=Interval(row.interval),
        interval_count=row.interval_count,
        trial_days=row.trial_days,
        created_at=row.created_at,
        archived_at=row.archived_at,
    )


class PlanRepository(Generic[Conn]):
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def get(self, plan_id: int, *, lock: bool = False) -> Plan | None:
        """One plan; `lock`: held (shared, on PostgreSQL) until the transaction ends, so
        that an archive waits for a subscription being created to it."""
        query = select(plans).where(plans.c.id == plan_id)
        if lock and self.conn.dialect.name == "postgresql":
            query = query.with_for_update(read=True)
        row = (await self.conn.execute(query)).first()
        return to_plan(row) if row else None

    async def by_code(self, code: str) -> Plan | None:
        row = (await self.conn.execute(select(plans).where(plans.c.code == code))).first()
        return to_plan(row) if row else None

    async def many(self, plan_ids: Iterable[int]) -> dict[int, Plan]:
        wanted = sorted(set(plan_ids))
        if not wanted:
            return {}
        rows = await self.conn.execute(select(plans).where(plans.c.id.in_(wanted)))
        return {p.id: p for p in map(to_plan, rows)}

    async def page(self, *, after: int, limit: int, archived: bool | None = None) -> list[Plan]:
        query = select(plans).where(plans.c.id > after)
        if archived is True:
            query = query.where(plans.c.archived_at.is_not(None))
        elif archived is False:
            query = query.where(plans.c.archived_at.is_(None))
        query = query.order_by(plans.c.id).limit(limit)
        return [to_plan(r) for r in await self.conn.execute(query)]

    async def create(
        self: PlanRepository[WriteConnection],
        *,
        code: str,
        name: str,
        amount: Money,
        interval: Interval,
        interval_count: int,
        trial_days: int,
        now: datetime,
    ) -> Plan | None:
        """The new plan; None when its code is taken (the unique constraint decides)."""
        values = {
            "code": code,
            "name": name,
            "currency": amount.currency.value,
            "amount_minor": amount.minor,
            "interval": interval.value,
            "interval_count": interval_count,
            "trial_days": trial_days,
            "created_at": now,
        }
        dialect = postgresql if self.conn.dialect.name == "postgresql" else sqlite
        statement = (
            dialect.insert(plans)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[plans.c.code])
            .returning(plans)
        )
        row = (await self.conn.execute(statement)).first()
        return to_plan(row) if row else None

    async def archive(self: PlanRepository[WriteConnection], plan_id: int, now: datetime) -> bool:
        """Archive a plan not archived yet; False when it was (or does not exist)."""
        result = await self.conn.execute(
            update(plans)
            .where(plans.c.id == plan_id, plans.c.archived_at.is_(None))
            .values(archived_at=now)
        )
        return bool(result.rowcount)
