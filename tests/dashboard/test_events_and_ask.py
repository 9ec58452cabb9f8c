"""The invoice page's events as readable lines, and "Ask the provider now" on a REVIEW
invoice (the reconciler for that invoice, confirmed), on SQLite and PostgreSQL."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from antaeus.api.app import create_app
from antaeus.billing.runs import Scheduler
from antaeus.billing.service import open_run
from antaeus.clock import ManualClock
from antaeus.config import Settings
from antaeus.dashboard.events_view import describe
from antaeus.simulators.simulated import SimulatedPaymentProvider
from antaeus.storage.database import Database
from tests.api.test_billing_api import failed_invoice, paid_invoice, review_invoice
from tests.billing.helpers import invoice_row, make_invoices
from tests.billing.test_reconcile import CUT, MINUTE, POLICY, actions_of, recorded, worker
from tests.dashboard.test_pages import (  # noqa: F401  (fixtures)
    browser,
    csrf_of,
    sign_in,
    signed_in,
)


@pytest.fixture
async def provider(clock: ManualClock) -> AsyncIterator[SimulatedPaymentProvider]:
    simulated = SimulatedPaymentProvider(
        ":memory:",
        clock=lambda: clock.now().timestamp(),
        key_retention=POLICY.key_retention,
        network_error_rate=0.0,
        failure_rate=0.0,
        seed=1,
    )
    try:
        yield simulated
    finally:
        await simulated.aclose()


@pytest.fixture
async def app(
    settings: Settings,
    database: Database,
    clock: ManualClock,
    provider: SimulatedPaymentProvider,
) -> AsyncIterator[FastAPI]:
    """The app with the provider the dashboard asks (the in-process simulator)."""
    application = create_app(settings, clock=clock, database=database, provider=provider)
    async with application.router.lifespan_context(application):
        yield application


def _text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page))


async def _in_review_with_a_lost_charge(
    database: Database, clock: ManualClock, provider: SimulatedPaymentProvider
) -> int:
    """Charged at the provider, the answer lost, repeats refused until the sweep: REVIEW."""
    [invoice_id] = await make_invoices(database, 1, clock.now())
    provider.ambiguous_rate = 1.0
    await open_run(database, clock, POLICY, "api")
    await worker(database, provider, clock).run_until_idle()
    provider.outage = True
    clock.advance(MINUTE)
    started = clock.now() - MINUTE
    clock.set(started + CUT)
    await Scheduler(database, clock, POLICY, "external").tick()
    row = await invoice_row(database, invoice_id)
    assert (row.status, row.last_failure) == ("REVIEW", "unknown_outcome")
    return invoice_id


# -- events as lines ---------------------------------------------------------------------


async def test_events_read_as_lines_with_amount_outcome_links_and_the_json_a_click_away(
    signed_in: httpx.AsyncClient,  # noqa: F811
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    provider: SimulatedPaymentProvider,
) -> None:
    iid = await paid_invoice(client, database, clock, provider)
    page = await signed_in.get(f"/invoices/{iid}")
    assert page.status_code == 200, page.text
    events = page.text[page.text.index('id="events"') :]
    [row] = re.findall(r'<tr class="event" data-type="invoice.paid">(.*?)</tr>', events, re.S)
    what = _text(row.split("<details")[0])
    assert "Charged (attempt 1, charge " in what
    assert "89.50 EUR" in _text(row)
    assert 'class="badge event-paid">paid<' in row
    invoice = (await client.get(f"/rest/v1/invoices/{iid}")).json()
    assert f'href="/invoices/{iid}"' in row
    assert f'href="/customers/{invoice["customerId"]}"' in row
    assert re.search(r'href="/runs/\d+"', row)
    # the JSON, one click away
    details = re.search(r"<details.*?</details>", row, re.S)
    assert details is not None
    assert '"idempotencyKey"' in html.unescape(details.group())
    assert "{" not in what


async def test_a_persons_action_and_a_failure_read_as_sentences(
    signed_in: httpx.AsyncClient,  # noqa: F811
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    provider: SimulatedPaymentProvider,
) -> None:
    iid = await failed_invoice(client, database, clock, provider)
    response = await client.post(f"/rest/v1/invoices/{iid}/void", json={"note": "customer left"})
    assert response.status_code == 200, response.text
    text = _text((await signed_in.get(f"/invoices/{iid}")).text)
    assert "Failed, a person must act: the provider does not know the customer" in text
    assert 'tester voided it, FAILED → VOID: "customer left"' in text


def test_an_unknown_event_type_or_shape_still_gets_a_line() -> None:
    line = describe({"id": "evt_9", "type": "invoice.teleported", "data": {"invoice": 5}})
    assert (line["what"], line["outcome"], line["links"]) == (
        "invoice.teleported",
        "teleported",
        [],
    )
    run = describe(
        {"id": "evt_1", "type": "run.opened", "data": {"runId": 3, "trigger": "api", "invoices": 2}}
    )
    assert run["what"] == "Run opened (api) with 2 due invoices"
    assert run["links"] == [("run 3", "/runs/3")]


# -- Ask the provider now ----------------------------------------------------------------


async def test_ask_the_provider_now_confirms_then_settles_and_shows_the_answer(
    browser: httpx.AsyncClient,  # noqa: F811
    token: str,
    database: Database,
    clock: ManualClock,
    provider: SimulatedPaymentProvider,
) -> None:
    iid = await _in_review_with_a_lost_charge(database, clock, provider)
    assert (await sign_in(browser, token)).status_code == 303  # the clock moved on: now
    [charge] = provider.store.ledger()
    page = await browser.get(f"/invoices/{iid}")
    assert f'href="/invoices/{iid}/ask-provider"' in page.text
    confirm = await browser.get(f"/invoices/{iid}/ask-provider")
    assert confirm.status_code == 200, confirm.text
    assert "attempt 1" in _text(confirm.text)
    assert (await invoice_row(database, iid)).status == "REVIEW"  # the page asked nothing
    assert await recorded(database, iid) == []

    csrf = await csrf_of(browser, f"/invoices/{iid}/ask-provider")
    done = await browser.post(
        f"/invoices/{iid}/ask-provider", data={"csrf_token": csrf, "attempt": "1"}
    )
    assert done.status_code == 200, done.text
    assert '<dd data-field="result">charged</dd>' in done.text
    assert '<dd data-field="outcome">paid</dd>' in done.text
    assert charge.charge_id in done.text
    assert (await invoice_row(database, iid)).status == "PAID"
    [action] = await actions_of(database, iid)
    assert (action.actor, action.action, action.charge_id) == (
        "reconciler",
        "resolved_charged",
        charge.charge_id,
    )
    [asked] = await recorded(database, iid)
    assert (asked.result, asked.outcome) == ("charged", "paid")
    assert len(provider.store.ledger()) == 1
    after = await browser.get(f"/invoices/{iid}")
    assert "ask-provider" not in after.text


async def test_ask_is_refused_without_csrf_on_a_stale_attempt_and_when_it_cannot_settle(
    browser: httpx.AsyncClient,  # noqa: F811
    token: str,
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    provider: SimulatedPaymentProvider,
) -> None:
    iid = await _in_review_with_a_lost_charge(database, clock, provider)
    assert (await sign_in(browser, token)).status_code == 303  # the clock moved on: now
    csrf = await csrf_of(browser, f"/invoices/{iid}/ask-provider")
    no_csrf = await browser.post(f"/invoices/{iid}/ask-provider", data={"attempt": "1"})
    assert no_csrf.status_code == 403
    stale = await browser.post(
        f"/invoices/{iid}/ask-provider", data={"csrf_token": csrf, "attempt": "2"}
    )
    assert stale.status_code == 409, stale.text
    assert "moved on" in stale.text
    assert await recorded(database, iid) == []

    reused, _run = await review_invoice(client, database, clock)  # a key used twice
    page = await browser.get(f"/invoices/{reused}")
    assert "ask-provider" not in page.text
    assert (await browser.get(f"/invoices/{reused}/ask-provider")).status_code == 409
    refused = await browser.post(f"/invoices/{reused}/ask-provider", data={"csrf_token": csrf})
    assert refused.status_code == 409
    assert "cannot be asked" in _text(refused.text)
    assert (await browser.get("/invoices/999999/ask-provider")).status_code == 404
    assert await recorded(database, reused) == []
