"""Rows written before scoped tokens: every token stays `write`, and every dashboard
session (no token hash kept) ends. On a fresh SQLite file and a fresh PostgreSQL
database, migrated up to the revision before, then to the head."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import text

from antaeus.api.app import create_app
from antaeus.clock import ManualClock
from antaeus.config import Settings
from antaeus.dashboard.sessions import hash_id
from antaeus.security import generate_token, hash_token
from antaeus.storage import migrate
from antaeus.storage.database import Database
from antaeus.storage.repositories.tokens import TokenRepository
from tests.conftest import NOW, PG_ENV

BEFORE = "0010"  # the revision before scoped tokens


def _dsn(url: str) -> str:
    return "postgresql://" + url.partition("://")[2]


@pytest.fixture(params=["sqlite", "postgres"])
async def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'before.db'}"
        return
    admin = os.environ.get(PG_ENV)
    if not admin:
        pytest.skip(f"{PG_ENV} is not set: PostgreSQL tests skipped")
    name = f"antaeus_scope_{os.getpid()}_{secrets.token_hex(3)}"
    conn = await asyncpg.connect(_dsn(admin))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield admin.rpartition("/")[0] + "/" + name
    finally:
        conn = await asyncpg.connect(_dsn(admin))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def test_tokens_and_sessions_from_before_the_upgrade(fresh_url: str) -> None:
    db = Database(fresh_url)
    token = generate_token()
    session_id = "a-session-id-from-before-the-upgrade"
    try:
        await migrate.upgrade(db, BEFORE)
        async with db.write() as conn:
            await conn.execute(
                text(
                    "INSERT INTO api_tokens (name, token_hash, created_at) "
                    "VALUES ('old', :hash, :now)"
                ),
                {"hash": hash_token(token), "now": NOW},
            )
            await conn.execute(
                text(
                    "INSERT INTO dashboard_sessions "
                    "(id_hash, token_name, csrf_token, created_at, expires_at) "
                    "VALUES (:id, 'old', :csrf, :now, :later)"
                ),
                {
                    "id": hash_id(session_id),
                    "csrf": "c" * 43,
                    "now": NOW,
                    "later": NOW.replace(year=NOW.year + 1),
                },
            )
        await migrate.upgrade(db)
        async with db.read() as conn:
            [record] = await TokenRepository(conn).all()
        assert (record.name, record.scope) == ("old", "write")

        settings = Settings(DATABASE_URL=fresh_url, API_TOKEN=None, TOKEN_CACHE_SECONDS=0)
        app = create_app(settings, clock=ManualClock(NOW), database=db)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="https://antaeus.test") as c,
        ):
            created = await c.post(
                "/rest/v1/customers",
                json={"currency": "EUR"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert created.status_code == 201, created.text
            c.cookies.set("antaeus_session", session_id, domain="antaeus.test")
            page = await c.get("/")
            assert page.status_code == 303
            assert page.headers["location"].startswith("/signin")
    finally:
        await db.dispose()
