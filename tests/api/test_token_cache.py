"""The token cache: at most one reload of the tokens per ANTAEUS_TOKEN_CACHE_SECONDS,
whatever the load, and wrong tokens cost no database work beyond that."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from antaeus.api import auth
from antaeus.api.app import create_app
from antaeus.clock import ManualClock
from antaeus.config import Settings
from antaeus.storage.database import Database
from antaeus.storage.repositories.tokens import TokenRepository

BASE = "http://antaeus.test"
CROWD = 200


class FakeTime:
    """Stands in for the `time` module inside antaeus.api.auth only (asyncio keeps its clock)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def reloads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the reads of the token table; each takes a little while, as under load."""
    calls: list[int] = []
    original = TokenRepository.active_hashes

    async def counted(self: TokenRepository) -> dict[str, str]:
        calls.append(1)
        await asyncio.sleep(0.01)
        return await original(self)

    monkeypatch.setattr(TokenRepository, "active_hashes", counted)
    return calls


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(auth, "time", fake)
    return fake


async def _app(
    database_url: str, database: Database, clock: ManualClock, ttl: float
) -> AsyncIterator[FastAPI]:
    settings = Settings(DATABASE_URL=database_url, API_TOKEN=None, TOKEN_CACHE_SECONDS=ttl)
    application = create_app(settings, clock=clock, database=database)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def cached_app(
    database_url: str, database: Database, clock: ManualClock
) -> AsyncIterator[FastAPI]:
    async for application in _app(database_url, database, clock, 5):
        yield application


async def _crowd(app: FastAPI, token: str, wrong: int = CROWD) -> tuple[list[int], int]:
    """`wrong` requests with wrong tokens and one with `token`, all at once."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:

        async def get(value: str) -> int:
            response = await c.get(
                "/rest/v1/customers", headers={"Authorization": f"Bearer {value}"}
            )
            return response.status_code

        statuses: list[Any] = await asyncio.gather(
            *(get(f"ant_wrong_{i}") for i in range(wrong)), get(token)
        )
    return statuses[:-1], statuses[-1]


async def test_a_crowd_of_wrong_tokens_on_a_cold_cache_reloads_once(
    cached_app: FastAPI, token: str, reloads: list[int]
) -> None:
    wrong, valid = await _crowd(cached_app, token)
    assert set(wrong) == {401}
    assert valid == 200
    assert len(reloads) == 1


async def test_wrong_tokens_on_a_fresh_cache_cost_no_database_work(
    cached_app: FastAPI, token: str, reloads: list[int], fake_time: FakeTime
) -> None:
    _wrong, valid = await _crowd(cached_app, token, wrong=0)
    assert valid == 200
    assert len(reloads) == 1
    fake_time.now += 4.9  # older than a second, younger than ANTAEUS_TOKEN_CACHE_SECONDS
    wrong, valid = await _crowd(cached_app, token)
    assert set(wrong) == {401}
    assert valid == 200
    assert len(reloads) == 1


async def test_a_stale_cache_is_reloaded_once_whatever_the_crowd(
    cached_app: FastAPI, token: str, reloads: list[int], fake_time: FakeTime
) -> None:
    await _crowd(cached_app, token, wrong=0)
    for expected in (2, 3):
        fake_time.now += 5.1
        wrong, valid = await _crowd(cached_app, token)
        assert set(wrong) == {401}
        assert valid == 200
        assert len(reloads) == expected


async def test_without_a_cache_a_crowd_still_shares_its_reloads(
    database_url: str, database: Database, clock: ManualClock, token: str, reloads: list[int]
) -> None:
    async for application in _app(database_url, database, clock, 0):
        wrong, valid = await _crowd(application, token)
        assert set(wrong) == {401}
        assert valid == 200
        # One reload began before most requests arrived; the one after it serves them all.
        assert len(reloads) <= 2
