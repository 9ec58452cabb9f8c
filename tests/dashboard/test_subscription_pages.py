"""The dashboard's plans, subscriptions and customers (issue 21), in-process on SQLite and
PostgreSQL: every page, escaping and long names, a read session sees no action, the
actions go through the API's own code behind a confirmation that names what happens,
CSRF and stale confirmations refused with nothing written, and the overview's MRR.

NOW (tests/conftest.py) is 2026-11-22T12:00:00Z, a Sunday.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from antaeus.billing.generation import generate_due
from antaeus.clock import ManualClock
from antaeus.storage.database import Database
from antaeus.storage.tables import (
    credit_entries,
    customers,
    events,
    invoice_lines,
    invoices,
    subscriptions,
)
from tests.api.test_billing_api import get_json
from tests.api.test_plans import new_plan
from tests.api.test_subscriptions import customer, subscribe
from tests.conftest import NOW
from tests.dashboard.test_pages import CSRF, csrf_of, sign_in
from tests.dashboard.test_scopes import _browser, _create_token

EVIL = '<b>Pro</b> & "co" <script>alert(1)</script>'
LONG = "Enterprise " + "x" * 180
HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">')


def form_of(html: str) -> dict[str, str]:
    """The hidden fields of a confirmation's POST form (csrf, action fields, guards)."""
    return dict(HIDDEN.findall(html))


@pytest.fixture
async def browser(app: FastAPI) -> Any:
    async with _browser(app) as b:
        yield b


@pytest.fixture
async def signed_in(browser: httpx.AsyncClient, token: str) -> httpx.AsyncClient:
    assert (await sign_in(browser, token)).status_code == 303
    return browser


async def world(client: httpx.AsyncClient, database: Database) -> dict[str, Any]:
    """A EUR customer on a monthly plan with an HTML name, quantity 2, billed since Nov 1st
    (one invoice generated), and a second plan with a long name to change to."""
    cid = await customer(client)
    evil = await new_plan(client, "evil", name=EVIL)
    long = await new_plan(client, "long", name=LONG, amount={"value": "50.00", "currency": "EUR"})
    sub = await subscribe(client, customerId=cid, planId=evil, quantity=2, startDate="2026-11-01")
    return {"customer": cid, "evil": evil, "long": long, "sub": sub["id"]}


async def generated(database: Database, clock: ManualClock) -> list[int]:
    await generate_due(database, clock)
    async with database.read() as conn:
        rows = list(await conn.execute(select(invoices.c.id).order_by(invoices.c.id)))
    return [int(r[0]) for r in rows]


async def count(database: Database, table: Any) -> int:
    async with database.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


# -- pages ------------------------------------------------------------------------------


async def test_every_page_renders_escaped(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    w = await world(client, database)
    [invoice] = await generated(database, clock)
    sid, cid = w["sub"], w["customer"]
    pages = {
        "/plans": ["evil", "every month", "30.00 EUR", LONG[:60]],
        "/plans?archived=false": ["evil"],
        "/subscriptions": [f"/subscriptions/{sid}", f"/customers/{cid}", "active"],
        "/subscriptions?status=active": [f"/subscriptions/{sid}"],
        f"/subscriptions?plan={w['evil']}": [f"/subscriptions/{sid}"],
        f"/subscriptions?customer={cid}": [f"/subscriptions/{sid}"],
        f"/subscriptions/{sid}": [
            "2026-11-01 – 2026-12-01",
            f'href="/invoices/{invoice}"',
            "60.00 EUR",
            "PENDING",
            "Change…",
            "Cancel…",
            '<option value="" selected>keep ',
            f'<option value="{w["long"]}">{LONG}',
        ],
        f"/customers/{cid}": [f"/subscriptions/{sid}", f"/invoices/{invoice}", "0.00 EUR"],
        f"/invoices/{invoice}": [
            f'href="/subscriptions/{sid}"',
            f'href="/customers/{cid}"',
            "subscription",
            "2026-11-01 – 2026-12-01",
        ],
        "/": ["Monthly recurring revenue", "60.00 EUR"],
    }
    for path, wanted in pages.items():
        response = await signed_in.get(path)
        assert response.status_code == 200, (path, response.text)
        assert "<script>alert(1)</script>" not in response.text, path
        assert "<b>Pro</b>" not in response.text, path
        for text in wanted:
            assert text in response.text, (path, text)
    page = await signed_in.get(f"/subscriptions/{sid}")
    assert "&lt;b&gt;Pro&lt;/b&gt; &amp; &#34;co&#34; &lt;script&gt;" in page.text
    nav = await signed_in.get("/")
    assert 'href="/subscriptions"' in nav.text
    assert 'href="/plans"' in nav.text


async def test_filters_and_pagination(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    cid = await customer(client)
    plan = await new_plan(client)
    trial = await new_plan(client, "trial", trialDays=30)
    ids = [(await subscribe(client, customerId=cid, planId=plan))["id"] for _ in range(51)]
    trialing = (await subscribe(client, customerId=cid, planId=trial))["id"]
    archived = await new_plan(client, "old")
    assert (await client.post(f"/rest/v1/plans/{archived}/archive")).status_code == 200
    first = await signed_in.get("/subscriptions?status=active")
    assert first.status_code == 200
    assert f'href="/subscriptions/{ids[49]}"' in first.text
    assert f'href="/subscriptions/{ids[50]}"' not in first.text
    assert f'href="/subscriptions?status=active&amp;after={ids[49]}"' in first.text
    second = await signed_in.get(f"/subscriptions?status=active&after={ids[49]}")
    assert f'href="/subscriptions/{ids[50]}"' in second.text
    assert f'href="/subscriptions/{trialing}"' not in second.text
    only = await signed_in.get("/subscriptions?status=trialing")
    assert f'href="/subscriptions/{trialing}"' in only.text
    assert f'href="/subscriptions/{ids[0]}"' not in only.text
    by_plan = await signed_in.get(f"/subscriptions?plan={trial}")
    assert f'href="/subscriptions/{trialing}"' in by_plan.text
    assert f'href="/subscriptions/{ids[0]}"' not in by_plan.text
    plans = await signed_in.get("/plans?archived=true")
    assert "<code>old</code>" in plans.text
    assert "<code>trial</code>" not in plans.text
    plans = await signed_in.get("/plans?archived=false")
    assert "<code>old</code>" not in plans.text
    assert "<code>trial</code>" in plans.text


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/subscriptions/abc", 404),
        ("/subscriptions/999", 404),
        ("/subscriptions?status=nope", 400),
        ("/subscriptions?plan=x", 400),
        ("/subscriptions/1?before=yesterday", 400),
        ("/plans?archived=maybe", 400),
        ("/customers/999", 404),
        ("/customers/0", 404),
        ("/subscriptions/1/explode", 404),
        ("/subscriptions/999/reactivate", 404),
        ("/subscriptions/1/change?quantity=abc", 400),
        ("/subscriptions/1/change?quantity=0", 400),
        ("/subscriptions/1/change", 400),  # nothing to change
        ("/subscriptions/1/cancel?at=tomorrow", 400),
        ("/subscriptions/1/cancel?prorate=yes", 400),
    ],
)
async def test_bad_input_gets_a_clear_4xx_page(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, path: str, status: int
) -> None:
    cid = await customer(client)
    await subscribe(client, customerId=cid, planId=await new_plan(client))
    response = await signed_in.get(path)
    assert response.status_code == status, response.text
    assert 'role="alert"' in response.text


async def test_the_customer_page_shows_credit_and_its_entries(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, database: Database
) -> None:
    cid = await customer(client)
    async with database.write() as conn:
        await conn.execute(update(customers).where(customers.c.id == cid).values(credit_minor=1250))
        await conn.execute(
            credit_entries.insert().values(
                customer_id=cid,
                currency="EUR",
                amount_minor=1250,
                balance_minor=1250,
                reason="adjustment",
                note="goodwill <i>gesture</i>",
                actor="finance",
                created_at=datetime(2026, 11, 20, tzinfo=UTC),
            )
        )
    page = await signed_in.get(f"/customers/{cid}")
    assert page.status_code == 200
    assert '<p class="big" id="credit-balance">12.50 EUR</p>' in page.text
    assert "+12.50 EUR" in page.text
    assert "adjustment" in page.text
    assert "goodwill &lt;i&gt;gesture&lt;/i&gt;" in page.text


# -- actions ----------------------------------------------------------------------------


async def test_change_at_period_end_through_its_confirmation(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    w = await world(client, database)
    await generated(database, clock)
    sid = w["sub"]
    before_events = await count(database, events)
    page = await signed_in.get(
        f"/subscriptions/{sid}/change?plan={w['long']}&quantity=3&effective=period_end"
    )
    assert page.status_code == 200, page.text
    assert "From 2026-12-01 on, every period is billed for Enterprise" in page.text
    assert "× 3" in page.text
    assert "No invoice is made and the customer&#39;s credit does not change." in page.text
    # the preview wrote nothing
    assert await count(database, events) == before_events
    assert (await get_json(client, f"/rest/v1/subscriptions/{sid}"))["pendingChange"] is None
    fields = form_of(page.text)
    assert set(fields) == {"csrf_token", "plan", "quantity", "effective", "version", "outcome"}
    done = await signed_in.post(f"/subscriptions/{sid}/change", data=fields)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == f"/subscriptions/{sid}"
    shown = await get_json(client, f"/rest/v1/subscriptions/{sid}")
    assert shown["pendingChange"] == {
        "planId": w["long"],
        "quantity": 3,
        "effectiveDate": "2026-12-01",
    }
    async with database.read() as conn:
        kinds = [r[0] for r in await conn.execute(select(events.c.type).order_by(events.c.id))]
    assert kinds[-1] == "subscription.updated"
    assert await count(database, events) == before_events + 1
    page = await signed_in.get(f"/subscriptions/{sid}")
    assert "Change pending: from 2026-12-01" in page.text


async def test_cancel_then_reactivate_through_their_confirmations(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    w = await world(client, database)
    sid = w["sub"]
    page = await signed_in.get(f"/subscriptions/{sid}/cancel?at=period_end")
    assert "It ends on 2026-12-01: no period from that date on is billed." in page.text
    assert "Its status stays active." in page.text
    done = await signed_in.post(f"/subscriptions/{sid}/cancel", data=form_of(page.text))
    assert done.status_code == 303, done.text
    assert (await get_json(client, f"/rest/v1/subscriptions/{sid}"))["cancelAt"] == "2026-12-01"
    shown = await signed_in.get(f"/subscriptions/{sid}")
    assert "Cancel pending: it ends on <strong>2026-12-01</strong>" in shown.text
    assert f'href="/subscriptions/{sid}/reactivate"' in shown.text
    page = await signed_in.get(f"/subscriptions/{sid}/reactivate")
    assert "The cancel pending for 2026-12-01 is taken back" in page.text
    done = await signed_in.post(f"/subscriptions/{sid}/reactivate", data=form_of(page.text))
    assert done.status_code == 303, done.text
    assert (await get_json(client, f"/rest/v1/subscriptions/{sid}"))["cancelAt"] is None
    # reactivating again is refused before any confirmation, as the API refuses it
    again = await signed_in.get(f"/subscriptions/{sid}/reactivate")
    assert again.status_code == 409
    assert "has no pending cancel" in again.text
    assert "Nothing was changed" in again.text


async def test_cancel_now_is_final_and_leaves_no_action(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, database: Database
) -> None:
    w = await world(client, database)
    sid = w["sub"]
    page = await signed_in.get(f"/subscriptions/{sid}/cancel?at=now&prorate=false")
    assert "Its status becomes canceled (it is active)." in page.text
    done = await signed_in.post(f"/subscriptions/{sid}/cancel", data=form_of(page.text))
    assert done.status_code == 303, done.text
    assert (await get_json(client, f"/rest/v1/subscriptions/{sid}"))["status"] == "canceled"
    shown = await signed_in.get(f"/subscriptions/{sid}")
    assert "A canceled subscription never changes again." in shown.text
    assert "Change…" not in shown.text
    refused = await signed_in.get(f"/subscriptions/{sid}/cancel?at=now")
    assert refused.status_code == 409


async def test_a_refusal_of_the_api_is_a_page_naming_it(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, database: Database
) -> None:
    w = await world(client, database)
    weekly = await new_plan(client, "weekly", interval="week")
    page = await signed_in.get(f"/subscriptions/{w['sub']}/change?plan={weekly}&effective=now")
    assert page.status_code == 422, page.text
    assert "effective" in page.text
    assert "Nothing was changed" in page.text


@pytest.mark.parametrize("sent", [None, "", "wrong"])
async def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, database: Database, sent: str | None
) -> None:
    w = await world(client, database)
    sid = w["sub"]
    fields = form_of((await signed_in.get(f"/subscriptions/{sid}/cancel?at=now")).text)
    del fields["csrf_token"]
    if sent is not None:
        fields["csrf_token"] = sent
    before = await count(database, events)
    response = await signed_in.post(f"/subscriptions/{sid}/cancel", data=fields)
    assert response.status_code == 403
    assert "Nothing was changed" in response.text
    assert (await get_json(client, f"/rest/v1/subscriptions/{sid}"))["status"] == "active"
    assert await count(database, events) == before


async def test_a_stale_confirmation_is_refused_and_writes_nothing(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    """The page is shown, the subscription changes (through the API, at the same instant),
    then the person confirms: 409, and nothing of the confirmed action is written."""
    w = await world(client, database)
    sid = w["sub"]
    page = await signed_in.get(f"/subscriptions/{sid}/change?quantity=5")
    fields = form_of(page.text)
    changed = await client.post(f"/rest/v1/subscriptions/{sid}/change", json={"quantity": 3})
    assert changed.status_code == 200, changed.text
    before = await count(database, events)
    response = await signed_in.post(f"/subscriptions/{sid}/change", data=fields)
    assert response.status_code == 409, response.text
    assert "The subscription changed" in response.text
    assert "Nothing was changed" in response.text
    assert (await get_json(client, f"/rest/v1/subscriptions/{sid}"))["pendingChange"][
        "quantity"
    ] == 3
    assert await count(database, events) == before


async def test_a_confirmation_whose_outcome_moved_is_refused(
    browser: httpx.AsyncClient,
    token: str,
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
) -> None:
    """Nothing in the row changed, but the day did: a cancel at period end confirmed on
    November 30th would end on December 1st; confirmed on December 1st, it would end on
    January 1st. Refused, nothing written."""
    w = await world(client, database)
    sid = w["sub"]
    clock.set(datetime(2026, 11, 30, 23, tzinfo=UTC))
    signed_in = browser
    assert (await sign_in(browser, token)).status_code == 303
    page = await signed_in.get(f"/subscriptions/{sid}/cancel")
    assert "It ends on 2026-12-01" in page.text
    clock.advance(timedelta(hours=2))
    response = await signed_in.post(f"/subscriptions/{sid}/cancel", data=form_of(page.text))
    assert response.status_code == 409, response.text
    assert "would now change otherwise than confirmed" in response.text
    assert (await get_json(client, f"/rest/v1/subscriptions/{sid}"))["cancelAt"] is None


async def test_a_form_not_from_its_confirmation_is_refused(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, database: Database
) -> None:
    w = await world(client, database)
    csrf = await csrf_of(signed_in, "/")
    response = await signed_in.post(
        f"/subscriptions/{w['sub']}/cancel", data={"csrf_token": csrf, "at": "now"}
    )
    assert response.status_code == 400
    assert (await get_json(client, f"/rest/v1/subscriptions/{w['sub']}"))["status"] == "active"


async def test_a_read_session_sees_the_pages_but_no_action(
    app: FastAPI, client: httpx.AsyncClient, database: Database
) -> None:
    w = await world(client, database)
    sid = w["sub"]
    reader_token = await _create_token(database, "reader", scope="read")
    async with _browser(app) as reader:
        assert (await sign_in(reader, reader_token)).status_code == 303
        page = await reader.get(f"/subscriptions/{sid}")
        assert page.status_code == 200
        assert "Change…" not in page.text
        assert f"/subscriptions/{sid}/cancel" not in page.text
        assert "may only read" in page.text
        confirm = await reader.get(f"/subscriptions/{sid}/cancel?at=now")
        assert confirm.status_code == 200
        assert confirm.text.count('method="post"') == 1  # the sign-out form only
        assert "What will happen" not in confirm.text
        csrf = CSRF.search(confirm.text)
        assert csrf is not None
        before = await count(database, events)
        refused = await reader.post(
            f"/subscriptions/{sid}/cancel",
            data={"csrf_token": csrf.group(1), "at": "now", "version": "x", "outcome": "y"},
        )
        assert refused.status_code == 403
        assert await count(database, events) == before
    assert (await get_json(client, f"/rest/v1/subscriptions/{sid}"))["status"] == "active"


# -- the overview's MRR -------------------------------------------------------------------


async def _plan(
    client: httpx.AsyncClient, code: str, value: str, currency: str, **over: Any
) -> int:
    return await new_plan(client, code, amount={"value": value, "currency": currency}, **over)


async def test_mrr_per_currency_and_counts(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    eur, jpy = await customer(client), await customer(client, "JPY", "Asia/Tokyo")
    month = await _plan(client, "m", "30.00", "EUR")
    year = await _plan(client, "y", "120.00", "EUR", interval="year")
    week2 = await _plan(client, "w2", "12.00", "EUR", interval="week", intervalCount=2)
    day = await _plan(client, "d", "1.00", "EUR", interval="day")
    trial = await _plan(client, "t", "99.00", "EUR", trialDays=30)
    yen = await _plan(client, "jm", "1000", "JPY", interval="year", intervalCount=2)
    await subscribe(client, customerId=eur, planId=month, quantity=2)  # 60
    await subscribe(client, customerId=eur, planId=year)  # 10
    await subscribe(client, customerId=eur, planId=week2)  # 12 x 52 / 24 = 26
    for _ in range(3):  # 365 / 12 = 30.41666... each; 91.25 rounded once
        await subscribe(client, customerId=eur, planId=day)
    await subscribe(client, customerId=eur, planId=trial)  # trialing: not counted
    ending = await subscribe(client, customerId=eur, planId=month)  # a pending cancel counts
    assert (await client.post(f"/rest/v1/subscriptions/{ending['id']}/cancel")).status_code == 200
    gone = await subscribe(client, customerId=eur, planId=month)  # canceled: not counted
    cancel = await client.post(f"/rest/v1/subscriptions/{gone['id']}/cancel", json={"at": "now"})
    assert cancel.status_code == 200
    later = await subscribe(client, customerId=eur, planId=month, startDate="2027-01-01")
    assert later["status"] == "scheduled"
    await subscribe(client, customerId=jpy, planId=yen)  # 1000 / 24 = 41.666... -> 42
    page = await signed_in.get("/")
    assert page.status_code == 200
    # 60 + 10 + 26 + 91.25 + 30 = 217.25
    assert '<ul class="amounts" id="mrr"><li>217.25 EUR</li><li>42 JPY</li></ul>' in page.text
    assert '<span data-field="active">8</span>' in page.text
    assert '<span data-field="trialing">1</span>' in page.text


async def test_mrr_follows_each_customers_local_date(
    browser: httpx.AsyncClient, token: str, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    """At 2026-11-30T12:00Z it is already December 1st at Kiritimati (UTC+14), still
    November 30th at Pago Pago (UTC-11): a subscription starting December 1st is active
    for the first, scheduled for the second."""
    clock.set(datetime(2026, 11, 30, 12, tzinfo=UTC))
    east = await customer(client, tz="Pacific/Kiritimati")
    west = await customer(client, tz="Pacific/Pago_Pago")
    plan = await _plan(client, "m", "30.00", "EUR")
    for cid in (east, west):
        await subscribe(client, customerId=cid, planId=plan, startDate="2026-12-01")
    assert (await sign_in(browser, token)).status_code == 303  # a session of that day
    page = await browser.get("/")
    assert '<ul class="amounts" id="mrr"><li>30.00 EUR</li></ul>' in page.text
    assert '<span data-field="active">1</span>' in page.text


async def test_mrr_counts_a_change_in_effect_not_yet_billed(
    signed_in: httpx.AsyncClient,
    token: str,
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
) -> None:
    cid = await customer(client)
    month = await _plan(client, "m", "30.00", "EUR")
    big = await _plan(client, "b", "45.00", "EUR")
    sub = await subscribe(client, customerId=cid, planId=month)
    changed = await client.post(
        f"/rest/v1/subscriptions/{sub['id']}/change", json={"planId": big, "quantity": 2}
    )
    assert changed.status_code == 200, changed.text
    assert '<ul class="amounts" id="mrr"><li>30.00 EUR</li></ul>' in (await signed_in.get("/")).text
    clock.set(datetime(2026, 12, 1, 0, 30, tzinfo=UTC))  # in effect, not generated yet
    assert (await sign_in(signed_in, token)).status_code == 303  # a session of that day
    async with database.read() as conn:
        plan_id = await conn.scalar(select(subscriptions.c.plan_id))
    assert plan_id == month
    assert '<ul class="amounts" id="mrr"><li>90.00 EUR</li></ul>' in (await signed_in.get("/")).text


async def test_a_change_now_during_a_trial_applies_at_once(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    cid = await customer(client)
    plan = await new_plan(client, "trial", trialDays=14)
    sub = await subscribe(client, customerId=cid, planId=plan)
    assert sub["status"] == "trialing"
    page = await signed_in.get(f"/subscriptions/{sub['id']}/change?quantity=3&effective=now")
    assert page.status_code == 200, page.text
    assert "From today it is billed for Pro (trial, 30.00 EUR every month) × 3" in page.text
    assert "Its status stays trialing." in page.text
    done = await signed_in.post(f"/subscriptions/{sub['id']}/change", data=form_of(page.text))
    assert done.status_code == 303, done.text
    shown = await get_json(client, f"/rest/v1/subscriptions/{sub['id']}")
    assert (shown["quantity"], shown["pendingChange"]) == (3, None)


async def test_the_subscription_page_shows_its_change_lines_and_credit(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    """What a change `now` writes (a `credit` and a `proration` line on an invoice, or a
    credit entry naming the subscription) shows on its page."""
    w = await world(client, database)
    [invoice, *_] = await generated(database, clock)
    sid, cid = w["sub"], w["customer"]
    async with database.write() as conn:
        await conn.execute(
            invoice_lines.insert(),
            [
                {
                    "invoice_id": invoice,
                    "kind": kind,
                    "description": f"{kind} <em>line</em>",
                    "amount_minor": amount,
                    "subscription_id": sid,
                    "period_start": date(2026, 11, 22),
                    "period_end": date(2026, 12, 1),
                    "quantity": 2,
                }
                for kind, amount in (("credit", -1800), ("proration", 2700))
            ],
        )
        await conn.execute(
            credit_entries.insert().values(
                customer_id=cid,
                currency="EUR",
                amount_minor=500,
                balance_minor=500,
                reason="cancel",
                subscription_id=sid,
                actor="tester",
                created_at=NOW,
            )
        )
    page = await signed_in.get(f"/subscriptions/{sid}")
    assert page.status_code == 200
    assert "Changes billed or credited" in page.text
    assert "credit &lt;em&gt;line&lt;/em&gt;" in page.text
    assert "-18.00 EUR" in page.text
    assert "27.00 EUR" in page.text
    assert "+5.00 EUR" in page.text
    assert "2026-11-22 – 2026-12-01" in page.text


async def test_a_change_now_previews_its_invoice_and_makes_exactly_it(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    """30.00 EUR a month x 2 since November 1st; on November 22nd, x 3 now: the unused
    9 of 30 days are credited at x 2 (-18.00) and charged at x 3 (27.00), one invoice of
    9.00 EUR; the page names it before, and confirming makes that invoice, once."""
    w = await world(client, database)
    await generated(database, clock)
    sid = w["sub"]
    before = await count(database, invoices)
    page = await signed_in.get(f"/subscriptions/{sid}/change?quantity=3&effective=now")
    assert page.status_code == 200, page.text
    assert "An invoice of 9.00 EUR" in page.text
    assert "-18.00 EUR" in page.text
    assert "27.00 EUR" in page.text
    assert "2026-11-22 – 2026-12-01" in page.text
    assert await count(database, invoices) == before  # the preview wrote nothing
    done = await signed_in.post(f"/subscriptions/{sid}/change", data=form_of(page.text))
    assert done.status_code == 303, done.text
    assert await count(database, invoices) == before + 1
    async with database.read() as conn:
        newest = (await conn.execute(select(invoices).order_by(invoices.c.id.desc()))).first()
    assert newest is not None
    assert (newest.amount_minor, newest.status) == (900, "PENDING")
    shown = await signed_in.get(f"/subscriptions/{sid}")
    assert "Changes billed or credited" in shown.text
    assert f'href="/invoices/{newest.id}"' in shown.text


async def test_a_cancel_now_with_proration_credits_the_customer(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    w = await world(client, database)
    await generated(database, clock)
    sid, cid = w["sub"], w["customer"]
    page = await signed_in.get(f"/subscriptions/{sid}/cancel?at=now&prorate=true")
    assert page.status_code == 200, page.text
    assert "+18.00 EUR" in page.text  # 9 of 30 days of 60.00
    done = await signed_in.post(f"/subscriptions/{sid}/cancel", data=form_of(page.text))
    assert done.status_code == 303, done.text
    customer_page = await signed_in.get(f"/customers/{cid}")
    assert '<p class="big" id="credit-balance">18.00 EUR</p>' in customer_page.text
    assert "tester" in customer_page.text  # the session's token is the entry's actor
    async with database.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(credit_entries)) == 1
