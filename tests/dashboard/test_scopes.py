"""Dashboard sessions and token scopes (SQLite and PostgreSQL).

A session is bound to the token it was opened with, by the token's hash: revoking
that token, or changing `ANTAEUS_API_TOKEN`, ends it within
`ANTAEUS_TOKEN_CACHE_SECONDS`. A session of a `read` token sees every page but no
action: the only form it may POST is the sign-out (and the sign-in, before it).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import SecretStr
from sqlalchemy import insert, select, update
from starlette.routing import BaseRoute

from antaeus.api import auth
from antaeus.api.app import create_app
from antaeus.clock import ManualClock
from antaeus.config import Settings
from antaeus.dashboard.sessions import hash_id
from antaeus.security import generate_token, hash_token
from antaeus.simulators.simulated import SimulatedPaymentProvider
from antaeus.storage.database import Database
from antaeus.storage.repositories.tokens import TokenRepository
from antaeus.storage.tables import dashboard_sessions, event_destinations
from tests.api.test_billing_api import (
    failed_invoice,
    get_json,
    new_customer,
    new_invoice,
    review_invoice,
    simulator,  # noqa: F401  (the fixture)
)
from tests.conftest import NOW
from tests.dashboard.test_pages import CSRF, csrf_of, sign_in

HTTPS = "https://antaeus.test"


class FakeTime:
    """Stands in for the `time` module inside antaeus.api.auth (the token cache's clock)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now


@asynccontextmanager
async def _app(
    database_url: str,
    database: Database,
    clock: ManualClock,
    *,
    env_token: str | None = None,
    cache_seconds: float = 0,
) -> AsyncIterator[FastAPI]:
    settings = Settings(
        DATABASE_URL=database_url,
        API_TOKEN=SecretStr(env_token) if env_token else None,
        TOKEN_CACHE_SECONDS=cache_seconds,
    )
    application = create_app(settings, clock=clock, database=database)
    async with application.router.lifespan_context(application):
        yield application


@asynccontextmanager
async def _browser(
    app: FastAPI, cookies: httpx.Cookies | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=HTTPS, cookies=cookies) as c:
        yield c


async def _signed_in_page(browser: httpx.AsyncClient) -> bool:
    """Whether `/` shows data (True) or sends the browser to the sign-in page (False)."""
    response = await browser.get("/")
    if response.status_code == 303:
        assert response.headers["location"].startswith("/signin")
        return False
    assert response.status_code == 200, response.text
    assert "signed in as" in response.text
    return True


async def _create_token(database: Database, name: str, scope: str = "write") -> str:
    value = generate_token()
    async with database.write() as conn:
        await TokenRepository(conn).create(name, hash_token(value), NOW, scope=scope)
    return value


# -- a session is bound to its token ---------------------------------------------------------


async def test_changing_the_environments_token_ends_its_sessions(
    database_url: str, database: Database, clock: ManualClock
) -> None:
    token_a, token_b = generate_token(), generate_token()
    async with (
        _app(database_url, database, clock, env_token=token_a, cache_seconds=5) as app_a,
        _browser(app_a) as browser,
    ):
        assert (await sign_in(browser, token_a)).status_code == 303
        assert await _signed_in_page(browser)
        cookies = httpx.Cookies(browser.cookies)
    # The service comes back with another ANTAEUS_API_TOKEN: the old cookie signs nobody in.
    async with (
        _app(database_url, database, clock, env_token=token_b, cache_seconds=5) as app_b,
        _browser(app_b, cookies) as browser,
    ):
        assert not await _signed_in_page(browser)
        assert (await browser.get("/invoices")).status_code == 303
        assert (await browser.get("/live/overview")).status_code == 303
        # the token of now signs in as `env`, as before
        assert (await sign_in(browser, token_b)).status_code == 303
        assert await _signed_in_page(browser)
        cookies_b = httpx.Cookies(browser.cookies)
    # and a session of the token of now survives a restart with the same token
    async with (
        _app(database_url, database, clock, env_token=token_b, cache_seconds=5) as app_c,
        _browser(app_c, cookies_b) as again,
    ):
        assert await _signed_in_page(again)


async def test_a_revoked_token_ends_its_sessions_within_the_cache_time(
    database_url: str,
    database: Database,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeTime()
    monkeypatch.setattr(auth, "time", fake)
    value = await _create_token(database, "alice")
    async with (
        _app(database_url, database, clock, cache_seconds=5) as application,
        _browser(application) as browser,
    ):
        assert (await sign_in(browser, value)).status_code == 303
        assert await _signed_in_page(browser)
        async with database.write() as conn:
            assert await TokenRepository(conn).revoke("alice", NOW)
        fake.now += 4.9  # the cached tokens may still name it
        fake.now += 0.2  # past ANTAEUS_TOKEN_CACHE_SECONDS: it is gone
        assert not await _signed_in_page(browser)
        async with database.read() as conn:
            assert (await conn.execute(select(dashboard_sessions))).first() is None


async def test_a_session_follows_its_token_not_its_name(
    database_url: str, database: Database, clock: ManualClock
) -> None:
    """Only the hash counts: a session row naming an active token but with another
    token's hash (a revoked one) signs nobody in."""
    old = await _create_token(database, "old")
    await _create_token(database, "bob")
    async with (
        _app(database_url, database, clock) as application,
        _browser(application) as browser,
    ):
        assert (await sign_in(browser, old)).status_code == 303
        async with database.write() as conn:
            await conn.execute(update(dashboard_sessions).values(token_name="bob"))
            assert await TokenRepository(conn).revoke("old", NOW)
        assert not await _signed_in_page(browser)


async def test_a_session_opened_before_sessions_were_bound_ends(
    app: FastAPI, database: Database, token: str
) -> None:
    """A session row without a token hash (written before the upgrade) signs nobody in,
    even though its token is still active: people sign in again once."""
    raw = "a-session-id-from-before-the-upgrade"
    async with database.write() as conn:
        await conn.execute(
            insert(dashboard_sessions).values(
                id_hash=hash_id(raw),
                token_name="tester",
                token_hash=None,
                csrf_token="c" * 43,
                created_at=NOW,
                expires_at=NOW.replace(year=NOW.year + 1),
            )
        )
    async with _browser(app) as browser:
        browser.cookies.set("antaeus_session", raw, domain="antaeus.test")
        assert not await _signed_in_page(browser)
        assert (await sign_in(browser, token)).status_code == 303
        assert await _signed_in_page(browser)


# -- a read session ------------------------------------------------------------------------


class _Forms(HTMLParser):
    """The POST forms of a page (their actions) and the links it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.post_actions: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "form" and (found.get("method") or "get").lower() == "post":
            self.post_actions.append(found.get("action") or "")
        if tag == "a" and found.get("href"):
            self.links.append(found["href"] or "")


def _parse(html: str) -> _Forms:
    parser = _Forms()
    parser.feed(html)
    return parser


def _routes(routes: list[BaseRoute]) -> list[APIRoute]:
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        inner = getattr(route, "original_router", None) or getattr(route, "router", None)
        if inner is not None and inner is not route:
            found.extend(_routes(list(getattr(inner, "routes", []))))
    return found


_NOT_PAGES = ("/rest", "/docs", "/redoc", "/openapi", "/static", "/metrics", "/live", "/signin")
_PARAM = re.compile(r"\{([^}]+)\}")


def _page_urls(app: FastAPI, values: dict[str, list[str]]) -> set[str]:
    """Every GET page of the dashboard's route table, each parameter given every value
    known for its name (`1` for a name not known yet)."""
    urls: set[str] = set()
    for route in _routes(list(app.routes)):
        if "GET" not in route.methods or route.path.startswith(_NOT_PAGES):
            continue
        paths = [route.path]
        for name in _PARAM.findall(route.path):
            paths = [p.replace(f"{{{name}}}", v, 1) for p in paths for v in values.get(name, ["1"])]
        urls.update(paths)
    return urls


async def _walk(browser: httpx.AsyncClient, start: set[str]) -> dict[str, list[str]]:
    """The POST forms of every page reachable from `start` by this site's links."""
    seen: dict[str, list[str]] = {}
    todo = sorted(start)
    while todo and len(seen) < 400:
        url = todo.pop()
        if url in seen:
            continue
        response = await browser.get(url)
        assert response.status_code < 500, (url, response.text)
        if response.status_code == 303:
            assert not response.headers["location"].startswith("/signin"), url
            seen[url] = []
            continue
        page = _parse(response.text)
        seen[url] = page.post_actions
        for href in page.links:
            target = urljoin(url, href)
            parts = urlsplit(target)
            if parts.netloc or not parts.path.startswith("/") or parts.path.startswith(_NOT_PAGES):
                continue
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            if path not in seen:
                todo.append(path)
    return seen


async def _data(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,  # noqa: F811
) -> dict[str, list[str]]:
    """An invoice in each state that has actions, a disabled webhook: every action shown."""
    failed = await failed_invoice(client, database, clock, simulator)
    review, run_id = await review_invoice(client, database, clock)
    pending = await new_invoice(client, await new_customer(client), due_at="2027-01-01T00:00:00Z")
    hook = await client.post("/rest/v1/webhooks", json={"url": "https://example.com/hook"})
    assert hook.status_code == 201, hook.text
    async with database.write() as conn:
        await conn.execute(update(event_destinations).values(status="disabled", disabled_at=NOW))
    from antaeus.dashboard.routes import ACTIONS
    from antaeus.dashboard.subscription_pages import ACTIONS as SUBSCRIPTION_ACTIONS
    from tests.api.test_plans import new_plan
    from tests.api.test_subscriptions import customer, subscribe

    cid = await customer(client)
    sub = await subscribe(client, customerId=cid, planId=await new_plan(client))
    ending = await client.post(f"/rest/v1/subscriptions/{sub['id']}/cancel")
    assert ending.status_code == 200, ending.text  # a pending cancel: reactivate is offered
    # its first period, invoiced when it was created
    billed = [str(i["id"]) for i in await get_json(client, f"/rest/v1/invoices?customerId={cid}")]

    return {
        "invoice_id": [str(failed), str(review), str(pending), *billed],
        "action": [*ACTIONS, *SUBSCRIPTION_ACTIONS],
        "run_id": [str(run_id)],
        "webhook_id": [str(hook.json()["id"])],
        "subscription_id": [str(sub["id"])],
        "customer_id": [str(cid)],
    }


async def test_a_read_session_sees_every_page_and_no_action(
    app: FastAPI,
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,  # noqa: F811
) -> None:
    values = await _data(client, database, clock, simulator)
    start = _page_urls(app, values) | {"/", "/invoices?status=FAILED", "/invoices?status=REVIEW"}
    writer_token = await _create_token(database, "writer")
    reader_token = await _create_token(database, "reader", scope="read")

    async with _browser(app) as writer:
        assert (await sign_in(writer, writer_token)).status_code == 303
        written = await _walk(writer, start)
    actions = {a for forms in written.values() for a in forms} - {"/signout"}
    # the walk reaches the actions: a write session has them
    assert any(a.endswith("/void") for a in actions), actions
    assert any(a.endswith("/retry") for a in actions), actions
    assert any(a.endswith("/resolve-charged") for a in actions), actions
    assert any(a.startswith("/webhooks/") for a in actions), actions
    assert any(a.endswith("/reactivate") for a in actions), actions  # a subscription's

    async with _browser(app) as reader:
        assert (await sign_in(reader, reader_token)).status_code == 303
        read = await _walk(reader, start)
        # every page the writer saw, the reader sees too; the writer's bulk-action
        # links (action buttons, hidden from a reader) add query-string variants only
        paths = {u.split("?")[0] for u in read}
        assert {u.split("?")[0] for u in written} <= paths, set(written) - set(read)
        for url, forms in read.items():
            assert set(forms) <= {"/signout"}, (url, forms)
        page = await reader.get(f"/invoices/{values['invoice_id'][1]}")
        assert "read" in page.text
        assert "Resolve as charged" not in page.text


async def test_a_read_session_may_post_nothing_but_sign_out(
    app: FastAPI,
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,  # noqa: F811
) -> None:
    values = await _data(client, database, clock, simulator)
    failed, review, pending = values["invoice_id"][:3]
    reader_token = await _create_token(database, "reader", scope="read")
    async with _browser(app) as reader:
        assert (await sign_in(reader, reader_token)).status_code == 303
        csrf = await csrf_of(reader, "/")  # the sign-out form's: the session's own
        tried = [
            (f"/invoices/{failed}/retry", {}),
            (f"/invoices/{pending}/void", {}),
            (f"/invoices/{review}/resolve-charged", {"charge_id": "ch_x"}),
            (f"/invoices/{review}/resolve-not-charged", {}),
            (f"/webhooks/{values['webhook_id'][0]}/enable", {}),
        ]
        for path, extra in tried:
            response = await reader.post(path, data={"csrf_token": csrf, "note": "x", **extra})
            assert response.status_code == 403, (path, response.status_code, response.text)
            assert "read" in response.text
        for iid, status in [(failed, "FAILED"), (review, "REVIEW"), (pending, "PENDING")]:
            assert (await get_json(client, f"/rest/v1/invoices/{iid}"))["status"] == status
            assert await get_json(client, f"/rest/v1/invoices/{iid}/actions") == []
        [hook] = await get_json(client, "/rest/v1/webhooks")
        assert hook["status"] == "disabled"
        assert await _signed_in_page(reader)
        signout = await reader.post("/signout", data={"csrf_token": csrf})
        assert signout.status_code == 303
        assert not await _signed_in_page(reader)


async def test_a_read_session_shows_its_scope(app: FastAPI, database: Database) -> None:
    reader_token = await _create_token(database, "reader", scope="read")
    async with _browser(app) as reader:
        assert (await sign_in(reader, reader_token)).status_code == 303
        page = await reader.get("/")
        assert CSRF.search(page.text) is not None
        assert re.search(r"reader</strong>\s*\(read only\)", page.text), page.text
