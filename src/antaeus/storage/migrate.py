"""Migrations shipped inside the package, so an installed Antaeus can migrate itself."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from antaeus.storage.database import Database


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "antaeus.storage:migrations")
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def is_known(revision: str | None) -> bool:
    """Whether this installation's migrations know `revision` (None: an empty database)."""
    if revision is None:
        return True
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except Exception:  # alembic's errors for an unknown or malformed revision id
        return False


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(db: Database) -> str | None:
    async with db.read() as conn:
        return await conn.run_sync(_current)


async def is_up_to_date(db: Database) -> bool:
    return await current_revision(db) == head_revision()


@contextlib.asynccontextmanager
async def migration_connection(db: Database) -> AsyncIterator[AsyncConnection]:
    """The connection migrations run on.

    PostgreSQL: no transaction around the run; env.py opens one per migration,
    which a migration may step out of (CREATE INDEX CONCURRENTLY cannot run in a
    transaction). SQLite: one write transaction (BEGIN IMMEDIATE) for the run.
    """
    if db.dialect == "postgresql":
        async with db.engine.connect() as conn:
            yield conn
    else:
        async with db.write() as conn:
            yield conn


async def upgrade(db: Database, revision: str = "head") -> None:
    """Migrate the database to `revision` (default: the newest)."""

    def _upgrade(connection: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    async with migration_connection(db) as conn:
        await conn.run_sync(_upgrade)
