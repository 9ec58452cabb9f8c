"""Customer credit (issue 21) through the API, on both engines: `creditBalance`, the
entries list and a person's adjustments (never below zero, the customer's currency and
decimals, a one-line note), Idempotency-Key replays, and changes `now` racing."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from antaeus.billing.generation import generate_due
from antaeus.clock import ManualClock
from antaeus.storage.database import Database
from antaeus.storage.tables import credit_entries, customers, invoices, subscription_changes
from tests.api.test_idempotency import race  # noqa: F401  (a fixture)
from tests.api.test_plans import new_plan
from tests.api.test_subscriptions import SUBS, customer, subscribe

CUSTOMERS = "/rest/v1/customers"


def _body(value: Any, currency: str = "EUR", note: Any = "goodwill") -> dict[str, Any]:
    return {"amount": {"value": value, "currency": currency}, "note": note}


def _decimal(response: httpx.Response) -> Any:
    return json.loads(response.text, parse_float=Decimal)


async def _stored(database: Database, cid: int) -> tuple[int, int]:
    """(the customer's balance in minor units, how many entries it has)"""
    async with database.read() as conn:
        balance = (
            await conn.execute(select(customers.c.credit_minor).where(customers.c.id == cid))
        ).scalar_one()
        count = (
            await conn.execute(
                select(func.count())
                .select_from(credit_entries)
                .where(credit_entries.c.customer_id == cid)
            )
        ).scalar_one()
    return int(balance), int(count)


async def test_adjustments_add_and_take_and_are_listed(
    client: httpx.AsyncClient, database: Database
) -> None:
    cid = await customer(client)
    shown = _decimal(await client.get(f"{CUSTOMERS}/{cid}"))
    assert shown["creditBalance"] == {"value": Decimal("0.00"), "currency": "EUR"}
    url = f"{CUSTOMERS}/{cid}/credit-entries"
    first = await client.post(url, json=_body("12.50", note="outage of 2027-01-12"))
    assert first.status_code == 201, first.text
    entry = _decimal(first)
    assert entry == {
        "id": entry["id"],
        "customerId": cid,
        "amount": {"value": Decimal("12.50"), "currency": "EUR"},
        "balanceAfter": {"value": Decimal("12.50"), "currency": "EUR"},
        "reason": "adjustment",
        "changeId": None,
        "subscriptionId": None,
        "invoiceId": None,
        "note": "outage of 2027-01-12",
        "actor": "tester",
        "createdAt": "2026-11-22T12:00:00Z",
    }
    taken = await client.post(url, json=_body(-2.5))  # a JSON number works too
    assert taken.status_code == 201, taken.text
    assert _decimal(taken)["balanceAfter"]["value"] == Decimal("10.00")
    assert await _stored(database, cid) == (1000, 2)
    shown = _decimal(await client.get(f"{CUSTOMERS}/{cid}"))
    assert shown["creditBalance"] == {"value": Decimal("10.00"), "currency": "EUR"}
    listed = _decimal(await client.get(f"{CUSTOMERS}?limit=10"))
    assert listed[0]["creditBalance"]["value"] == Decimal("10.00")
    # paginated like every list
    await client.post(url, json=_body("1.00"))
    page = await client.get(url, params={"limit": 2})
    assert [e["amount"]["value"] for e in page.json()] == [12.5, -2.5]
    assert 'rel="next"' in page.headers["link"]
    rest = await client.get(url, params={"limit": 2, "after": page.json()[-1]["id"]})
    assert [e["amount"]["value"] for e in rest.json()] == [1.0]
    assert "link" not in rest.headers


async def test_below_zero_is_refused_and_nothing_is_written(
    client: httpx.AsyncClient, database: Database
) -> None:
    cid = await customer(client)
    url = f"{CUSTOMERS}/{cid}/credit-entries"
    assert (await client.post(url, json=_body("5.00"))).status_code == 201
    refused = await client.post(url, json=_body("-5.01"))
    assert refused.status_code == 422, refused.text
    assert (refused.json()["error"], refused.json()["field"]) == ("validation_error", "amount")
    assert "below zero" in refused.json()["message"]
    assert await _stored(database, cid) == (500, 1)
    exact = await client.post(url, json=_body("-5.00"))
    assert exact.status_code == 201, exact.text
    assert await _stored(database, cid) == (0, 2)
    again = await client.post(url, json=_body("-0.01"))
    assert (again.status_code, again.json()["field"]) == (422, "amount")
    assert await _stored(database, cid) == (0, 2)


@pytest.mark.parametrize(
    ("body", "status", "error", "field"),
    [
        (_body("1.00", currency="DKK"), 422, "currency_mismatch", "amount.currency"),
        (_body("1.001"), 422, "validation_error", "amount.value"),
        (_body("0.00"), 422, "validation_error", "amount.value"),
        (_body(1.005), 422, "validation_error", "amount.value"),  # a JSON number, exact
        (_body("-0.001"), 422, "validation_error", "amount.value"),
        (_body("1e3"), 422, "validation_error", "amount.value"),
        (_body("1.00", currency="XXX"), 422, "unknown_currency", "amount.currency"),
        (_body("1.00", note="a\u0000b"), 422, "validation_error", "note"),
        (_body("1.00", note="two\nlines"), 422, "validation_error", "note"),
        (_body("1.00", note=""), 422, "validation_error", "note"),
        (_body("1.00", note="x" * 501), 422, "validation_error", "note"),
        (_body("1.00", note=5), 422, "validation_error", "note"),
        ({"amount": {"value": "1.00", "currency": "EUR"}}, 422, "validation_error", "note"),
        ({**_body("1.00"), "reason": "change"}, 422, "validation_error", "reason"),
    ],
)
async def test_bad_adjustments_are_refused_naming_the_field(
    client: httpx.AsyncClient,
    database: Database,
    body: dict[str, Any],
    status: int,
    error: str,
    field: str,
) -> None:
    cid = await customer(client)
    response = await client.post(f"{CUSTOMERS}/{cid}/credit-entries", json=body)
    assert response.status_code == status, response.text
    assert (response.json()["error"], response.json()["field"]) == (error, field)
    assert await _stored(database, cid) == (0, 0)


async def test_digits_per_currency(client: httpx.AsyncClient) -> None:
    jpy = await customer(client, currency="JPY")
    kwd = await customer(client, currency="KWD")
    for cid, code, good, bad in ((jpy, "JPY", "150", "1.5"), (kwd, "KWD", "1.234", "1.2345")):
        url = f"{CUSTOMERS}/{cid}/credit-entries"
        refused = await client.post(url, json=_body(bad, currency=code))
        assert (refused.status_code, refused.json()["field"]) == (422, "amount.value")
        made = await client.post(url, json=_body(good, currency=code))
        assert made.status_code == 201, made.text
        assert _decimal(made)["balanceAfter"] == {"value": Decimal(good), "currency": code}


async def test_a_note_may_be_500_characters(client: httpx.AsyncClient) -> None:
    cid = await customer(client)
    made = await client.post(f"{CUSTOMERS}/{cid}/credit-entries", json=_body("1", note="é" * 500))
    assert made.status_code == 201, made.text
    assert made.json()["note"] == "é" * 500


async def test_an_id_of_another_table_is_404(client: httpx.AsyncClient, database: Database) -> None:
    cid = await customer(client)
    plans = [await new_plan(client, f"p{i}") for i in range(3)]
    other = max(plans)
    assert other != cid
    for response in (
        await client.get(f"{CUSTOMERS}/{other}/credit-entries"),
        await client.post(f"{CUSTOMERS}/{other}/credit-entries", json=_body("1.00")),
    ):
        assert (response.status_code, response.json()["error"]) == (404, "not_found")
    for bad in ("0", "x", "1.0", "9" * 30):
        got = await client.get(f"{CUSTOMERS}/{bad}/credit-entries")
        assert (got.status_code, got.json()["field"]) == (422, "id"), got.text
    async with database.read() as conn:
        count = (await conn.execute(select(func.count()).select_from(credit_entries))).scalar_one()
    assert count == 0


async def test_idempotency_key_replays_and_refuses_another_body(
    client: httpx.AsyncClient, database: Database
) -> None:
    cid = await customer(client)
    url = f"{CUSTOMERS}/{cid}/credit-entries"
    headers = {"Idempotency-Key": "adj-1"}
    one = await client.post(url, json=_body("3.00"), headers=headers)
    two = await client.post(url, json=_body("3.00"), headers=headers)
    assert (one.status_code, two.status_code) == (201, 201)
    assert two.json() == one.json()
    assert two.headers["idempotent-replayed"] == "true"
    assert await _stored(database, cid) == (300, 1)
    reused = await client.post(url, json=_body("4.00"), headers=headers)
    assert (reused.status_code, reused.json()["error"]) == (422, "idempotency_key_reused")
    # a stale replay answers what was done then, not the balance now
    await client.post(url, json=_body("-3.00"))
    stale = await client.post(url, json=_body("3.00"), headers=headers)
    assert stale.json() == one.json()
    assert await _stored(database, cid) == (0, 2)


async def test_a_refused_adjustment_with_a_key_can_be_sent_again(
    client: httpx.AsyncClient, database: Database
) -> None:
    """A refusal stores nothing under the key: once the credit is there, it succeeds."""
    cid = await customer(client)
    url = f"{CUSTOMERS}/{cid}/credit-entries"
    headers = {"Idempotency-Key": "take-5"}
    refused = await client.post(url, json=_body("-5.00"), headers=headers)
    assert refused.status_code == 422
    await client.post(url, json=_body("5.00"))
    taken = await client.post(url, json=_body("-5.00"), headers=headers)
    assert taken.status_code == 201, taken.text
    assert await _stored(database, cid) == (0, 2)


async def test_concurrent_adjustments_with_one_key_make_one_entry(
    client: httpx.AsyncClient,
    database: Database,
    race: dict[str, int],  # noqa: F811
) -> None:
    cid = await customer(client)
    url = f"{CUSTOMERS}/{cid}/credit-entries"
    headers = {"Idempotency-Key": "race-adj"}
    responses = await asyncio.gather(
        *(client.post(url, json=_body("2.00"), headers=headers) for _ in range(3))
    )
    assert [r.status_code for r in responses] == [201, 201, 201], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await _stored(database, cid) == (200, 1)


async def test_concurrent_takes_never_go_below_zero(
    client: httpx.AsyncClient,
    database: Database,
    race: dict[str, int],  # noqa: F811
) -> None:
    """Three takes of 4.00 from 10.00 at once, each with its own key: two succeed."""
    cid = await customer(client)
    url = f"{CUSTOMERS}/{cid}/credit-entries"
    await client.post(url, json=_body("10.00"))
    responses = await asyncio.gather(
        *(
            client.post(url, json=_body("-4.00"), headers={"Idempotency-Key": f"take-{i}"})
            for i in range(3)
        )
    )
    assert sorted(r.status_code for r in responses) == [201, 201, 422]
    assert await _stored(database, cid) == (200, 3)


async def test_an_adjustment_and_a_change_now_share_the_balance(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    """A downgrade's credit lands on top of an adjustment; one running balance."""
    cid = await customer(client)
    big = await new_plan(client, "big", amount={"value": "60.00", "currency": "EUR"})
    small = await new_plan(client, "small")
    clock.set(datetime(2027, 2, 1, 8, tzinfo=UTC))
    sid = (await subscribe(client, customerId=cid, planId=big))["id"]
    await generate_due(database, clock)
    url = f"{CUSTOMERS}/{cid}/credit-entries"
    await client.post(url, json=_body("1.00"))
    clock.set(datetime(2027, 2, 15, 10, tzinfo=UTC))
    got = await client.post(f"{SUBS}/{sid}/change", json={"planId": small, "effective": "now"})
    assert got.status_code == 200, got.text
    entries = _decimal(await client.get(url))
    assert [(e["reason"], e["balanceAfter"]["value"]) for e in entries] == [
        ("adjustment", Decimal("1.00")),
        ("change", Decimal("16.00")),
    ]


async def test_two_changes_now_racing_take_turns(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    race: dict[str, int],  # noqa: F811
) -> None:
    """Quantity 1 -> 2 and 1 -> 3 at once: they take turns (customer, then subscription),
    each prorating from where the other left it; in either order the money moved is the
    final quantity's: (invoices - credit) = (final - 1) x 15.00."""
    cid = await customer(client)
    plan = await new_plan(client)
    clock.set(datetime(2027, 2, 1, 8, tzinfo=UTC))
    sid = (await subscribe(client, customerId=cid, planId=plan))["id"]
    await generate_due(database, clock)
    clock.set(datetime(2027, 2, 15, 10, tzinfo=UTC))
    responses = await asyncio.gather(
        *(
            client.post(
                f"{SUBS}/{sid}/change",
                json={"quantity": q, "effective": "now"},
                headers={"Idempotency-Key": f"q-{q}"},
            )
            for q in (2, 3)
        )
    )
    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    final = (await client.get(f"{SUBS}/{sid}")).json()["quantity"]
    assert final in (2, 3)
    async with database.read() as conn:
        invoiced = (
            await conn.execute(
                select(func.coalesce(func.sum(invoices.c.amount_minor), 0)).where(
                    invoices.c.due_at == datetime(2027, 2, 15, 10, tzinfo=UTC)
                )
            )
        ).scalar_one()
        changes = (
            await conn.execute(select(func.count()).select_from(subscription_changes))
        ).scalar_one()
    balance, _ = await _stored(database, cid)
    assert int(invoiced) - balance == (final - 1) * 1500
    assert changes == 2
    if database.dialect == "postgresql":
        assert race["saves"] == 2
