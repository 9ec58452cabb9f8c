"""Executemany at the driver's speed for the charge flow's hot statements.

SQLAlchemy processes every parameter of every row (type processors, dict
building); on batches of a thousand rows that costs more than the statement
itself. `Batch` compiles its statement once per dialect and hands the driver
plain tuples: datetimes as SQLite's stored text (naive UTC, fixed format), or
as they are for asyncpg. Values must be ready for the column (ints, strings,
None, aware datetimes).

On PostgreSQL a batch is better still as one statement: `execute_arrays` sends
each column's values as one typed array (`unnest($1::bigint[], ...)`), so the
server runs one statement per batch instead of one per row.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import types as sqltypes
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import Compiled

from antaeus.storage.database import WriteConnection

_SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def sqlite_datetime(value: datetime) -> str:
    """The text `UTCDateTime` stores on SQLite (`_SQLITE_FORMAT`), at a third of strftime's cost."""
    if value.tzinfo is UTC:
        return _utc_text(value)
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return _utc_text(value.astimezone(UTC))


@functools.lru_cache(maxsize=4096)
def _utc_text(value: datetime) -> str:
    """Cached: a batch's rows mostly share their moments (its `now`, the same next
    attempt), and a cached one costs a tenth. UTC only: two equal datetimes of one
    zone are then the same instant (in a zone with folds they need not be)."""
    return value.isoformat(" ", "microseconds")[:26]  # without the "+00:00"


def _sqlite_value(value: Any) -> Any:
    """A value of a column whose type is not known here, as SQLite is given it."""
    return sqlite_datetime(value) if isinstance(value, datetime) else value


def _sqlite_moment(value: datetime | None) -> str | None:
    return None if value is None else sqlite_datetime(value)


def sqlite_moment(value: str | None) -> datetime | None:
    """A moment read back from SQLite's stored text (`_SQLITE_FORMAT`, naive UTC), aware."""
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


async def execute_arrays(conn: WriteConnection, sql: str, params: Sequence[Any]) -> int:
    """Run one PostgreSQL statement over a whole batch, given as arrays (one per column,
    `$n::type[]`, NULL elements allowed) and shared scalars; answers the rows it changed.

    Shared datetimes must be aware (the arrays' are the caller's to check, as `Batch`'s).
    """
    for value in params:
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
    result = await conn.exec_driver_sql(sql, tuple(params))
    return int(result.rowcount)


_Rower = Callable[[Mapping[str, Any], Sequence[Any]], tuple[Any, ...]]


class Batch:
    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[str, tuple[str, list[str], dict[str, Any], set[str]]] = {}
        self._rowers: dict[tuple[str, frozenset[str]], tuple[_Rower, list[str]]] = {}

    def _compile(self, dialect: Dialect) -> tuple[str, list[str], dict[str, Any], set[str]]:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled: Compiled = self.statement.compile(dialect=dialect)
            order = list(getattr(compiled, "positiontup", None) or [])
            binds = getattr(compiled, "binds", {})
            constants = {
                k: v for k, v in compiled.params.items() if k in binds and not binds[k].required
            }
            # parameters of a date-time column (the others are never given a datetime)
            moments = {
                k for k in order if k in binds and binds[k].type._type_affinity is sqltypes.DateTime
            }
            untyped = {k for k in order if k not in binds or binds[k].type._isnull}
            found = (str(compiled), order, constants, moments - untyped)
            self._compiled[dialect.name] = found
        return found

    def _rower(self, dialect: Dialect, names: frozenset[str]) -> tuple[_Rower, list[str]]:
        """A function making one row's parameter tuple from its mapping and the shared
        values, written once per dialect and set of per-row names (at the speed of a
        tuple display, not a loop per value); and the names of the shared values."""
        key = (dialect.name, names)
        found = self._rowers.get(key)
        if found is None:
            _sql, order, _constants, moments = self._compile(dialect)
            sqlite = dialect.name == "sqlite"
            shared = [k for k in order if k not in names]
            parts = []
            for k in order:
                if k not in names:
                    parts.append(f"s[{shared.index(k)}]")
                elif sqlite and k in moments:
                    parts.append(f"m(r[{k!r}])")
                elif sqlite:
                    parts.append(f"v(r[{k!r}])")
                else:
                    parts.append(f"r[{k!r}]")
            source = f"lambda r, s: ({', '.join(parts)},)"
            rower = eval(source, {"m": _sqlite_moment, "v": _sqlite_value})  # noqa: S307
            found = self._rowers[key] = (rower, shared)
        return found

    async def execute(self, conn: WriteConnection, values: Mapping[str, Any]) -> Sequence[Any]:
        """Run the statement once, with `values` for its parameters (else their literal
        values). The rows come back as the driver gives them: no column type processes
        them (SQLite's datetimes are text, see `sqlite_moment`; asyncpg's are aware UTC).
        """
        sql, _order, constants, _moments = self._compile(conn.dialect)
        rower, names = self._rower(conn.dialect, frozenset(values))
        common = [constants[k] for k in names]
        if conn.dialect.name == "sqlite":
            common = [_sqlite_value(v) for v in common]
        return (await conn.exec_driver_sql(sql, rower(values, common))).all()

    async def executemany(
        self,
        conn: WriteConnection,
        rows: Sequence[Mapping[str, Any]],
        shared: Mapping[str, Any] | None = None,
    ) -> int:
        """Run the statement once per row; a name missing from a row takes its value in
        `shared` (the same for every row), else the statement's literal value. Every
        row must have the same names.

        Answers the rows affected when the driver reports it (SQLite), else -1.
        """
        if not rows:
            return 0
        sql, _order, constants, _moments = self._compile(conn.dialect)
        rower, names = self._rower(conn.dialect, frozenset(rows[0]))
        values = {**constants, **(shared or {})}
        common = [values[k] for k in names]
        if conn.dialect.name == "sqlite":
            common = [_sqlite_value(v) for v in common]
        params = [rower(row, common) for row in rows]
        result = await conn.exec_driver_sql(sql, params)
        return int(result.rowcount) if result.rowcount is not None else -1
