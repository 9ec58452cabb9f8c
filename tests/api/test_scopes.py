"""Scoped tokens on the API: a `read` token reads everything and writes nothing.

The refusal is by HTTP method, for every route under /rest (any method but GET,
HEAD and OPTIONS is a write), before the body is read or validated: the walk
below goes over the app's own route table, so a route added later is covered
without anyone listing it here.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import SecretStr
from starlette.routing import BaseRoute

from antaeus.api.app import create_app
from antaeus.clock import ManualClock
from antaeus.config import Settings
from antaeus.security import generate_token, hash_token
from antaeus.storage.database import Database
from antaeus.storage.repositories.tokens import TokenRepository
from tests.conftest import NOW

BASE = "http://antaeus.test"
SAFE = {"GET", "HEAD", "OPTIONS"}
PARAM = re.compile(r"\{[^}]+\}")


@pytest.fixture
async def read_token(database: Database) -> str:
    value = generate_token()
    async with database.write() as conn:
        await TokenRepository(conn).create("reader", hash_token(value), NOW, scope="read")
    return value


@asynccontextmanager
async def _client(app: FastAPI, token: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE, headers={"Authorization": f"Bearer {token}"}
    ) as c:
        yield c


@pytest.fixture
async def reader(app: FastAPI, read_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(app, read_token) as c:
        yield c


def _routes(routes: list[BaseRoute]) -> list[APIRoute]:
    """Every API route, those of included routers too (FastAPI keeps them in the router)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        inner = getattr(route, "original_router", None) or getattr(route, "router", None)
        if inner is not None and inner is not route:
            found.extend(_routes(list(getattr(inner, "routes", []))))
    return found


def _write_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path with every parameter 1) of every non-GET route under /rest: the route
    table's own, and the OpenAPI schema's (whichever way FastAPI keeps included routers)."""
    found: set[tuple[str, str]] = set()
    for route in _routes(list(app.routes)):
        if route.path.startswith("/rest/"):
            found.update((m, PARAM.sub("1", route.path)) for m in route.methods - SAFE)
    for path, operations in app.openapi()["paths"].items():
        if path.startswith("/rest/"):
            found.update(
                (m.upper(), PARAM.sub("1", path)) for m in operations if m.upper() not in SAFE
            )
    return sorted(found)


async def _snapshot(client: httpx.AsyncClient) -> list[object]:
    """What a write could have changed that a reader can see."""
    paths = ["/rest/v1/customers", "/rest/v1/invoices", "/rest/v1/webhooks", "/rest/v1/events"]
    seen: list[object] = []
    for path in paths:
        response = await client.get(path, params={"limit": 1000})
        assert response.status_code == 200, (path, response.text)
        seen.append(response.json())
    return seen


def _assert_insufficient_scope(response: httpx.Response, what: str) -> None:
    assert response.status_code == 403, (what, response.status_code, response.text)
    body = response.json()
    assert body["error"] == "insufficient_scope", (what, body)
    assert "read" in body["message"], body


async def test_a_read_token_is_refused_on_every_write_route_before_its_body(
    app: FastAPI, client: httpx.AsyncClient, reader: httpx.AsyncClient
) -> None:
    customer = await client.post("/rest/v1/customers", json={"currency": "EUR"})
    assert customer.status_code == 201
    invoice = await client.post(
        "/rest/v1/invoices",
        json={"customerId": 1, "amount": {"value": "1.00", "currency": "EUR"}},
    )
    assert invoice.status_code == 201, invoice.text
    routes = _write_routes(app)
    # the walk is not empty: it holds at least the write routes known today
    for known in [
        ("POST", "/rest/v1/customers"),
        ("PATCH", "/rest/v1/customers/1"),
        ("POST", "/rest/v1/invoices"),
        ("POST", "/rest/v1/invoices/1/void"),
        ("POST", "/rest/v1/billing"),
        ("POST", "/rest/v1/webhooks"),
        ("DELETE", "/rest/v1/webhooks/1"),
    ]:
        assert known in routes, (known, routes)
    before = await _snapshot(reader)
    for method, path in routes:
        # an invalid body: a check after the body would answer 400 or 422 instead
        response = await reader.request(
            method,
            path,
            content=b'{"not json',
            headers={"content-type": "application/json", "Idempotency-Key": "scope-walk"},
        )
        _assert_insufficient_scope(response, f"{method} {path}")
    assert await _snapshot(reader) == before, "a refused request changed nothing"
    for method, path in routes:
        # the same requests with a write token are not refused for their scope
        control = await client.request(
            method, path, content=b'{"not json', headers={"content-type": "application/json"}
        )
        assert control.status_code != 403, (method, path, control.text)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_a_write_method_is_refused_even_where_no_route_is_yet(
    reader: httpx.AsyncClient, method: str
) -> None:
    response = await reader.request(method, "/rest/v1/some-route-added-later", json={})
    _assert_insufficient_scope(response, method)


async def test_a_read_tokens_write_is_refused_whatever_its_body_size(
    reader: httpx.AsyncClient,
) -> None:
    big = b'{"currency": "EUR", "x": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    response = await reader.post(
        "/rest/v1/customers", content=big, headers={"content-type": "application/json"}
    )
    _assert_insufficient_scope(response, "5 MiB")


async def test_a_read_token_reads_everything(
    client: httpx.AsyncClient, reader: httpx.AsyncClient
) -> None:
    created = await client.post("/rest/v1/customers", json={"currency": "EUR"})
    assert created.status_code == 201
    for path in [
        "/rest/v1/customers",
        "/rest/v1/customers/1",
        "/rest/v1/invoices",
        "/rest/v1/events",
        "/rest/v1/webhooks",
        "/rest/v1/status",
        "/rest/v1/billing/runs",
        "/metrics",
    ]:
        response = await reader.get(path)
        assert response.status_code in (200, 404), (path, response.text)
        assert response.status_code != 404 or path == "/rest/v1/billing/runs", path
        assert (await reader.head(path)).status_code != 403, path


async def test_an_unknown_token_is_still_401_on_a_write(anon: httpx.AsyncClient) -> None:
    response = await anon.post("/rest/v1/customers", content=b"{", headers={"x": "y"})
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


async def test_status_shows_the_callers_own_token(
    client: httpx.AsyncClient, reader: httpx.AsyncClient
) -> None:
    mine = (await reader.get("/rest/v1/status")).json()
    assert mine["token"] == {"name": "reader", "scope": "read"}
    theirs = (await client.get("/rest/v1/status")).json()
    assert theirs["token"] == {"name": "tester", "scope": "write"}


async def test_the_environments_token_is_write(
    database_url: str, database: Database, clock: ManualClock
) -> None:
    env_token = generate_token()
    settings = Settings(
        DATABASE_URL=database_url, API_TOKEN=SecretStr(env_token), TOKEN_CACHE_SECONDS=0
    )
    application = create_app(settings, clock=clock, database=database)
    async with (
        application.router.lifespan_context(application),
        _client(application, env_token) as c,
    ):
        assert (await c.get("/rest/v1/status")).json()["token"] == {
            "name": "env",
            "scope": "write",
        }
        assert (await c.post("/rest/v1/customers", json={"currency": "EUR"})).status_code == 201


async def test_tokens_are_write_unless_created_read(database: Database) -> None:
    async with database.write() as conn:
        repo = TokenRepository(conn)
        await repo.create("plain", hash_token(generate_token()), NOW)
        await repo.create("viewer", hash_token(generate_token()), NOW, scope="read")
    async with database.read() as conn:
        records = {r.name: r.scope for r in await TokenRepository(conn).all()}
    assert records == {"plain": "write", "viewer": "read"}


async def test_a_read_token_is_refused_in_the_openapi_description(anon: httpx.AsyncClient) -> None:
    schema = (await anon.get("/openapi.json")).json()
    post = schema["paths"]["/rest/v1/customers"]["post"]
    assert "403" in post["responses"], post["responses"].keys()
