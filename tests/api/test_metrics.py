"""/metrics on the API port needs the API token unless ANTAEUS_METRICS_PUBLIC=true."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from antaeus.api.app import create_app
from antaeus.clock import ManualClock
from antaeus.config import Settings
from antaeus.storage.database import Database

BASE = "http://antaeus.test"


def _assert_metrics(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE" in response.text


async def test_metrics_without_a_token_is_401(anon: httpx.AsyncClient) -> None:
    response = await anon.get("/metrics")
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "unauthorized"
    assert "# TYPE" not in response.text


@pytest.mark.parametrize("authorization", ["Bearer ant_wrong", "Basic dGVzdDp0ZXN0", "Bearer"])
async def test_metrics_with_a_wrong_token_is_401(app: FastAPI, authorization: str) -> None:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE, headers={"Authorization": authorization}
    ) as c:
        response = await c.get("/metrics")
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "unauthorized"


async def test_metrics_with_the_token_is_200(client: httpx.AsyncClient) -> None:
    _assert_metrics(await client.get("/metrics"))


@pytest.fixture
async def public_app(
    database_url: str, database: Database, clock: ManualClock
) -> AsyncIterator[FastAPI]:
    settings = Settings(DATABASE_URL=database_url, API_TOKEN=None, METRICS_PUBLIC=True)
    application = create_app(settings, clock=clock, database=database)
    async with application.router.lifespan_context(application):
        yield application


async def test_public_metrics_need_no_token(public_app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=public_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        _assert_metrics(await c.get("/metrics"))
        # only /metrics is public: the API still needs its token
        assert (await c.get("/rest/v1/customers")).status_code == 401


def test_metrics_public_is_off_by_default() -> None:
    assert Settings(DATABASE_URL="sqlite:///unused.db").METRICS_PUBLIC is False
