"""The dashboard's bulk actions: the invoice list's filter, a confirmation with the count,
and an action on the filter the confirmation showed (SQLite and PostgreSQL)."""

from __future__ import annotations

import html
import re

import httpx

from antaeus.clock import ManualClock
from antaeus.simulators.simulated import SimulatedPaymentProvider
from antaeus.storage.database import Database
from tests.api.test_billing_api import new_customer, new_invoice, simulator  # noqa: F401
from tests.api.test_bulk_actions import _a_billed_world, _actions, _statuses
from tests.dashboard.test_pages import browser, signed_in  # noqa: F401  (fixtures)

HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def _form(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in HIDDEN.findall(page)}


async def test_the_list_offers_bulk_actions_only_on_a_filter(
    signed_in: httpx.AsyncClient,  # noqa: F811
    client: httpx.AsyncClient,
) -> None:
    await new_invoice(client, await new_customer(client))
    plain = await signed_in.get("/invoices")
    assert plain.status_code == 200
    assert "/invoices/bulk/" not in plain.text
    page = await signed_in.get("/invoices", params={"status": "FAILED", "failure": "card_declined"})
    assert page.status_code == 200, page.text
    assert 'href="/invoices/bulk/retry?status=FAILED&amp;failure=card_declined"' in page.text
    assert 'href="/invoices/bulk/void?status=FAILED&amp;failure=card_declined"' in page.text
    assert '<option value="card_declined" selected>' in page.text


async def test_bulk_retry_confirms_the_count_then_acts_and_shows_the_counts(
    signed_in: httpx.AsyncClient,  # noqa: F811
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,  # noqa: F811
) -> None:
    world = await _a_billed_world(client, database, clock, simulator)
    customer = world["customers"][0]  # two FAILED customer_not_found, one PENDING
    confirm = await signed_in.get("/invoices/bulk/retry", params={"customer": str(customer)})
    assert confirm.status_code == 200, confirm.text
    count = re.sub(r"<[^>]+>", "", confirm.text)
    assert "3 invoices match; 2 of them allow this action now" in count
    form = _form(confirm.text)
    assert form["customer"] == str(customer)
    assert "status" not in form
    response = await signed_in.post(
        "/invoices/bulk/retry", data={**form, "note": "accounts created"}
    )
    assert response.status_code == 200, response.text
    assert '<dd data-count="matched">3</dd>' in response.text
    assert '<dd data-count="acted">2</dd>' in response.text
    assert '<dd data-count="skipped">1</dd>' in response.text
    assert await _actions(database) == [
        (iid, "retried", "tester", "accounts created") for iid in sorted(world["not_found"][:2])
    ]


async def test_a_stale_confirmation_acts_only_on_invoices_it_counted(
    signed_in: httpx.AsyncClient,  # noqa: F811
    client: httpx.AsyncClient,
    database: Database,
) -> None:
    cid = await new_customer(client)
    counted = [await new_invoice(client, cid, due_at="2027-01-01T00:00:00Z") for _ in range(3)]
    confirm = await signed_in.get(
        "/invoices/bulk/void", params={"status": "PENDING", "customer": str(cid)}
    )
    assert "3 invoices match; 3 of them allow" in re.sub(r"<[^>]+>", "", confirm.text)
    later = await new_invoice(client, cid, due_at="2027-01-01T00:00:00Z")
    response = await signed_in.post("/invoices/bulk/void", data=_form(confirm.text))
    assert response.status_code == 200, response.text
    assert '<dd data-count="acted">3</dd>' in response.text
    seen = await _statuses(client)
    assert [seen[i][0] for i in counted] == ["VOID"] * 3
    assert seen[later][0] == "PENDING"
    assert [a[0] for a in await _actions(database)] == counted


async def test_bulk_pages_refuse_what_they_cannot_do(
    signed_in: httpx.AsyncClient,  # noqa: F811
    client: httpx.AsyncClient,
    database: Database,
) -> None:
    cid = await new_customer(client)
    await new_invoice(client, cid, due_at="2027-01-01T00:00:00Z")
    assert (await signed_in.get("/invoices/bulk/retry")).status_code == 400
    assert (await signed_in.get("/invoices/bulk/refund?status=FAILED")).status_code == 404
    assert (await signed_in.get("/invoices/bulk/void?status=NOPE")).status_code == 400
    assert (await signed_in.get("/invoices/bulk/void?failure=nope")).status_code == 400
    confirm = await signed_in.get("/invoices/bulk/void", params={"customer": str(cid)})
    form = _form(confirm.text)
    no_csrf = {k: v for k, v in form.items() if k != "csrf_token"}
    refused = await signed_in.post("/invoices/bulk/void", data=no_csrf)
    assert refused.status_code == 403, refused.text
    no_filter = {k: v for k, v in form.items() if k != "customer"}
    assert (await signed_in.post("/invoices/bulk/void", data=no_filter)).status_code == 400
    assert await _actions(database) == []
    nothing = await signed_in.get("/invoices/bulk/retry", params={"customer": str(cid)})
    assert "Nothing to do" in nothing.text
    assert 'id="bulk-form"' not in nothing.text
