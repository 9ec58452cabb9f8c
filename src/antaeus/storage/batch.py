"""Executemany at the driver's speed for the charge flow's hot statements.

SQLAlchemy processes every parameter of every row (type processors, dict
building); on batches of a thousand rows that costs more than the statement
itself. `Batch` compiles its statement once per dialect and hands the driver
plain tuples: datetimes as SQLite's stored text (naive UTC, fixed format), or
as they are for asyncpg. Values must be ready for the column (ints, strings,
None, aware datetimes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import Compiled

from antaeus.storage.database import WriteConnection

_SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def sqlite_datetime(value: datetime) -> str:
    """The text `UTCDateTime` stores on SQLite (`_SQLITE_FORMAT`), at a third of strftime's cost."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]  # without the "+00:00"


class Batch:
    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[str, tuple[str, list[str], dict[str, Any]]] = {}

    def _compile(self, dialect: Dialect) -> tuple[str, list[str], dict[str, Any]]:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled: Compiled = self.statement.compile(dialect=dialect)
            order = list(getattr(compiled, "positiontup", None) or [])
            binds = getattr(compiled, "binds", {})
            constants = {
                k: v for k, v in compiled.params.items() if k in binds and not binds[k].required
            }
            found = self._compiled[dialect.name] = (str(compiled), order, constants)
        return found

    async def executemany(self, conn: WriteConnection, rows: Sequence[Mapping[str, Any]]) -> int:
        """Run the statement once per row; a name missing from a row takes the literal value.

        Answers the rows affected when the driver reports it (SQLite), else -1.
        """
        if not rows:
            return 0
        sql, order, constants = self._compile(conn.dialect)
        sqlite = conn.dialect.name == "sqlite"
        params = []
        for row in rows:
            values = [row[k] if k in row else constants[k] for k in order]
            if sqlite:
                values = [sqlite_datetime(v) if isinstance(v, datetime) else v for v in values]
            params.append(tuple(values))
        result = await conn.exec_driver_sql(sql, params)
        return int(result.rowcount) if result.rowcount is not None else -1
