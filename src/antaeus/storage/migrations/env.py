"""Alembic environment: runs the migrations on a connection handed in by `antaeus.storage.migrate`.

Run directly by the `alembic` command (developers), it builds its own engine
from the settings.
"""

from __future__ import annotations

import asyncio
import time

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from antaeus.config import get_settings
from antaeus.storage.database import Database
from antaeus.storage.migrate import migration_connection
from antaeus.storage.tables import metadata

#: Two processes starting on a fresh PostgreSQL database migrate one at a time.
MIGRATION_LOCK_ID = 7_000_001
LOCK_POLL_SECONDS = 0.2


def _lock(connection: Connection) -> None:
    """Take the migration lock for the session, polling outside any transaction.

    Not a transaction-level lock (a migration commits its transaction to build
    an index CONCURRENTLY), and not a blocking wait: a process blocked in
    `pg_advisory_lock` holds a snapshot, and CREATE INDEX CONCURRENTLY in the
    process holding the lock waits for every older snapshot to end (a deadlock).
    """
    while True:
        got = connection.scalar(text("SELECT pg_try_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        connection.commit()
        if got:
            return
        time.sleep(LOCK_POLL_SECONDS)


def _unlock(connection: Connection) -> None:
    if connection.in_transaction():
        connection.rollback()  # a failed migration's transaction
    connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
    connection.commit()


def _run(connection: Connection) -> None:
    """PostgreSQL: one transaction per migration, under a session lock; SQLite: the caller's."""
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        transaction_per_migration=True,
    )
    if connection.dialect.name != "postgresql":
        with context.begin_transaction():
            context.run_migrations()
        return
    _lock(connection)
    try:
        with context.begin_transaction():
            context.run_migrations()
    finally:
        _unlock(connection)


async def _run_own_engine() -> None:
    db = Database.from_settings(get_settings())
    try:
        async with migration_connection(db) as conn:
            await conn.run_sync(_run)
    finally:
        await db.dispose()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_run_own_engine())
