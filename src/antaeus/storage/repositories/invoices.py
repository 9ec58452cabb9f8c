from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Generic

from sqlalchemy import bindparam, insert, select

from antaeus.domain.invoice import FailureReason, Invoice, InvoiceStatus
from antaeus.domain.money import Currency, Money
from antaeus.storage.database import Conn, WriteConnection
from antaeus.storage.tables import invoices
from antaeus.storage.types import UTCDateTime


def to_invoice(row: Any) -> Invoice:
    return Invoice(
        id=row.id,
        customer_id=row.customer_id,
        amount=Money.from_minor(row.amount_minor, Currency(row.currency)),
        status=InvoiceStatus(row.status),
        due_at=row.due_at,
        attempt_count=row.attempt_count,
        last_failure=FailureReason(row.last_failure) if row.last_failure else None,
        next_attempt_at=row.next_attempt_at,
    )


class InvoiceRepository(Generic[Conn]):
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def get(self, invoice_id: int) -> Invoice | None:
        row = (await self.conn.execute(select(invoices).where(invoices.c.id == invoice_id))).first()
        return to_invoice(row) if row else None

    async def page(
        self,
        *,
        after: int,
        limit: int,
        status: InvoiceStatus | None = None,
        customer_id: int | None = None,
    ) -> list[Invoice]:
        query = select(invoices).where(invoices.c.id > after)
        if status is not None:
            query = query.where(invoices.c.status == status.value)
        if customer_id is not None:
            query = query.where(invoices.c.customer_id == customer_id)
        query = query.order_by(invoices.c.id).limit(limit)
        return [to_invoice(r) for r in await self.conn.execute(query)]

    async def create(
        self: InvoiceRepository[WriteConnection],
        customer_id: int,
        amount: Money,
        due_at: datetime,
        now: datetime,
    ) -> Invoice:
        result = await self.conn.execute(
            insert(invoices)
            .values(
                customer_id=customer_id,
                currency=amount.currency.value,
                amount_minor=amount.minor,
                status=InvoiceStatus.PENDING.value,
                due_at=due_at,
                eligible_at=due_at,
                attempt_count=0,
                created_at=now,
                updated_at=now,
            )
            .returning(invoices)
        )
        return to_invoice(result.one())

    async def insert_many(
        self: InvoiceRepository[WriteConnection], rows: Iterable[dict[str, Any]]
    ) -> None:
        """Bulk insert of ready-made rows (seeding, imports), at the driver's full speed.

        PostgreSQL gets a COPY; SQLite one executemany of plain tuples. Both skip
        SQLAlchemy's per-value processing, which would cost more than the insert.
        """
        batch = list(rows)
        if not batch:
            return
        columns = list(batch[0])
        if self.conn.dialect.name == "postgresql":
            raw = await self.conn.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            await driver.copy_records_to_table(
                "invoices", records=[tuple(r[c] for c in columns) for r in batch], columns=columns
            )
            return
        utc = UTCDateTime()
        dialect = self.conn.dialect
        cache: dict[datetime, str] = {}

        def plain(value: Any) -> Any:
            if isinstance(value, datetime):
                text = cache.get(value)
                if text is None:
                    bound = utc.process_bind_param(value, dialect)
                    assert bound is not None
                    text = cache[value] = bound.strftime("%Y-%m-%d %H:%M:%S.%f")
                return text
            return value

        compiled = (
            insert(invoices).values({c: bindparam(c) for c in columns}).compile(dialect=dialect)
        )
        order = list(compiled.positiontup or [])
        await self.conn.exec_driver_sql(
            str(compiled), [tuple(plain(r[c]) for c in order) for r in batch]
        )
