"""Engine and transactions.

Transactions begin and end at the edges (a request, a worker loop, a CLI
command) through `Database.read()` and `Database.write()`. On SQLite, writers
begin with `BEGIN IMMEDIATE` so that a transaction which reads and then writes
waits its turn instead of failing with "database is locked"; readers use a
plain deferred `BEGIN` and, thanks to WAL, never block writers.

Reads and writes get distinct connection types: `read()` yields a
`ReadConnection`, `write()` a `WriteConnection`. Both are `typing.NewType`s of
`AsyncConnection` (no wrapper, nothing at run time), and `WriteConnection` is a
`ReadConnection`, so a write transaction can do everything a read one can but
not the reverse. Repository methods that read take (or hold) a
`ReadConnection`; methods that write (insert, update, delete: `create`,
`add_events`, `claim`, `record`, ...) require a `WriteConnection`. A repository
that does both is generic in its connection (`BillingRepository(conn)` is a
`BillingRepository[ReadConnection]` inside `db.read()`), and its writing
methods annotate `self` with `[WriteConnection]`: so `mypy --strict` refuses a
write inside a `db.read()` block ("Invalid self argument
...[ReadConnection]..."). The rule holds at the repositories' methods; a raw
`conn.execute(insert(...))` on a read connection is not caught by the types,
which is one more reason all SQL lives in the repositories
(tests/storage/test_connection_types.py holds mypy to the rule).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, NewType, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from antaeus.config import Settings, normalize_database_url

#: A connection inside `Database.read()`: repositories only read through it.
ReadConnection = NewType("ReadConnection", AsyncConnection)
#: A connection inside `Database.write()`: accepted wherever a `ReadConnection` is.
WriteConnection = NewType("WriteConnection", ReadConnection)
#: The connection a repository that both reads and writes was built with.
Conn = TypeVar("Conn", bound=ReadConnection)

_WRITE_OPTION = "antaeus_write"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _install_sqlite_hooks(engine: AsyncEngine, synchronous: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from the driver: we emit BEGIN ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        writer = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")


class Database:
    """One engine for the process, with read and write transactions."""

    def __init__(self, url: str, *, pool_size: int = 10, sqlite_synchronous: str = "FULL") -> None:
        self.url = normalize_database_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        else:
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = pool_size
            kwargs["pool_pre_ping"] = True
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            _install_sqlite_hooks(self.engine, sqlite_synchronous)
        self._writer = self.engine.execution_options(**{_WRITE_OPTION: True})
        # SQLite has one writer at a time. Writers of this process queue here and
        # are woken the moment the lock is free, rather than sleeping in SQLite's
        # busy handler (which backs off by up to 100 ms a try); writers of other
        # processes still wait in the busy handler.
        self._sqlite_writers = asyncio.Lock() if self.is_sqlite else None

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(
            settings.DATABASE_URL,
            pool_size=settings.DB_POOL_SIZE,
            sqlite_synchronous=settings.SQLITE_SYNCHRONOUS,
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[ReadConnection]:
        """A transaction for reading (it writes nothing, so ending it is cheap)."""
        async with self.engine.connect() as conn, conn.begin():
            yield ReadConnection(conn)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[WriteConnection]:
        """A write transaction: committed on success, rolled back on any error."""
        queue = self._sqlite_writers or contextlib.nullcontext()
        async with queue, self._writer.connect() as conn, conn.begin():
            yield WriteConnection(ReadConnection(conn))

    async def dispose(self) -> None:
        await self.engine.dispose()
