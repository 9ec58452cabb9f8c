"""Alembic environment: runs the migrations on a connection handed in by `antaeus.storage.migrate`.

Run directly by the `alembic` command (developers), it builds its own engine
from the settings.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from antaeus.config import get_settings
from antaeus.storage.database import Database
from antaeus.storage.tables import metadata

#: Two processes starting on a fresh PostgreSQL database migrate one at a time.
MIGRATION_LOCK_ID = 7_000_001


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        context.run_migrations()


async def _run_own_engine() -> None:
    db = Database.from_settings(get_settings())
    try:
        async with db.write() as conn:
            await conn.run_sync(_run)
    finally:
        await db.dispose()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_run_own_engine())
