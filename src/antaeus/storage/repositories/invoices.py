from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    true,
)

from antaeus.domain.events import line_data
from antaeus.domain.invoice import FailureReason, Invoice, InvoiceStatus
from antaeus.domain.money import Currency, Money
from antaeus.storage.database import Conn, WriteConnection
from antaeus.storage.tables import invoice_lines, invoices
from antaeus.storage.types import UTCDateTime

#: the one line of an invoice made with `POST /rest/v1/invoices` (or seeded, or from
#: before invoice lines: migration 0016)
MANUAL = "manual"
MANUAL_DESCRIPTION = "Manual invoice"


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


@dataclass(frozen=True, slots=True)
class InvoiceFilter:
    """Which invoices a list or a bulk action takes: every field given must match."""

    status: InvoiceStatus | None = None
    last_failure: FailureReason | None = None
    customer_id: int | None = None
    up_to_id: int | None = None  # none with a greater id (those created after a confirmation)
    subscription_id: int | None = None  # only invoices with a line of this subscription

    def empty(self) -> bool:
        return self.status is None and self.last_failure is None and self.customer_id is None

    def where(self) -> ColumnElement[bool]:
        terms: list[ColumnElement[bool]] = []
        if self.status is not None:
            terms.append(invoices.c.status == self.status.value)
        if self.last_failure is not None:
            terms.append(invoices.c.last_failure == self.last_failure.value)
        if self.customer_id is not None:
            terms.append(invoices.c.customer_id == self.customer_id)
        if self.up_to_id is not None:
            terms.append(invoices.c.id <= self.up_to_id)
        if self.subscription_id is not None:
            terms.append(
                invoices.c.id.in_(
                    select(invoice_lines.c.invoice_id).where(
                        invoice_lines.c.subscription_id == self.subscription_id
                    )
                )
            )
        return and_(true(), *terms)


@dataclass(frozen=True, slots=True)
class MatchCount:
    matched: int
    allowed: int  # of those matched, how many the action's status rule allows now
    last_id: int | None  # the greatest id matched


#: what the bulk actions act on (storage/repositories/actions.py checks the same again,
#: row by row): retry a FAILED invoice; void a FAILED one, or a PENDING one with no
#: attempt of unknown outcome open
BulkAction = Literal["retry", "void"]


def allows(action: BulkAction) -> ColumnElement[bool]:
    if action == "retry":
        return invoices.c.status == InvoiceStatus.FAILED.value
    return or_(
        invoices.c.status == InvoiceStatus.FAILED.value,
        and_(
            invoices.c.status == InvoiceStatus.PENDING.value,
            invoices.c.attempt_open_since.is_(None),
        ),
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
        last_failure: FailureReason | None = None,
        subscription_id: int | None = None,
    ) -> list[Invoice]:
        wanted = InvoiceFilter(status, last_failure, customer_id, subscription_id=subscription_id)
        query = select(invoices).where(invoices.c.id > after, wanted.where())
        query = query.order_by(invoices.c.id).limit(limit)
        return [to_invoice(r) for r in await self.conn.execute(query)]

    async def matching_ids(self, wanted: InvoiceFilter, *, after: int, limit: int) -> list[int]:
        """The ids of up to `limit` invoices matching `wanted` with ids above `after`, in order."""
        query = (
            select(invoices.c.id)
            .where(invoices.c.id > after, wanted.where())
            .order_by(invoices.c.id)
            .limit(limit)
        )
        return list((await self.conn.scalars(query)).all())

    async def count_matching(self, wanted: InvoiceFilter, action: BulkAction) -> MatchCount:
        """How many invoices match `wanted`, how many of them allow `action` now, the last id."""
        row = (
            await self.conn.execute(
                select(
                    func.count(),
                    func.coalesce(func.sum(case((allows(action), 1), else_=0)), 0),
                    func.max(invoices.c.id),
                ).where(wanted.where())
            )
        ).one()
        return MatchCount(int(row[0]), int(row[1]), int(row[2]) if row[2] is not None else None)

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
        invoice = to_invoice(result.one())
        await self.conn.execute(
            insert(invoice_lines).values(
                invoice_id=invoice.id,
                kind=MANUAL,
                description=MANUAL_DESCRIPTION,
                amount_minor=amount.minor,
            )
        )
        return invoice

    async def lines_of(self, invoice_ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
        """Each invoice's lines as the API shows them, in order (an invoice with none: [])."""
        wanted = sorted(set(invoice_ids))
        found: dict[int, list[dict[str, Any]]] = {i: [] for i in wanted}
        for chunk in (wanted[k : k + 1000] for k in range(0, len(wanted), 1000)):
            query = (
                select(invoice_lines, invoices.c.currency)
                .join_from(invoice_lines, invoices, invoices.c.id == invoice_lines.c.invoice_id)
                .where(invoice_lines.c.invoice_id.in_(chunk))
                .order_by(invoice_lines.c.invoice_id, invoice_lines.c.id)
            )
            for r in await self.conn.execute(query):
                found[r.invoice_id].append(
                    line_data(
                        r.id,
                        r.kind,
                        r.description,
                        Money.from_minor(r.amount_minor, Currency(r.currency)),
                        r.subscription_id,
                        r.plan_id,
                        r.period_start,
                        r.period_end,
                        r.quantity,
                    )
                )
        return found

    async def insert_many(
        self: InvoiceRepository[WriteConnection], rows: Iterable[dict[str, Any]]
    ) -> None:
        """Bulk insert of ready-made rows (seeding, imports), at the driver's full speed,
        each with its one `manual` line (no `invoice.created` event: a bulk import).

        PostgreSQL gets a COPY; SQLite one executemany of plain tuples. Both skip
        SQLAlchemy's per-value processing, which would cost more than the insert.
        """
        batch = list(rows)
        if not batch:
            return
        before = await self.max_id()
        await self._insert_many(batch)
        await self.add_manual_lines(before)

    async def _insert_many(
        self: InvoiceRepository[WriteConnection], batch: list[dict[str, Any]]
    ) -> None:
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

    async def add_manual_lines(self: InvoiceRepository[WriteConnection], after_id: int) -> None:
        """The one `manual` line of each invoice above `after_id` that has no line yet
        (after `insert_many`: an invoice's lines always sum to its amount)."""
        await self.conn.execute(
            insert(invoice_lines).from_select(
                ["invoice_id", "kind", "description", "amount_minor"],
                select(
                    invoices.c.id,
                    literal(MANUAL),
                    literal(MANUAL_DESCRIPTION),
                    invoices.c.amount_minor,
                )
                .where(
                    invoices.c.id > after_id,
                    ~exists().where(invoice_lines.c.invoice_id == invoices.c.id),
                )
                .order_by(invoices.c.id),
            )
        )

    async def max_id(self) -> int:
        return int(await self.conn.scalar(select(func.coalesce(func.max(invoices.c.id), 0))) or 0)
