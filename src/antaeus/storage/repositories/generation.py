"""Invoice generation's SQL (issue 21): due subscriptions in, invoices and lines out.

Set-based, as the charge path's batches: a batch of due subscriptions is read
in one statement, and its invoices, lines, subscription updates, credit entries
and events are each written in one statement per table (PostgreSQL: `unnest`
of one array per column; SQLite: one executemany of plain tuples). Ids are
reserved before the insert (PostgreSQL: the sequence; SQLite: the largest id
plus one, under the write lock every SQLite writer holds), so that lines and
events can name their invoice without reading anything back.

Exactly once: a (subscription, period start) has one `subscription` line, ever
(`uq_invoice_lines_subscription_period`); a second writer of the same period
fails on the index and its whole transaction rolls back. On PostgreSQL the
generator takes each batch's customers `FOR UPDATE SKIP LOCKED` (then their due
subscriptions `FOR UPDATE`), so that two generators never build the same
customer's invoices at once: lock order customer, then subscription, as every
request that changes a subscription.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

from sqlalchemy import Table, select
from sqlalchemy import types as sqltypes

from antaeus.domain.periods import BillingAnchor
from antaeus.storage.batch import execute_arrays, sqlite_datetime, sqlite_moment
from antaeus.storage.database import WriteConnection
from antaeus.storage.repositories.runs import BillingBase
from antaeus.storage.repositories.subscriptions import SubscriptionRow
from antaeus.storage.tables import (
    credit_entries,
    customers,
    invoice_lines,
    invoices,
    subscriptions,
)
from antaeus.storage.types import UTCDateTime

#: the columns of a batch's rows, in order (each insert's tuples follow them)
INVOICE_COLUMNS: Final = (
    "id",
    "customer_id",
    "currency",
    "amount_minor",
    "status",
    "due_at",
    "eligible_at",
    "attempt_count",
    "created_at",
    "updated_at",
)
LINE_COLUMNS: Final = (
    "id",
    "invoice_id",
    "kind",
    "description",
    "amount_minor",
    "subscription_id",
    "plan_id",
    "change_id",
    "period_start",
    "period_end",
    "quantity",
)
CREDIT_COLUMNS: Final = (
    "customer_id",
    "currency",
    "amount_minor",
    "balance_minor",
    "reason",
    "subscription_id",
    "invoice_id",
    "change_id",
    "note",
    "actor",
    "created_at",
)
#: what generation writes back on a subscription (the id last)
SUBSCRIPTION_COLUMNS: Final = (
    "plan_id",
    "quantity",
    "pending_plan_id",
    "pending_quantity",
    "pending_effective_date",
    "periods_from",
    "next_period_start",
    "next_due_at",
    "updated_at",
    "id",
)
#: the tail of `SUBSCRIPTION_COLUMNS` that `move_subscriptions_on` writes
MOVE_COLUMNS: Final = SUBSCRIPTION_COLUMNS[5:]


def _pg_type(table: Table, column: str) -> str:
    kind = table.c[column].type
    if isinstance(kind, UTCDateTime):
        return "timestamptz"
    if isinstance(kind, sqltypes.Date):
        return "date"
    if isinstance(kind, sqltypes.Integer):  # BigInteger too
        return "bigint"
    return "text"


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return sqlite_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


@functools.lru_cache(maxsize=4096)
def _date_text(value: date) -> str:
    return value.isoformat()


def _sqlite_moment_text(value: datetime | None) -> str | None:
    return None if value is None else sqlite_datetime(value)


def _sqlite_date_text(value: date | None) -> str | None:
    return None if value is None else _date_text(value)


def _sqlite_converter(table: Table, column: str) -> Callable[[Any], Any] | None:
    """How a value of `column` goes to SQLite (None: as it is)."""
    kind = table.c[column].type
    if isinstance(kind, UTCDateTime):
        return _sqlite_moment_text
    if isinstance(kind, sqltypes.Date):
        return _sqlite_date_text
    return None


def sqlite_rows(
    table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    """`rows` of `columns` as SQLite takes them, converted column by column."""
    converted = []
    for column, values in zip(columns, zip(*rows, strict=True), strict=True):
        convert = _sqlite_converter(table, column)
        converted.append(values if convert is None else tuple(map(convert, values)))
    return list(zip(*converted, strict=True))


@functools.lru_cache(maxsize=4096)
def _read_date(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(text)


@functools.lru_cache(maxsize=65536)
def _read_moment(text: str | None) -> datetime | None:
    return sqlite_moment(text)


#: the due subscriptions of some customers, as `SubscriptionRow` takes them
_DUE_COLUMNS: Final = (
    "s.id, s.customer_id, c.timezone, s.plan_id, s.quantity, s.billing_anchor, s.start_date, "
    "s.trial_end_date, s.cancel_at, s.canceled_at, s.pending_plan_id, s.pending_quantity, "
    "s.pending_effective_date, s.periods_from, s.next_period_start, s.next_due_at, s.created_at"
)


_ANCHORS: Final = {a.value: a for a in BillingAnchor}


def _sqlite_subscription(r: Any) -> SubscriptionRow:
    """A row of `_DUE_COLUMNS` as SQLite gives it."""
    day, moment = _read_date, _read_moment
    return SubscriptionRow(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        _ANCHORS[r[5]],
        day(r[6]),  # type: ignore[arg-type]  # never NULL
        day(r[7]),
        day(r[8]),
        moment(r[9]),
        r[10],
        r[11],
        day(r[12]),
        day(r[13]),
        day(r[14]),
        moment(r[15]),
        moment(r[16]),  # type: ignore[arg-type]  # never NULL
    )


@dataclass(frozen=True, slots=True)
class DueCustomer:
    """A customer of a batch, held until the batch's transaction ends."""

    id: int
    currency: str
    timezone: str
    credit_minor: int


@dataclass(frozen=True, slots=True)
class DueBatch:
    customers: dict[int, DueCustomer]
    subscriptions: list[SubscriptionRow]  # every due subscription of those customers
    waited: bool = False  # every candidate was another generator's: waited for it


class GenerationRepository(BillingBase[WriteConnection]):
    """Generation's reads and writes, in the caller's transaction."""

    async def _insert(
        self, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
    ) -> None:
        if not rows:
            return
        names = ", ".join(columns)
        if self.is_pg:
            arrays = ", ".join(f"${n}::{_pg_type(table, c)}[]" for n, c in enumerate(columns, 1))
            sql = f"INSERT INTO {table.name} ({names}) SELECT * FROM unnest({arrays})"  # noqa: S608
            await execute_arrays(self.conn, sql, [list(col) for col in zip(*rows, strict=True)])
            return
        marks = ", ".join("?" for _ in columns)
        await self.conn.exec_driver_sql(
            f"INSERT INTO {table.name} ({names}) VALUES ({marks})",  # noqa: S608
            sqlite_rows(table, columns, rows),
        )

    async def reserve_ids(self, table: Table, n: int) -> list[int]:
        """`n` new ids of `table`, ascending (see the module docstring)."""
        if n <= 0:
            return []
        if self.is_pg:
            result = await self.conn.exec_driver_sql(
                f"SELECT nextval(pg_get_serial_sequence('{table.name}', 'id')) "  # noqa: S608
                "FROM generate_series(1, $1)",
                (n,),
            )
            return sorted(int(r[0]) for r in result)
        top_sql = f"SELECT coalesce(max(id), 0) FROM {table.name}"  # noqa: S608
        result = await self.conn.exec_driver_sql(top_sql)
        top = int(result.scalar_one())
        return list(range(top + 1, top + 1 + n))

    async def due(
        self, now: datetime, limit: int, customer_id: int | None = None
    ) -> DueBatch | None:
        """Up to about `limit` due subscriptions' customers (or only `customer_id`), held,
        with every due subscription of theirs; None when nothing is due."""
        if not self.is_pg:
            return await self._due_sqlite(now, limit, customer_id)
        # plain SQL: SQLAlchemy compiled the IN list of a thousand ids anew each batch
        if customer_id is None:
            candidates = await self.conn.exec_driver_sql(
                "SELECT customer_id FROM subscriptions WHERE next_due_at IS NOT NULL "
                "AND next_due_at <= $1 ORDER BY next_due_at LIMIT $2",
                (now, limit),
            )
        else:
            candidates = await self.conn.exec_driver_sql(
                "SELECT customer_id FROM subscriptions WHERE next_due_at IS NOT NULL "
                "AND next_due_at <= $1 AND customer_id = $2 LIMIT 1",
                (now, customer_id),
            )
        wanted = sorted({int(r[0]) for r in candidates.all()})
        if not wanted:
            return None
        held = await self.conn.exec_driver_sql(
            "SELECT id, currency, timezone, credit_minor FROM customers "
            "WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE SKIP LOCKED",
            (wanted,),
        )
        rows: Sequence[Any] = held.all()
        if not rows:
            # Another generator holds them all: wait for it (its batch ends soon),
            # and let the caller begin again.
            await self.conn.execute(
                select(customers.c.id).where(customers.c.id == wanted[0]).with_for_update()
            )
            return DueBatch({}, [], waited=True)
        found = {r[0]: DueCustomer(r[0], r[1], r[2], r[3]) for r in rows}
        return DueBatch(found, await self._due_subscriptions(sorted(found), now))

    async def _due_subscriptions(
        self, customer_ids: list[int], now: datetime
    ) -> list[SubscriptionRow]:
        """The due subscriptions of `customer_ids` (held on PostgreSQL), by customer and id:
        plain SQL, the driver's rows decoded here (SQLAlchemy's result processing cost
        more than the query)."""
        if not customer_ids:
            return []
        base = (
            f"SELECT {_DUE_COLUMNS} FROM subscriptions AS s "  # noqa: S608
            "JOIN customers AS c ON c.id = s.customer_id WHERE "
        )
        order = " AND s.next_due_at IS NOT NULL ORDER BY s.customer_id, s.id"
        if self.is_pg:
            # from the ids, by the customer index (with statistics that know how many
            # are due: after a bulk load without them, the planner read every due row
            # per batch, 600 s for a million; `antaeus generate` and seeding ANALYZE)
            result = await self.conn.exec_driver_sql(
                f"SELECT {_DUE_COLUMNS} FROM unnest($1::bigint[]) AS w(id) "  # noqa: S608
                "JOIN subscriptions AS s ON s.customer_id = w.id "
                "JOIN customers AS c ON c.id = s.customer_id WHERE s.next_due_at <= $2"
                + order
                + " FOR UPDATE OF s",
                (customer_ids, now),
            )
            rows: Sequence[Any] = result.all()
            return [
                SubscriptionRow(r[0], r[1], r[2], r[3], r[4], _ANCHORS[r[5]], *r[6:]) for r in rows
            ]
        marks = ", ".join("?" for _ in customer_ids)
        result = await self.conn.exec_driver_sql(
            base + f"s.customer_id IN ({marks}) AND s.next_due_at <= ?" + order,
            (*customer_ids, sqlite_datetime(now)),
        )
        return [_sqlite_subscription(r) for r in result.all()]

    async def _due_sqlite(
        self, now: datetime, limit: int, customer_id: int | None = None
    ) -> DueBatch | None:
        """`due` on SQLite (one writer at a time: nothing to hold), in one statement."""
        one = "" if customer_id is None else "AND customer_id = ? "
        result = await self.conn.exec_driver_sql(
            f"SELECT {_DUE_COLUMNS}, c.currency, c.credit_minor "  # noqa: S608
            "FROM subscriptions AS s JOIN customers AS c ON c.id = s.customer_id "
            "WHERE s.customer_id IN (SELECT customer_id FROM subscriptions "
            f"WHERE next_due_at IS NOT NULL AND next_due_at <= ? {one}"
            "ORDER BY next_due_at LIMIT ?) "
            "AND s.next_due_at IS NOT NULL AND s.next_due_at <= ? ORDER BY s.customer_id, s.id",
            (
                sqlite_datetime(now),
                *(() if customer_id is None else (customer_id,)),
                limit,
                sqlite_datetime(now),
            ),
        )
        rows: Sequence[Any] = result.all()  # (iterating fetches row by row, at 10x the cost)
        if not rows:
            return None
        found: dict[int, DueCustomer] = {}
        for r in rows:
            if r[1] not in found:
                found[r[1]] = DueCustomer(r[1], r[17], r[2], int(r[18]))
        return DueBatch(found, [_sqlite_subscription(r) for r in rows])

    async def insert_invoices(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Rows of `INVOICE_COLUMNS`."""
        await self._insert(invoices, INVOICE_COLUMNS, rows)

    async def insert_lines(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Rows of `LINE_COLUMNS`."""
        await self._insert(invoice_lines, LINE_COLUMNS, rows)

    async def insert_credit_entries(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Rows of `CREDIT_COLUMNS`."""
        await self._insert(credit_entries, CREDIT_COLUMNS, rows)

    async def update_subscriptions(
        self, rows: Sequence[tuple[Any, ...]], columns: Sequence[str] = SUBSCRIPTION_COLUMNS
    ) -> None:
        """Rows of `columns` (`names` or a tail of it: the id last)."""
        if not rows:
            return
        names = tuple(columns)
        sets = names[:-1]
        if self.is_pg:
            arrays = ", ".join(
                f"${n}::{_pg_type(subscriptions, c)}[]" for n, c in enumerate(names, 1)
            )
            assignments = ", ".join(f"{c} = v.{c}" for c in sets)
            sql = (
                f"UPDATE subscriptions AS s SET {assignments} "  # noqa: S608
                f"FROM unnest({arrays}) AS v({', '.join(names)}) WHERE s.id = v.id"
            )
            await execute_arrays(self.conn, sql, [list(col) for col in zip(*rows, strict=True)])
            return
        assignments = ", ".join(f"{c} = ?" for c in sets)
        await self.conn.exec_driver_sql(
            f"UPDATE subscriptions SET {assignments} WHERE id = ?",  # noqa: S608
            sqlite_rows(subscriptions, names, rows),
        )

    async def move_subscriptions_on(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Rows of `MOVE_COLUMNS`: subscriptions whose plan, quantity and pending change
        stay as they are."""
        await self.update_subscriptions(rows, MOVE_COLUMNS)

    async def set_credit(self, balances: Mapping[int, int]) -> None:
        """Each customer's credit balance (minor units) as given."""
        rows = sorted(balances.items())
        if not rows:
            return
        if self.is_pg:
            await execute_arrays(
                self.conn,
                "UPDATE customers AS c SET credit_minor = v.credit FROM "
                "unnest($1::bigint[], $2::bigint[]) AS v(id, credit) WHERE c.id = v.id",
                [[r[0] for r in rows], [r[1] for r in rows]],
            )
            return
        await self.conn.exec_driver_sql(
            "UPDATE customers SET credit_minor = ? WHERE id = ?", [(c, i) for i, c in rows]
        )
