"""The dashboard in-process (httpx against the real app, SQLite and PostgreSQL).

Sign-in, the session cookie, CSRF refusals that change nothing, escaping, every
page, and bad input answered with a 4xx page, never a 500.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from antaeus.clock import ManualClock
from antaeus.simulators.simulated import SimulatedPaymentProvider
from antaeus.storage.database import Database
from antaeus.storage.repositories.tokens import TokenRepository
from antaeus.storage.tables import dashboard_sessions
from tests.api.test_billing_api import (
    get_json,
    new_customer,
    new_invoice,
    paid_invoice,
    review_invoice,
    simulator,  # noqa: F401  (the fixture)
)
from tests.conftest import NOW

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A cookie-keeping client on https (the session cookie is Secure), no token header."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://antaeus.test") as c:
        yield c


async def sign_in(browser: httpx.AsyncClient, token: str) -> httpx.Response:
    form = await browser.get("/signin")
    assert form.status_code == 200, form.text
    csrf = CSRF.search(form.text)
    assert csrf is not None
    return await browser.post(
        "/signin", data={"token": token, "csrf_token": csrf.group(1), "next": "/"}
    )


async def csrf_of(browser: httpx.AsyncClient, url: str) -> str:
    page = await browser.get(url)
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found is not None, page.text
    return found.group(1)


@pytest.fixture
async def signed_in(browser: httpx.AsyncClient, token: str) -> httpx.AsyncClient:
    response = await sign_in(browser, token)
    assert response.status_code == 303, response.text
    return browser


@pytest.mark.parametrize(
    "path", ["/", "/runs", "/runs/1", "/invoices", "/invoices/1", "/invoices/1/void", "/webhooks"]
)
async def test_pages_redirect_to_sign_in(browser: httpx.AsyncClient, path: str) -> None:
    response = await browser.get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/signin")


async def test_api_routes_still_answer_json(
    browser: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    assert (await client.get("/rest/v1/status")).status_code == 200
    assert (await browser.get("/rest/v1/status")).status_code == 401
    assert (await browser.get("/openapi.json")).status_code == 200
    assert "/signin" not in (await browser.get("/openapi.json")).text
    assert (await browser.get("/docs")).status_code == 200
    assert (await client.get("/metrics")).status_code == 200  # with its token, as before
    css = await browser.get("/static/dashboard.css")
    assert css.status_code == 200
    assert "text/css" in css.headers["content-type"]


async def test_sign_in_sets_a_strict_secure_http_only_cookie(
    browser: httpx.AsyncClient, token: str, database: Database
) -> None:
    response = await sign_in(browser, token)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookies = [c for c in response.headers.get_list("set-cookie") if "antaeus_session=" in c]
    assert len(cookies) == 1
    attrs = [a.strip().lower() for a in cookies[0].split(";")]
    assert "secure" in attrs
    assert "httponly" in attrs
    assert "samesite=strict" in attrs
    assert "path=/" in attrs
    raw = cookies[0].split(";")[0].split("=", 1)[1]
    async with database.read() as conn:
        stored = [r.id_hash for r in await conn.execute(select(dashboard_sessions))]
    assert len(stored) == 1
    assert raw not in stored[0], "only a hash of the session id is stored"
    page = await browser.get("/")
    assert page.status_code == 200
    assert "signed in as" in page.text
    assert "tester" in page.text


async def test_wrong_token_is_refused(browser: httpx.AsyncClient) -> None:
    response = await sign_in(browser, "ant_not-a-token-at-all-xxxxxxxxxx")
    assert response.status_code == 401
    assert "Unknown or revoked token" in response.text
    assert "antaeus_session" not in response.headers.get("set-cookie", "")
    assert (await browser.get("/")).status_code == 303


async def test_sign_in_without_its_csrf_token_is_refused(
    browser: httpx.AsyncClient, token: str
) -> None:
    await browser.get("/signin")
    response = await browser.post("/signin", data={"token": token, "next": "/"})
    assert response.status_code == 403
    assert (await browser.get("/")).status_code == 303


async def test_sign_in_goes_back_only_to_this_site(browser: httpx.AsyncClient, token: str) -> None:
    form = await browser.get("/signin?next=//evil.example/x")
    csrf = CSRF.search(form.text)
    assert csrf is not None
    response = await browser.post(
        "/signin",
        data={"token": token, "csrf_token": csrf.group(1), "next": "//evil.example/x"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/"


async def test_sign_out_ends_the_session(signed_in: httpx.AsyncClient) -> None:
    csrf = await csrf_of(signed_in, "/")
    cookie = signed_in.cookies.get("antaeus_session")
    response = await signed_in.post("/signout", data={"csrf_token": csrf})
    assert response.status_code == 303
    # even a kept copy of the cookie no longer signs in
    signed_in.cookies.set("antaeus_session", cookie or "", domain="antaeus.test")
    assert (await signed_in.get("/")).status_code == 303


async def test_a_revoked_token_ends_its_sessions(
    signed_in: httpx.AsyncClient, database: Database
) -> None:
    assert (await signed_in.get("/")).status_code == 200
    async with database.write() as conn:
        assert await TokenRepository(conn).revoke("tester", NOW)
    assert (await signed_in.get("/")).status_code == 303


async def test_sessions_expire(signed_in: httpx.AsyncClient, clock: ManualClock) -> None:
    clock.advance(timedelta(hours=12, seconds=1))
    assert (await signed_in.get("/")).status_code == 303


async def test_every_page_renders(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    review, run_id = await review_invoice(client, database, clock)
    pending = await new_invoice(client, await new_customer(client), due_at="2027-01-01T00:00:00Z")
    hook = await client.post("/rest/v1/webhooks", json={"url": "https://example.com/hook"})
    assert hook.status_code == 201
    pages = {
        "/": ["Charging", "Collected this month", "Needing a person", f"/invoices/{review}"],
        "/runs": [f"/runs/{run_id}"],
        f"/runs/{run_id}": ["Invoices per outcome", "<svg", "completed"],
        "/invoices": [f"/invoices/{review}", f"/invoices/{pending}"],
        "/invoices?status=REVIEW": [f"/invoices/{review}"],
        f"/invoices/{review}": ["REVIEW", "idempotency key", "Resolve as charged", "review"],
        f"/invoices/{review}/resolve-charged": ["charge_id", "Confirm"],
        f"/invoices/{review}/resolve-not-charged": ["Confirm"],
        f"/invoices/{pending}/void": ["Confirm"],
        "/webhooks": ["https://example.com/hook", "enabled"],
    }
    for path, wanted in pages.items():
        response = await signed_in.get(path)
        assert response.status_code == 200, (path, response.text)
        assert "text/html" in response.headers["content-type"]
        assert "script-src 'self'" in response.headers["content-security-policy"]
        for text in wanted:
            assert text in response.text, (path, text)
    filtered = await signed_in.get("/invoices?status=PENDING")
    assert f'/invoices/{review}"' not in filtered.text
    live = await signed_in.get(f"/live/runs/{run_id}")
    assert live.status_code == 200
    assert live.json()["status"] == "completed"
    assert (await signed_in.get("/live/overview")).json()["charging"] == "running"
    found = await signed_in.get(f"/invoices?id={review}")
    assert (found.status_code, found.headers["location"]) == (303, f"/invoices/{review}")


async def test_resolve_with_a_note_shows_status_action_and_event(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    review, _ = await review_invoice(client, database, clock)
    csrf = await csrf_of(signed_in, f"/invoices/{review}/resolve-charged")
    response = await signed_in.post(
        f"/invoices/{review}/resolve-charged",
        data={"csrf_token": csrf, "charge_id": "ch_dash_1", "note": "checked the ledger"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/invoices/{review}"
    page = await signed_in.get(f"/invoices/{review}")
    assert "PAID" in page.text
    assert "resolved_charged" in page.text
    assert "checked the ledger" in page.text
    assert "invoice.resolved" in page.text
    [action] = await get_json(client, f"/rest/v1/invoices/{review}/actions")
    assert (action["actor"], action["chargeId"], action["note"]) == (
        "tester",
        "ch_dash_1",
        "checked the ledger",
    )


@pytest.mark.parametrize("sent", [None, "", "wrong-token"])
async def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(
    signed_in: httpx.AsyncClient,
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    sent: str | None,
) -> None:
    review, _ = await review_invoice(client, database, clock)
    data = {"note": "forged"} if sent is None else {"note": "forged", "csrf_token": sent}
    response = await signed_in.post(f"/invoices/{review}/resolve-not-charged", data=data)
    assert response.status_code == 403
    assert "Nothing was changed" in response.text
    assert (await get_json(client, f"/rest/v1/invoices/{review}"))["status"] == "REVIEW"
    assert await get_json(client, f"/rest/v1/invoices/{review}/actions") == []
    hook = (await client.post("/rest/v1/webhooks", json={"url": "https://e.com/h"})).json()
    assert (await signed_in.post(f"/webhooks/{hook['id']}/enable", data=data)).status_code == 403
    assert (await signed_in.post("/signout", data=data)).status_code == 403
    assert (await signed_in.get("/")).status_code == 200, "still signed in"


async def test_everything_shown_is_escaped(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    evil = "<script>alert(1)</script>"
    review, _ = await review_invoice(client, database, clock)
    resolved = await client.post(
        f"/rest/v1/invoices/{review}/resolve", json={"charged": False, "note": evil}
    )
    assert resolved.status_code == 200
    hook = await client.post("/rest/v1/webhooks", json={"url": f"https://example.com/?q={evil}"})
    assert hook.status_code == 201, hook.text
    for path in (f"/invoices/{review}", "/webhooks"):
        page = await signed_in.get(path)
        assert page.status_code == 200
        assert evil not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/runs/abc", 404),
        ("/runs/0", 404),
        ("/runs/99999999999999999999999", 404),
        ("/runs/999", 404),
        ("/invoices/1.5", 404),
        ("/invoices/%C2%B2", 404),
        ("/invoices/999", 404),
        ("/invoices?status=NOPE", 400),
        ("/invoices?customer=x", 400),
        ("/invoices?id=abc", 400),
        ("/invoices?after=-1", 400),
        ("/runs?before=zz", 400),
        ("/invoices/1/explode", 404),
        ("/live/runs/x", 404),
    ],
)
async def test_bad_input_gets_a_clear_4xx_page(
    signed_in: httpx.AsyncClient, path: str, status: int
) -> None:
    response = await signed_in.get(path)
    assert response.status_code == status, response.text
    assert "text/html" in response.headers["content-type"]
    assert 'role="alert"' in response.text


@pytest.mark.parametrize(
    ("note", "title"),
    [("bad\u0000note", "Bad note"), ("x" * 2001, "Note too long")],
)
async def test_a_bad_note_is_refused_and_changes_nothing(
    signed_in: httpx.AsyncClient,
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    note: str,
    title: str,
) -> None:
    review, _ = await review_invoice(client, database, clock)
    csrf = await csrf_of(signed_in, f"/invoices/{review}/resolve-not-charged")
    response = await signed_in.post(
        f"/invoices/{review}/resolve-not-charged", data={"csrf_token": csrf, "note": note}
    )
    assert response.status_code == 400, response.text
    assert title in response.text
    assert (await get_json(client, f"/rest/v1/invoices/{review}"))["status"] == "REVIEW"


async def test_an_action_the_status_does_not_allow_is_a_409_page(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    pending = await new_invoice(client, await new_customer(client), due_at="2027-01-01T00:00:00Z")
    csrf = await csrf_of(signed_in, f"/invoices/{pending}/retry")
    response = await signed_in.post(f"/invoices/{pending}/retry", data={"csrf_token": csrf})
    assert response.status_code == 409
    assert "Nothing was changed" in response.text
    charged = await signed_in.post(
        f"/invoices/{pending}/resolve-charged", data={"csrf_token": csrf, "charge_id": ""}
    )
    assert charged.status_code == 400


async def test_void_through_the_dashboard(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    pending = await new_invoice(client, await new_customer(client), due_at="2027-01-01T00:00:00Z")
    csrf = await csrf_of(signed_in, f"/invoices/{pending}/void")
    response = await signed_in.post(
        f"/invoices/{pending}/void", data={"csrf_token": csrf, "note": "duplicate"}
    )
    assert response.status_code == 303
    assert (await get_json(client, f"/rest/v1/invoices/{pending}"))["status"] == "VOID"


async def test_money_collected_shows_on_the_pages_and_in_the_live_json(
    signed_in: httpx.AsyncClient,
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,  # noqa: F811
) -> None:
    await paid_invoice(client, database, clock, simulator)
    [run] = await get_json(client, "/rest/v1/billing/runs")
    live = await signed_in.get(f"/live/runs/{run['id']}")
    assert live.status_code == 200, live.text
    assert live.json()["collected"] == [{"value": 89.50, "currency": "EUR"}]
    assert "89.50 EUR" in (await signed_in.get(f"/runs/{run['id']}")).text
    assert "89.50 EUR" in (await signed_in.get("/")).text  # collected this month


async def test_the_invoice_page_shows_what_reconciliation_asked_and_heard(
    browser: httpx.AsyncClient, token: str, database: Database, clock: ManualClock
) -> None:
    from antaeus.billing.reconcile import Reconciler
    from antaeus.payments.provider import OutcomeUnknownError
    from tests.billing.fakes import ScriptedProvider
    from tests.billing.helpers import make_invoices
    from tests.billing.test_reconcile import to_review_by_sweep

    provider = ScriptedProvider(default=OutcomeUnknownError("lost"))  # it cannot look keys up
    [invoice_id] = await make_invoices(database, 1, clock.now())
    await to_review_by_sweep(database, clock, provider, [invoice_id])
    done = await Reconciler(database, provider, clock).reconcile_invoice(invoice_id)
    assert done.outcome == "review"
    assert (await sign_in(browser, token)).status_code == 303  # a day later: a new session
    page = await browser.get(f"/invoices/{invoice_id}")
    assert page.status_code == 200, page.text
    assert "Asked the provider (reconciliation)" in page.text
    assert "cannot_tell" in page.text
    assert "this provider cannot look up a key yet" in page.text


async def test_the_invoice_page_shows_the_customers_references_and_the_decline_code(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    from antaeus.payments.provider import CardDeclinedError
    from tests.api.test_billing_api import charge, new_invoice, trigger
    from tests.billing.fakes import ScriptedProvider

    response = await client.post(
        "/rest/v1/customers",
        json={
            "currency": "EUR",
            "providerCustomerId": "cus_<b>1",
            "providerPaymentMethodId": "pm_9",
        },
    )
    assert response.status_code == 201, response.text
    iid = await new_invoice(client, response.json()["id"])
    await trigger(client)
    await charge(database, ScriptedProvider(default=CardDeclinedError("expired_card")), clock)
    page = await signed_in.get(f"/invoices/{iid}")
    assert page.status_code == 200
    assert "cus_&lt;b&gt;1" in page.text
    assert "pm_9" in page.text
    assert "card_declined (<code>expired_card</code>)" in page.text
