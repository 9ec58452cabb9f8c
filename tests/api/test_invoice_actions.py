"""GET /rest/v1/invoices/{id}/actions: what people did to an invoice, read back."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from antaeus.clock import ManualClock
from antaeus.security import generate_token, hash_token
from antaeus.simulators.simulated import SimulatedPaymentProvider
from antaeus.storage.database import Database
from antaeus.storage.repositories.tokens import TokenRepository
from tests.api.test_billing_api import (
    LINK,
    NOW_Z,
    failed_invoice,
    get_json,
    new_customer,
    new_invoice,
    review_invoice,
    simulator,  # noqa: F401  (the fixture)
)

ACTION_KEYS = {
    "id",
    "actor",
    "action",
    "fromStatus",
    "toStatus",
    "note",
    "chargeId",
    "createdAt",
}


async def test_no_action_is_an_empty_list(client: httpx.AsyncClient) -> None:
    iid = await new_invoice(client, await new_customer(client))
    response = await client.get(f"/rest/v1/invoices/{iid}/actions")
    assert response.status_code == 200, response.text
    assert response.json() == []
    assert "link" not in response.headers


async def test_retry_resolve_and_void_show_up_with_the_token_name(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,  # noqa: F811
) -> None:
    failed = await failed_invoice(client, database, clock, simulator)
    review, _ = await review_invoice(client, database, clock)
    charged, _ = await review_invoice(client, database, clock)
    pending = await new_invoice(client, await new_customer(client), due_at="2027-01-01T00:00:00Z")
    calls = [
        (failed, "retry", {"note": "provider fixed"}),
        (review, "resolve", {"charged": False, "note": "nothing moved"}),
        (charged, "resolve", {"charged": True, "chargeId": "ch_x", "note": "in the dashboard"}),
        (pending, "void", {"note": "duplicate"}),
    ]
    for iid, action, body in calls:
        response = await client.post(f"/rest/v1/invoices/{iid}/{action}", json=body)
        assert response.status_code == 200, (action, response.text)

    expected = {
        failed: ("retried", "FAILED", "PENDING", "provider fixed", None),
        review: ("resolved_not_charged", "REVIEW", "PENDING", "nothing moved", None),
        charged: ("resolved_charged", "REVIEW", "PAID", "in the dashboard", "ch_x"),
        pending: ("voided", "PENDING", "VOID", "duplicate", None),
    }
    for iid, (action, before, after, note, charge_id) in expected.items():
        [entry] = await get_json(client, f"/rest/v1/invoices/{iid}/actions")
        assert set(entry) == ACTION_KEYS
        assert type(entry["id"]) is int
        assert entry["actor"] == "tester"
        assert (
            entry["action"],
            entry["fromStatus"],
            entry["toStatus"],
            entry["note"],
            entry["chargeId"],
        ) == (action, before, after, note, charge_id)
        assert entry["createdAt"] == NOW_Z


async def test_actions_without_a_note_and_by_another_token(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,  # noqa: F811
) -> None:
    iid = await failed_invoice(client, database, clock, simulator)
    assert (await client.post(f"/rest/v1/invoices/{iid}/retry")).status_code == 200
    value = generate_token()
    async with database.write() as conn:
        await TokenRepository(conn).create("night-shift", hash_token(value), clock.now())
    clock.advance(timedelta(minutes=5))
    response = await client.post(
        f"/rest/v1/invoices/{iid}/void", headers={"Authorization": f"Bearer {value}"}
    )
    assert response.status_code == 200, response.text

    entries = await get_json(client, f"/rest/v1/invoices/{iid}/actions")
    assert [
        (e["actor"], e["action"], e["fromStatus"], e["toStatus"], e["note"], e["createdAt"])
        for e in entries
    ] == [
        ("tester", "retried", "FAILED", "PENDING", None, NOW_Z),
        ("night-shift", "voided", "PENDING", "VOID", None, "2026-11-22T12:05:00Z"),
    ]
    assert entries[0]["id"] < entries[1]["id"]


async def test_actions_paginate_with_limit_after_and_link(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,  # noqa: F811
) -> None:
    iid = await failed_invoice(client, database, clock, simulator)
    other = await failed_invoice(client, database, clock, simulator)
    # FAILED -> retry -> PENDING -> void: two actions; interleave another invoice's
    for target in (iid, other):
        response = await client.post(f"/rest/v1/invoices/{target}/retry", json={"note": "r"})
        assert response.status_code == 200, response.text
    for target in (other, iid):
        response = await client.post(f"/rest/v1/invoices/{target}/void", json={"note": "v"})
        assert response.status_code == 200, response.text

    everything = await get_json(client, f"/rest/v1/invoices/{iid}/actions")
    assert [e["action"] for e in everything] == ["retried", "voided"]

    first = await client.get(f"/rest/v1/invoices/{iid}/actions", params={"limit": 1})
    assert first.status_code == 200, first.text
    assert first.json() == everything[:1]
    match = LINK.fullmatch(first.headers["link"])
    assert match
    assert f"after={everything[0]['id']}" in match.group(1)
    assert "limit=1" in match.group(1)
    assert f"/rest/v1/invoices/{iid}/actions" in match.group(1)

    second = await client.get(match.group(1))
    assert second.status_code == 200, second.text
    assert second.json() == everything[1:]
    assert "link" not in second.headers

    exact = await client.get(f"/rest/v1/invoices/{iid}/actions", params={"limit": 2})
    assert (exact.json(), "link" in exact.headers) == (everything, False)
    beyond = await client.get(
        f"/rest/v1/invoices/{iid}/actions", params={"after": everything[-1]["id"]}
    )
    assert (beyond.status_code, beyond.json()) == (200, [])


async def test_unknown_invoice_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/rest/v1/invoices/424242/actions")
    assert response.status_code == 404, response.text
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize("bad", ["abc", "1.5", "-1", "0"])
async def test_invalid_id_is_422(client: httpx.AsyncClient, bad: str) -> None:
    response = await client.get(f"/rest/v1/invoices/{bad}/actions")
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"


@pytest.mark.parametrize("query", ["limit=0", "limit=10001", "limit=x", "after=-1"])
async def test_invalid_page_is_422(client: httpx.AsyncClient, query: str) -> None:
    iid = await new_invoice(client, await new_customer(client))
    response = await client.get(f"/rest/v1/invoices/{iid}/actions?{query}")
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"


async def test_needs_a_token(anon: httpx.AsyncClient) -> None:
    response = await anon.get("/rest/v1/invoices/1/actions")
    assert response.status_code == 401, response.text


async def test_the_note_reads_back_exactly(client: httpx.AsyncClient) -> None:
    iid = await new_invoice(client, await new_customer(client), due_at="2027-01-01T00:00:00Z")
    note = 'line one\nline two\ttabbed — ünïcödé 💶 "quoted" <b>not html</b>' + "x" * 1900
    response = await client.post(f"/rest/v1/invoices/{iid}/void", json={"note": note})
    assert response.status_code == 200, response.text
    [entry] = await get_json(client, f"/rest/v1/invoices/{iid}/actions")
    assert entry["note"] == note


async def test_a_persons_retry_opens_a_run_of_that_invoice_with_the_trigger_retry(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,  # noqa: F811
) -> None:
    """Issue 20, item 17: a single-invoice retry opened a run that said `schedule`."""
    failed = await failed_invoice(client, database, clock, simulator)
    other = await new_invoice(client, await new_customer(client))  # due, in no run
    before = {r["id"] for r in await get_json(client, "/rest/v1/billing/runs")}
    response = await client.post(f"/rest/v1/invoices/{failed}/retry", json={"note": "fixed"})
    assert response.status_code == 200, response.text
    runs = [r for r in await get_json(client, "/rest/v1/billing/runs") if r["id"] not in before]
    assert [(r["trigger"], r["status"], r["counts"]["due"]) for r in runs] == [
        ("retry", "running", 1)
    ]
    invoice = await get_json(client, f"/rest/v1/invoices/{failed}")
    assert invoice["status"] == "PENDING"
    other_now = await get_json(client, f"/rest/v1/invoices/{other}")
    assert other_now["status"] == "PENDING"  # not taken by the person's run
    async with database.read() as conn:
        from sqlalchemy import text

        members = (
            await conn.execute(
                text("SELECT invoice_id FROM run_invoices WHERE run_id = :r"), {"r": runs[0]["id"]}
            )
        ).all()
    assert [m[0] for m in members] == [failed]
    # a second retry of the same invoice is refused (it is PENDING now) and opens nothing
    again = await client.post(f"/rest/v1/invoices/{failed}/retry")
    assert again.status_code == 409, again.text
    assert len(await get_json(client, "/rest/v1/billing/runs")) == len(before) + 1
