"""Bearer tokens on every /rest/v1 route: stored (hashed) tokens, revocation, the env token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from antaeus.api.app import create_app
from antaeus.clock import ManualClock
from antaeus.config import Settings
from antaeus.security import generate_token, hash_token
from antaeus.storage.database import Database
from antaeus.storage.repositories.tokens import TokenRepository

BASE = "http://antaeus.test"

ROUTES: list[tuple[str, str, dict[str, object] | None]] = [
    ("GET", "/rest/v1/invoices", None),
    ("GET", "/rest/v1/invoices/1", None),
    ("GET", "/rest/v1/customers", None),
    ("GET", "/rest/v1/customers/1", None),
    ("POST", "/rest/v1/customers", {"currency": "DKK", "timezone": "Europe/Copenhagen"}),
    (
        "POST",
        "/rest/v1/invoices",
        {"customerId": 1, "amount": {"value": "89.52", "currency": "DKK"}},
    ),
]
ROUTE_IDS = [f"{m} {p}" for m, p, _ in ROUTES]


def _assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert body["error"] == "unauthorized"
    assert isinstance(body["message"], str)
    assert body["message"]


@asynccontextmanager
async def _client(app: FastAPI, authorization: str | None) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": authorization} if authorization is not None else {}
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=headers) as c:
        yield c


@pytest.fixture
async def one_invoice(client: httpx.AsyncClient) -> None:
    """Customer 1 (DKK) with invoice 1, so that an authorized request would succeed."""
    customer = await client.post("/rest/v1/customers", json={"currency": "DKK"})
    assert customer.status_code == 201
    invoice = await client.post(
        "/rest/v1/invoices",
        json={"customerId": customer.json()["id"], "amount": {"value": "1.00", "currency": "DKK"}},
    )
    assert invoice.status_code == 201


async def _counts(client: httpx.AsyncClient) -> tuple[int, int]:
    customers = await client.get("/rest/v1/customers", params={"limit": 10_000})
    invoices = await client.get("/rest/v1/invoices", params={"limit": 10_000})
    return len(customers.json()), len(invoices.json())


async def test_health_needs_no_token(anon: httpx.AsyncClient) -> None:
    response = await anon.get("/rest/health")
    assert response.status_code == 200
    assert response.json() == "ok"


@pytest.mark.usefixtures("one_invoice")
@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=ROUTE_IDS)
async def test_every_route_needs_a_token(
    anon: httpx.AsyncClient,
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: dict[str, object] | None,
) -> None:
    before = await _counts(client)
    _assert_401(await anon.request(method, path, json=body))
    assert await _counts(client) == before
    # The very same request with the token works (so the 401 was about the token).
    authorized = await client.request(method, path, json=body)
    assert authorized.status_code in (200, 201), authorized.text


@pytest.mark.usefixtures("one_invoice")
@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Token {token}",
        "Basic dGVzdDp0ZXN0",
        "Bearer",
        "Bearer ",
        "Bearer    ",
        "{token}",
        "Bearer{token}",
        "Bearer x{token}",
        "Bearer {token}x",
        "Bearer ant_wrong",
        "Bearer " + "a" * 513,
        "Bearer " + "a" * 10_000,
    ],
    ids=[
        "empty",
        "token-scheme",
        "basic",
        "bearer-alone",
        "bearer-empty",
        "bearer-spaces",
        "no-scheme",
        "no-space",
        "prefixed",
        "suffixed",
        "wrong",
        "too-long",
        "very-long",
    ],
)
@pytest.mark.parametrize(
    ("method", "path", "body"), [ROUTES[1], ROUTES[5]], ids=[ROUTE_IDS[1], ROUTE_IDS[5]]
)
async def test_malformed_or_wrong_token_is_401(
    app: FastAPI,
    client: httpx.AsyncClient,
    token: str,
    authorization: str,
    method: str,
    path: str,
    body: dict[str, object] | None,
) -> None:
    before = await _counts(client)
    async with _client(app, authorization.format(token=token)) as c:
        _assert_401(await c.request(method, path, json=body))
    assert await _counts(client) == before


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_scheme_is_case_insensitive(app: FastAPI, token: str, scheme: str) -> None:
    async with _client(app, f"{scheme} {token}") as c:
        response = await c.get("/rest/v1/customers")
    assert response.status_code == 200


async def test_revoked_token_stops_working(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    assert (await client.get("/rest/v1/customers")).status_code == 200
    async with database.write() as conn:
        assert await TokenRepository(conn).revoke("tester", clock.now())
    _assert_401(await client.get("/rest/v1/customers"))
    _assert_401(await client.post("/rest/v1/customers", json={"currency": "EUR"}))


async def test_revoking_one_token_keeps_the_others(
    app: FastAPI, client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    other = generate_token()
    async with database.write() as conn:
        await TokenRepository(conn).create("other", hash_token(other), clock.now())
        await TokenRepository(conn).revoke("tester", clock.now())
    _assert_401(await client.get("/rest/v1/customers"))
    async with _client(app, f"Bearer {other}") as c:
        assert (await c.get("/rest/v1/customers")).status_code == 200


async def test_token_created_after_start_works_at_once(
    app: FastAPI, database: Database, clock: ManualClock, token: str
) -> None:
    async with _client(app, f"Bearer {token}") as c:
        assert (await c.get("/rest/v1/customers")).status_code == 200
    fresh = generate_token()
    async with _client(app, f"Bearer {fresh}") as c:
        _assert_401(await c.get("/rest/v1/customers"))
    async with database.write() as conn:
        await TokenRepository(conn).create("fresh", hash_token(fresh), clock.now())
    async with _client(app, f"Bearer {fresh}") as c:
        assert (await c.get("/rest/v1/customers")).status_code == 200


@asynccontextmanager
async def _env_app(
    database_url: str, database: Database, clock: ManualClock, env_token: str
) -> AsyncIterator[FastAPI]:
    settings = Settings(
        DATABASE_URL=database_url, API_TOKEN=SecretStr(env_token), TOKEN_CACHE_SECONDS=0
    )
    application = create_app(settings, clock=clock, database=database)
    async with application.router.lifespan_context(application):
        yield application


async def test_env_token_works_without_any_stored_token(
    database_url: str, database: Database, clock: ManualClock
) -> None:
    env_token = generate_token()
    async with _env_app(database_url, database, clock, env_token) as application:
        async with _client(application, f"Bearer {env_token}") as c:
            created = await c.post("/rest/v1/customers", json={"currency": "GBP"})
            assert created.status_code == 201, created.text
            listed = await c.get("/rest/v1/customers")
            assert listed.json() == [created.json()]
        async with _client(application, f"Bearer {env_token}x") as c:
            _assert_401(await c.get("/rest/v1/customers"))
        async with _client(application, None) as c:
            _assert_401(await c.get("/rest/v1/customers"))


async def test_env_token_and_stored_tokens_both_work(
    database_url: str, database: Database, clock: ManualClock, token: str
) -> None:
    env_token = generate_token()
    async with _env_app(database_url, database, clock, env_token) as application:
        for value in (env_token, token):
            async with _client(application, f"Bearer {value}") as c:
                assert (await c.get("/rest/v1/invoices")).status_code == 200
        async with _client(application, "Bearer not-the-env-token") as c:
            _assert_401(await c.get("/rest/v1/invoices"))


async def test_env_token_is_not_valid_when_unset(
    app: FastAPI, database_url: str, database: Database, clock: ManualClock
) -> None:
    env_token = generate_token()
    async with (
        _env_app(database_url, database, clock, env_token) as application,
        _client(application, f"Bearer {env_token}") as c,
    ):
        assert (await c.get("/rest/v1/customers")).status_code == 200
    # The default app (API_TOKEN=None) does not know it.
    async with _client(app, f"Bearer {env_token}") as c:
        _assert_401(await c.get("/rest/v1/customers"))


@pytest.mark.parametrize("path", ["/rest/v1/customers", "/rest/v1/invoices"])
async def test_anonymous_malformed_json_is_401(anon: httpx.AsyncClient, path: str) -> None:
    response = await anon.post(
        path, content=b"{not json", headers={"content-type": "application/json"}
    )
    _assert_401(response)


@pytest.mark.parametrize("path", ["/rest/v1/customers", "/rest/v1/invoices"])
async def test_anonymous_invalid_fields_is_401_not_422(anon: httpx.AsyncClient, path: str) -> None:
    response = await anon.post(path, json={"currency": "XXX", "customerId": "abc"})
    _assert_401(response)


@pytest.mark.parametrize("path", ["/rest/v1/invoices/abc", "/rest/v1/customers/0"])
async def test_anonymous_bad_id_is_401_not_422(anon: httpx.AsyncClient, path: str) -> None:
    _assert_401(await anon.get(path))
