"""Migration 0015 (plans, subscriptions): on a database with rows from before, on a fresh
SQLite file and a fresh PostgreSQL database; the migrated tables are those of
storage/tables.py, and the migration goes down again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from antaeus.api.app import create_app
from antaeus.clock import ManualClock
from antaeus.config import Settings
from antaeus.security import generate_token, hash_token
from antaeus.storage import migrate
from antaeus.storage.database import Database
from antaeus.storage.tables import metadata
from tests.conftest import NOW
from tests.storage.test_token_scope_migration import fresh_url  # noqa: F401  (a fixture)

BEFORE = "0014"
NEW_TABLES = {"plans", "subscriptions"}


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection)

    def ours(diff: Any) -> Iterator[Any]:
        if isinstance(diff, list):  # column modifications come as lists
            for d in diff:
                yield from ours(d)
            return
        for part in diff[1:]:
            name = getattr(part, "name", None)
            table = getattr(part, "table", None)
            if name in NEW_TABLES or getattr(table, "name", None) in NEW_TABLES:
                yield diff
                return
            if isinstance(part, str) and part in NEW_TABLES:
                yield diff
                return

    return [d for diff in compare_metadata(context, metadata) for d in ours(diff)]


def _downgrade(connection: Connection) -> None:
    cfg = migrate.alembic_config()
    cfg.attributes["connection"] = connection
    command.downgrade(cfg, BEFORE)


async def test_upgrade_with_rows_from_before_then_down_again(
    fresh_url: str,  # noqa: F811
) -> None:
    db = Database(fresh_url)
    token = generate_token()
    try:
        await migrate.upgrade(db, BEFORE)
        async with db.write() as conn:
            await conn.execute(
                text(
                    "INSERT INTO api_tokens (name, token_hash, created_at, scope) "
                    "VALUES ('old', :hash, :now, 'write')"
                ),
                {"hash": hash_token(token), "now": NOW},
            )
            await conn.execute(
                text(
                    "INSERT INTO customers (currency, timezone, created_at) "
                    "VALUES ('EUR', 'Europe/Copenhagen', :now)"
                ),
                {"now": NOW},
            )
        await migrate.upgrade(db)
        async with db.read() as conn:
            assert await conn.run_sync(_differences) == []
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert names >= NEW_TABLES

        settings = Settings(DATABASE_URL=fresh_url, API_TOKEN=None, TOKEN_CACHE_SECONDS=0)
        app = create_app(settings, clock=ManualClock(NOW), database=db)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://antaeus.test") as c,
        ):
            plan = await c.post(
                "/rest/v1/plans",
                json={
                    "code": "pro",
                    "name": "Pro",
                    "amount": {"value": "30.00", "currency": "EUR"},
                    "interval": "month",
                },
                headers=headers,
            )
            assert plan.status_code == 201, plan.text
            sub = await c.post(
                "/rest/v1/subscriptions",
                json={"customerId": 1, "planId": plan.json()["id"]},
                headers=headers,
            )
            assert sub.status_code == 201, sub.text
            assert sub.json()["currentPeriodStart"] == "2026-11-22"

        async with migrate.migration_connection(db) as conn:
            await conn.run_sync(_downgrade)
        async with db.read() as conn:
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            customers = (await conn.execute(text("SELECT count(*) FROM customers"))).scalar()
        assert not names & NEW_TABLES
        assert customers == 1
        assert await migrate.current_revision(db) == BEFORE
    finally:
        await db.dispose()
