"""Shared fixtures: real SQLite files and a real PostgreSQL database, never mocks.

Tests that take the `database` fixture run twice, once per backend. The
PostgreSQL run needs `ANTAEUS_TEST_POSTGRES_URL` (CI sets it); without it those
tests are skipped with that reason. Each test starts on empty tables.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from antaeus.api.app import create_app
from antaeus.clock import ManualClock
from antaeus.config import Settings
from antaeus.security import generate_token, hash_token
from antaeus.storage import migrate
from antaeus.storage.database import Database
from antaeus.storage.repositories.tokens import TokenRepository
from antaeus.storage.tables import metadata

PG_ENV = "ANTAEUS_TEST_POSTGRES_URL"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _asyncpg_dsn(url: str) -> str:
    _scheme, _, rest = url.partition("://")
    return f"postgresql://{rest}"


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated, dropped at the end."""
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set: PostgreSQL tests skipped")
    name = f"antaeus_test_{os.getpid()}_{secrets.token_hex(3)}"

    async def create() -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(url))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        db = Database(_with_database(url, name))
        try:
            await migrate.upgrade(db)
        finally:
            await db.dispose()

    async def drop() -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(url))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(create())
    yield _with_database(url, name)
    asyncio.run(drop())


_KEEP = {"installation", "alembic_version", "charging_state"}


async def _empty_tables(db: Database) -> None:
    names = [t.name for t in reversed(metadata.sorted_tables) if t.name not in _KEEP]
    async with db.write() as conn:
        if db.dialect == "postgresql":
            await conn.execute(text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE"))
        else:
            for name in names:
                await conn.execute(text(f"DELETE FROM {name}"))
        await conn.execute(
            text("UPDATE charging_state SET paused_reason = NULL, paused_since = NULL")
        )


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'antaeus.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    if db.is_sqlite:
        await migrate.upgrade(db)
    else:
        await _empty_tables(db)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(DATABASE_URL=database_url, API_TOKEN=None, TOKEN_CACHE_SECONDS=0)


@pytest.fixture
async def app(settings: Settings, database: Database, clock: ManualClock) -> AsyncIterator[FastAPI]:
    application = create_app(settings, clock=clock, database=database)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def token(database: Database) -> str:
    value = generate_token()
    async with database.write() as conn:
        await TokenRepository(conn).create("tester", hash_token(value), NOW)
    return value


@pytest.fixture
async def client(app: FastAPI, token: str) -> AsyncIterator[httpx.AsyncClient]:
    """An authenticated client talking to the real app in-process."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://antaeus.test",
        headers={"Authorization": f"Bearer {token}"},
    ) as c:
        yield c


@pytest.fixture
async def anon(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client without a token."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://antaeus.test") as c:
        yield c


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say, in one line, how many tests did not run for want of PostgreSQL."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if PG_ENV in str(r.longrepr)]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} PostgreSQL test{'s' if len(skipped) != 1 else ''} skipped: "
            f"{PG_ENV} is not set "
            f"(e.g. {PG_ENV}=postgresql://postgres@127.0.0.1:5432/test)",
            yellow=True,
            bold=True,
        )
