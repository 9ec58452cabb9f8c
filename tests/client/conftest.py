"""A real `antaeus serve` per module and engine (SQLite, PostgreSQL), and clients of it.

The server runs as a subprocess exactly as a user starts it, in a fresh working
directory; a token is made with `antaeus token create` first. Webhooks may
point at this machine (`ANTAEUS_WEBHOOK_ALLOW_PRIVATE=true`): the tests receive
them on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from antaeus.client import AsyncClient, Client
from tests.cli.test_cli import PG_ENV, Cli, _clean_env, _pg_admin, _with_database, serving


@dataclass(frozen=True)
class Served:
    base_url: str
    token: str
    cli: Cli


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    cwd: Path = tmp_path_factory.mktemp("serve")
    extra = {"ANTAEUS_WEBHOOK_ALLOW_PRIVATE": "true", "ANTAEUS_RELAY_POLL_INTERVAL": "0.1"}
    admin_url = os.environ.get(PG_ENV)
    name = None
    if request.param == "sqlite":
        cli = Cli(cwd, _clean_env(**extra), f"sqlite:///{cwd / 'antaeus.db'}")
    else:
        if not admin_url:
            pytest.skip(f"{PG_ENV} is not set: PostgreSQL client tests skipped")
        name = f"antaeus_client_{os.getpid()}_{secrets.token_hex(3)}"
        asyncio.run(_pg_admin(admin_url, f'CREATE DATABASE "{name}"'))
        url = _with_database(admin_url, name)
        cli = Cli(cwd, _clean_env(ANTAEUS_DATABASE_URL=url, **extra), url)
    try:
        token = cli.ok("token", "create", "--name", "client").stdout.strip()
        with serving(cli) as server:
            yield Served(server.base_url, token, cli)
    finally:
        if name is not None and admin_url:
            asyncio.run(_pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def api(served: Served) -> Iterator[Client]:
    with Client(base_url=served.base_url, token=served.token, retry_backoff=0.05) as client:
        yield client


@pytest.fixture
async def aapi(served: Served) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(
        base_url=served.base_url, token=served.token, retry_backoff=0.05
    ) as client:
        yield client
