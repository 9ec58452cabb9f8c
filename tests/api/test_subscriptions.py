"""Subscriptions (issue 21): create, list, read, change at period end, cancel, reactivate,
on both engines. Status and current period come from the customer's local date, read
through the injected clock; every refusal is a 4xx naming its field."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from antaeus.clock import ManualClock
from antaeus.storage.database import Database
from antaeus.storage.tables import events, subscriptions
from tests.api.test_idempotency import race  # noqa: F401  (a fixture)
from tests.api.test_plans import new_plan

SUBS = "/rest/v1/subscriptions"
# NOW (tests/conftest.py) is 2026-11-22T12:00:00Z: Sunday, November 22nd in UTC.


async def customer(client: httpx.AsyncClient, currency: str = "EUR", tz: str = "UTC") -> int:
    response = await client.post("/rest/v1/customers", json={"currency": currency, "timezone": tz})
    assert response.status_code == 201, response.text
    cid: int = response.json()["id"]
    return cid


async def subscribe(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post(SUBS, json=body)
    assert response.status_code == 201, response.text
    got: dict[str, Any] = response.json()
    return got


async def stored_events(
    database: Database, *, invoices: bool = False
) -> list[tuple[str, dict[str, Any]]]:
    """The events written, oldest first; without `invoices`, only the subscription events
    (a subscription due at once also writes its first invoice's `invoice.created`)."""
    async with database.read() as conn:
        rows = await conn.execute(select(events.c.type, events.c.payload).order_by(events.c.id))
        return [
            (r.type, json.loads(r.payload))
            for r in rows
            if invoices or not r.type.startswith("invoice.")
        ]


@pytest.fixture
async def eur(client: httpx.AsyncClient) -> dict[str, int]:
    """A UTC customer in EUR and a monthly plan at 30.00 EUR."""
    return {"customerId": await customer(client), "planId": await new_plan(client)}


# -- creating ----------------------------------------------------------------------------


async def test_create_with_defaults(
    client: httpx.AsyncClient, database: Database, eur: dict[str, int]
) -> None:
    response = await client.post(SUBS, json=eur)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body == {
        "id": body["id"],
        "customerId": eur["customerId"],
        "planId": eur["planId"],
        "quantity": 1,
        "status": "active",
        "billingAnchor": "calendar",
        "startDate": "2026-11-22",
        "trialEndDate": None,
        "currentPeriodStart": "2026-11-22",
        "currentPeriodEnd": "2026-12-01",
        "cancelAt": None,
        "canceledAt": None,
        "pendingChange": None,
        "createdAt": "2026-11-22T12:00:00Z",
    }
    assert response.headers["location"] == f"{SUBS}/{body['id']}"
    assert (await client.get(f"{SUBS}/{body['id']}")).json() == body
    assert await stored_events(database) == [("subscription.created", {"subscription": body})]
    async with database.read() as conn:
        due = (await conn.execute(select(subscriptions.c.next_due_at))).scalar_one()
    # the first period (due at its start, now) was invoiced at once; the next is due Dec 1st
    assert due == datetime(2026, 12, 1, tzinfo=UTC)
    invoiced = [k for k, _ in await stored_events(database, invoices=True)]
    assert invoiced == ["subscription.created", "invoice.created"]


async def test_trial_days_default_to_the_plans(client: httpx.AsyncClient) -> None:
    cid = await customer(client)
    pid = await new_plan(client, "trial", trialDays=14)
    body = await subscribe(client, customerId=cid, planId=pid, quantity=2)
    assert body["status"] == "trialing"
    assert body["trialEndDate"] == "2026-12-06"
    assert (body["currentPeriodStart"], body["currentPeriodEnd"]) == ("2026-11-22", "2026-12-06")
    without = await subscribe(client, customerId=cid, planId=pid, trialDays=0)
    assert (without["status"], without["trialEndDate"]) == ("active", None)


async def test_anchor_defaults_to_anniversary_without_a_calendar(
    client: httpx.AsyncClient,
) -> None:
    cid = await customer(client)
    pid = await new_plan(client, "five-months", intervalCount=5)
    body = await subscribe(client, customerId=cid, planId=pid, startDate="2026-10-31")
    assert body["billingAnchor"] == "anniversary"
    assert (body["currentPeriodStart"], body["currentPeriodEnd"]) == ("2026-10-31", "2027-03-31")
    refused = await client.post(
        SUBS, json={"customerId": cid, "planId": pid, "billingAnchor": "calendar"}
    )
    assert refused.status_code == 422
    assert refused.json()["field"] == "billingAnchor"


async def test_anniversary_from_the_31st(client: httpx.AsyncClient, clock: ManualClock) -> None:
    cid = await customer(client)
    pid = await new_plan(client)
    body = await subscribe(
        client, customerId=cid, planId=pid, startDate="2026-10-31", billingAnchor="anniversary"
    )
    assert (body["currentPeriodStart"], body["currentPeriodEnd"]) == ("2026-10-31", "2026-11-30")
    clock.set(datetime(2027, 2, 28, 12, tzinfo=UTC))
    now = (await client.get(f"{SUBS}/{body['id']}")).json()
    assert (now["currentPeriodStart"], now["currentPeriodEnd"]) == ("2027-02-28", "2027-03-31")


def _bad(over: dict[str, Any], field: str, error: str = "validation_error") -> Any:
    return pytest.param(over, field, error, id=f"{field}-{over}"[:60])


@pytest.mark.parametrize(
    ("over", "field", "error"),
    [
        _bad({"quantity": 0}, "quantity"),
        _bad({"quantity": 1_000_001}, "quantity"),
        _bad({"quantity": "2"}, "quantity"),
        _bad({"quantity": 2.0}, "quantity"),
        _bad({"quantity": True}, "quantity"),
        _bad({"quantity": None}, "quantity"),
        _bad({"startDate": "2027-1-14"}, "startDate"),
        _bad({"startDate": "2027-02-30"}, "startDate"),
        _bad({"startDate": "14/01/2027"}, "startDate"),
        _bad({"startDate": "2027-01-14T00:00:00Z"}, "startDate"),
        _bad({"startDate": 20270114}, "startDate"),
        _bad({"startDate": "2027-01-14\u0000"}, "startDate"),
        _bad({"startDate": "x" * 10_000}, "startDate"),
        _bad({"startDate": "2025-11-20"}, "startDate"),  # more than 366 days back
        _bad({"startDate": "0001-01-01"}, "startDate"),
        _bad({"startDate": "2031-11-23"}, "startDate"),  # more than 5 years ahead
        _bad({"startDate": "9999-12-31"}, "startDate"),
        _bad({"billingAnchor": "monthly"}, "billingAnchor"),
        _bad({"billingAnchor": "calendar\u0000"}, "billingAnchor"),
        _bad({"billingAnchor": ""}, "billingAnchor"),
        _bad({"trialDays": 731}, "trialDays"),
        _bad({"trialDays": -1}, "trialDays"),
        _bad({"customerId": 0}, "customerId"),
        _bad({"customerId": 2**63}, "customerId"),
        _bad({"customerId": 10**40}, "customerId"),
        _bad({"customerId": "1"}, "customerId"),
        _bad({"planId": 2**63}, "planId"),
        _bad({"planId": None}, "planId"),
        _bad({"customerId": 2**63 - 1}, "customerId", "customer_not_found"),
        _bad({"planId": 2**63 - 1}, "planId", "plan_not_found"),
        _bad({"note": "x"}, "note"),
    ],
)
async def test_bad_subscriptions_are_refused_naming_the_field(
    client: httpx.AsyncClient,
    database: Database,
    eur: dict[str, int],
    over: dict[str, Any],
    field: str,
    error: str,
) -> None:
    response = await client.post(SUBS, json={**eur, **over})
    assert response.status_code == 422, response.text
    got = response.json()
    assert (got["error"], got["field"]) == (error, field), got
    assert (await client.get(SUBS)).json() == []
    assert await stored_events(database) == []


async def test_start_date_range_edges(client: httpx.AsyncClient, eur: dict[str, int]) -> None:
    daily = await new_plan(client, "daily", interval="day")
    # a year back on a monthly plan: 13 periods, within 24
    back = await subscribe(client, **eur, startDate="2025-11-21")
    assert back["status"] == "active"
    ahead = await subscribe(client, **eur, startDate="2031-11-22")
    assert (ahead["status"], ahead["currentPeriodStart"]) == ("scheduled", None)
    # 24 days back on a daily plan: 24 periods due (today's included)
    ok = await subscribe(client, customerId=eur["customerId"], planId=daily, startDate="2026-10-30")
    assert ok["status"] == "active"
    refused = await client.post(
        SUBS, json={"customerId": eur["customerId"], "planId": daily, "startDate": "2026-10-29"}
    )
    assert refused.status_code == 422
    assert refused.json()["field"] == "startDate"
    assert "24" in refused.json()["message"]


async def test_a_plan_in_another_currency_is_refused(client: httpx.AsyncClient) -> None:
    cid = await customer(client, "DKK")
    pid = await new_plan(client)  # EUR
    response = await client.post(SUBS, json={"customerId": cid, "planId": pid})
    assert response.status_code == 422
    assert (response.json()["error"], response.json()["field"]) == ("currency_mismatch", "planId")


async def test_an_archived_plan_is_409(client: httpx.AsyncClient, eur: dict[str, int]) -> None:
    assert (await client.post(f"/rest/v1/plans/{eur['planId']}/archive")).status_code == 200
    response = await client.post(SUBS, json=eur)
    assert response.status_code == 409
    assert response.json()["error"] == "invalid_state"


async def test_existing_subscriptions_go_on_when_their_plan_is_archived(
    client: httpx.AsyncClient, eur: dict[str, int]
) -> None:
    body = await subscribe(client, **eur)
    assert (await client.post(f"/rest/v1/plans/{eur['planId']}/archive")).status_code == 200
    assert (await client.get(f"{SUBS}/{body['id']}")).json() == body


@pytest.mark.parametrize(
    ("currency", "value", "quantity", "ok"),
    [
        ("EUR", "999999999999.99", 1, True),
        ("EUR", "999999999999.99", 2, False),
        ("EUR", "1.00", 1_000_000, True),
        ("JPY", "99999999", 1_000_000, True),
        ("JPY", "100000000", 1_000_000, False),
        ("KWD", "99999.999", 1_000_000, True),
        ("KWD", "100000.000", 1_000_000, False),
        ("EUR", "0", 1_000_000, True),
    ],
)
async def test_quantity_within_the_currencys_maximum(
    client: httpx.AsyncClient, currency: str, value: str, quantity: int, ok: bool
) -> None:
    cid = await customer(client, currency)
    pid = await new_plan(client, amount={"value": value, "currency": currency})
    response = await client.post(
        SUBS, json={"customerId": cid, "planId": pid, "quantity": quantity}
    )
    if ok:
        assert response.status_code == 201, response.text
    else:
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "quantity"


# -- status and periods on the customer's local date -------------------------------------


async def test_status_follows_the_clock_across_a_trial_end_and_a_cancel(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    cid = await customer(client, tz="Europe/Copenhagen")
    pid = await new_plan(client)
    sub = await subscribe(client, customerId=cid, planId=pid, startDate="2026-11-25", trialDays=10)
    url = f"{SUBS}/{sub['id']}"

    async def at(moment: datetime) -> dict[str, Any]:
        clock.set(moment)
        got: dict[str, Any] = (await client.get(url)).json()
        return got

    assert sub["status"] == "scheduled"
    assert (sub["currentPeriodStart"], sub["currentPeriodEnd"]) == (None, None)
    # Copenhagen is UTC+1: November 25th begins at 2026-11-24T23:00Z
    assert (await at(datetime(2026, 11, 24, 22, 59, tzinfo=UTC)))["status"] == "scheduled"
    trial = await at(datetime(2026, 11, 24, 23, 0, tzinfo=UTC))
    assert (trial["status"], trial["currentPeriodStart"], trial["currentPeriodEnd"]) == (
        "trialing",
        "2026-11-25",
        "2026-12-05",
    )
    assert (await at(datetime(2026, 12, 4, 22, 59, tzinfo=UTC)))["status"] == "trialing"
    active = await at(datetime(2026, 12, 4, 23, 0, tzinfo=UTC))
    assert (active["status"], active["currentPeriodStart"], active["currentPeriodEnd"]) == (
        "active",
        "2026-12-05",
        "2027-01-01",
    )
    canceled = await client.post(f"{url}/cancel", json={"at": "period_end"})
    assert canceled.status_code == 200, canceled.text
    assert (canceled.json()["status"], canceled.json()["cancelAt"]) == ("active", "2027-01-01")
    assert canceled.json()["canceledAt"] == "2026-12-04T23:00:00Z"
    assert (await at(datetime(2026, 12, 31, 22, 59, tzinfo=UTC)))["status"] == "active"
    ended = await at(datetime(2026, 12, 31, 23, 0, tzinfo=UTC))
    assert (ended["status"], ended["currentPeriodStart"], ended["currentPeriodEnd"]) == (
        "canceled",
        None,
        None,
    )


async def test_the_local_date_decides_kiritimati_and_pago_pago(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    pid = await new_plan(client)
    east = await customer(client, tz="Pacific/Kiritimati")  # UTC+14
    west = await customer(client, tz="Pacific/Pago_Pago")  # UTC-11
    # At 2026-11-22T12:00Z it is November 23rd 02:00 at UTC+14 and November 22nd 01:00
    # at UTC-11: "today" is a day apart.
    e = await subscribe(client, customerId=east, planId=pid)
    w = await subscribe(client, customerId=west, planId=pid)
    assert (e["startDate"], w["startDate"]) == ("2026-11-23", "2026-11-22")
    e2 = await subscribe(client, customerId=east, planId=pid, startDate="2026-11-23")
    w2 = await subscribe(client, customerId=west, planId=pid, startDate="2026-11-23")
    assert (e2["status"], w2["status"]) == ("active", "scheduled")
    # December 1st begins at 2026-11-30T10:00Z in Kiritimati, 2026-12-01T11:00Z in Pago Pago
    clock.set(datetime(2026, 11, 30, 10, 0, tzinfo=UTC))
    e_now = (await client.get(f"{SUBS}/{e['id']}")).json()
    w_now = (await client.get(f"{SUBS}/{w['id']}")).json()
    assert (e_now["currentPeriodStart"], e_now["currentPeriodEnd"]) == ("2026-12-01", "2027-01-01")
    assert (w_now["currentPeriodStart"], w_now["currentPeriodEnd"]) == ("2026-11-22", "2026-12-01")
    clock.set(datetime(2026, 12, 1, 10, 59, tzinfo=UTC))
    assert (await client.get(f"{SUBS}/{w['id']}")).json()["currentPeriodStart"] == "2026-11-22"
    clock.set(datetime(2026, 12, 1, 11, 0, tzinfo=UTC))
    assert (await client.get(f"{SUBS}/{w['id']}")).json()["currentPeriodStart"] == "2026-12-01"


async def test_the_first_due_moment_is_the_local_start_of_the_first_period(
    client: httpx.AsyncClient, database: Database
) -> None:
    pid = await new_plan(client)
    east = await customer(client, tz="Pacific/Kiritimati")
    west = await customer(client, tz="Pacific/Pago_Pago")
    havana = await customer(client, tz="America/Havana")
    await subscribe(client, customerId=east, planId=pid, startDate="2026-12-01")
    await subscribe(client, customerId=west, planId=pid, startDate="2026-12-01")
    # midnight is skipped there on 2027-03-14: the first instant is 01:00 CDT
    await subscribe(client, customerId=havana, planId=pid, startDate="2027-03-14")
    async with database.read() as conn:
        due = list(
            (
                await conn.execute(select(subscriptions.c.next_due_at).order_by(subscriptions.c.id))
            ).scalars()
        )
    assert due == [
        datetime(2026, 11, 30, 10, tzinfo=UTC),
        datetime(2026, 12, 1, 11, tzinfo=UTC),
        datetime(2027, 3, 14, 5, tzinfo=UTC),
    ]


# -- changing --------------------------------------------------------------------------


async def test_change_at_period_end_is_pending(
    client: httpx.AsyncClient, database: Database, eur: dict[str, int]
) -> None:
    sub = await subscribe(client, **eur)
    bigger = await new_plan(client, "bigger", amount={"value": "60.00", "currency": "EUR"})
    url = f"{SUBS}/{sub['id']}"
    response = await client.post(f"{url}/change", json={"planId": bigger, "quantity": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["pendingChange"] == {"planId": bigger, "quantity": 3, "effectiveDate": "2026-12-01"}
    assert (body["planId"], body["quantity"]) == (eur["planId"], 1)  # until then
    assert (await client.get(url)).json() == body
    # a new change replaces it
    again = await client.post(f"{url}/change", json={"quantity": 2, "effective": "period_end"})
    assert again.json()["pendingChange"] == {
        "planId": eur["planId"],
        "quantity": 2,
        "effectiveDate": "2026-12-01",
    }
    # a change back to the current terms takes it back
    back = await client.post(f"{url}/change", json={"planId": eur["planId"], "quantity": 1})
    assert back.json()["pendingChange"] is None
    kinds = [k for k, _ in await stored_events(database)]
    assert kinds == ["subscription.created"] + ["subscription.updated"] * 3


async def test_a_change_during_a_trial_takes_effect_at_its_end(client: httpx.AsyncClient) -> None:
    cid = await customer(client)
    pid = await new_plan(client, trialDays=14)
    quarterly = await new_plan(client, "quarterly", intervalCount=3)
    sub = await subscribe(client, customerId=cid, planId=pid)
    response = await client.post(f"{SUBS}/{sub['id']}/change", json={"planId": quarterly})
    assert response.status_code == 200, response.text
    assert response.json()["pendingChange"]["effectiveDate"] == "2026-12-06"
    scheduled = await subscribe(client, customerId=cid, planId=pid, startDate="2027-01-10")
    response = await client.post(f"{SUBS}/{scheduled['id']}/change", json={"quantity": 4})
    assert response.json()["pendingChange"]["effectiveDate"] == "2027-01-24"


async def test_an_interval_change_shows_the_new_periods_once_in_effect(
    client: httpx.AsyncClient, clock: ManualClock, eur: dict[str, int]
) -> None:
    quarterly = await new_plan(client, "quarterly", intervalCount=3)
    sub = await subscribe(client, **eur)
    await client.post(f"{SUBS}/{sub['id']}/change", json={"planId": quarterly})
    clock.set(datetime(2026, 12, 2, tzinfo=UTC))
    now = (await client.get(f"{SUBS}/{sub['id']}")).json()
    assert (now["currentPeriodStart"], now["currentPeriodEnd"]) == ("2026-12-01", "2027-01-01")
    clock.set(datetime(2027, 1, 2, tzinfo=UTC))
    now = (await client.get(f"{SUBS}/{sub['id']}")).json()
    assert (now["currentPeriodStart"], now["currentPeriodEnd"]) == ("2027-01-01", "2027-04-01")


@pytest.mark.parametrize(
    ("body", "status", "error", "field"),
    [
        ({}, 422, "validation_error", "planId"),
        ({"effective": "period_end"}, 422, "validation_error", "planId"),
        ({"quantity": 0}, 422, "validation_error", "quantity"),
        ({"quantity": 1_000_001}, 422, "validation_error", "quantity"),
        ({"planId": 0}, 422, "validation_error", "planId"),
        ({"planId": 2**63}, 422, "validation_error", "planId"),
        ({"planId": 2**63 - 1}, 422, "plan_not_found", "planId"),
        ({"quantity": 2, "effective": "later"}, 422, "validation_error", "effective"),
        ({"quantity": 2, "prorate": True}, 422, "validation_error", "prorate"),
    ],
)
async def test_bad_changes_are_refused(
    client: httpx.AsyncClient,
    database: Database,
    eur: dict[str, int],
    body: dict[str, Any],
    status: int,
    error: str,
    field: str,
) -> None:
    sub = await subscribe(client, **eur)
    response = await client.post(f"{SUBS}/{sub['id']}/change", json=body)
    assert response.status_code == status, response.text
    assert (response.json()["error"], response.json()["field"]) == (error, field)
    assert (await client.get(f"{SUBS}/{sub['id']}")).json() == sub
    assert len(await stored_events(database)) == 1


async def test_changes_refused_by_the_new_plan(
    client: httpx.AsyncClient, eur: dict[str, int]
) -> None:
    sub = await subscribe(client, **eur)
    url = f"{SUBS}/{sub['id']}/change"
    dkk = await new_plan(client, "dkk", amount={"value": "200.00", "currency": "DKK"})
    got = await client.post(url, json={"planId": dkk})
    assert (got.status_code, got.json()["error"], got.json()["field"]) == (
        422,
        "currency_mismatch",
        "planId",
    )
    five = await new_plan(client, "five", intervalCount=5)  # no calendar
    got = await client.post(url, json={"planId": five})
    assert (got.status_code, got.json()["field"]) == (422, "planId")
    huge = await new_plan(client, "huge", amount={"value": "999999999999.99", "currency": "EUR"})
    got = await client.post(url, json={"planId": huge, "quantity": 2})
    assert (got.status_code, got.json()["field"]) == (422, "quantity")
    old = await new_plan(client, "old")
    await client.post(f"/rest/v1/plans/{old}/archive")
    got = await client.post(url, json={"planId": old})
    assert (got.status_code, got.json()["error"]) == (409, "invalid_state")
    yearly = await new_plan(client, "yearly", interval="year")
    got = await client.post(url, json={"planId": yearly, "effective": "now"})
    assert (got.status_code, got.json()["error"], got.json()["field"]) == (
        422,
        "validation_error",
        "effective",
    )
    assert "period_end" in got.json()["message"]
    assert (await client.get(f"{SUBS}/{sub['id']}")).json() == sub


# -- canceling and reactivating ------------------------------------------------------------


async def test_cancel_at_period_end_then_reactivate(
    client: httpx.AsyncClient, database: Database, eur: dict[str, int]
) -> None:
    sub = await subscribe(client, **eur)
    url = f"{SUBS}/{sub['id']}"
    other = await new_plan(client, "other")
    await client.post(f"{url}/change", json={"planId": other})
    canceled = await client.post(f"{url}/cancel")  # no body: period_end
    assert canceled.status_code == 200, canceled.text
    body = canceled.json()
    assert (body["status"], body["cancelAt"], body["canceledAt"]) == (
        "active",
        "2026-12-01",
        "2026-11-22T12:00:00Z",
    )
    assert body["pendingChange"] is None  # a cancel clears a pending change
    blocked = await client.post(f"{url}/change", json={"quantity": 2})
    assert (blocked.status_code, blocked.json()["error"]) == (409, "invalid_state")
    back = await client.post(f"{url}/reactivate")
    assert back.status_code == 200, back.text
    assert (back.json()["cancelAt"], back.json()["canceledAt"]) == (None, None)
    assert back.json()["pendingChange"] is None  # does not come back
    none = await client.post(f"{url}/reactivate")
    assert (none.status_code, none.json()["error"]) == (409, "invalid_state")
    kinds = [k for k, _ in await stored_events(database)]
    assert kinds == ["subscription.created"] + ["subscription.updated"] * 3
    async with database.read() as conn:
        due = (await conn.execute(select(subscriptions.c.next_due_at))).scalar_one()
    assert due == datetime(2026, 12, 1, tzinfo=UTC)  # November's period was invoiced at once


async def test_cancel_now_is_final(
    client: httpx.AsyncClient, database: Database, eur: dict[str, int]
) -> None:
    sub = await subscribe(client, **eur)
    url = f"{SUBS}/{sub['id']}"
    response = await client.post(f"{url}/cancel", json={"at": "now", "prorate": False})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["cancelAt"], body["currentPeriodStart"]) == (
        "canceled",
        "2026-11-22",
        None,
    )
    events_ = await stored_events(database)
    assert events_[-1] == ("subscription.canceled", {"subscription": body})
    for action, payload in [
        ("cancel", {"at": "now"}),
        ("cancel", {}),
        ("reactivate", None),
        ("change", {"quantity": 2}),
    ]:
        refused = await client.post(f"{url}/{action}", json=payload)
        assert (refused.status_code, refused.json()["error"]) == (409, "invalid_state"), action
    # the period due since midnight is invoiced first, as the generator would have
    kinds = [k for k, _ in await stored_events(database)]
    assert kinds == ["subscription.created", "subscription.canceled"]
    async with database.read() as conn:
        due = (await conn.execute(select(subscriptions.c.next_due_at))).scalar_one()
    assert due is None  # nothing left to bill


async def test_cancel_a_scheduled_one_at_once_and_a_trial_at_its_end(
    client: httpx.AsyncClient, database: Database, eur: dict[str, int]
) -> None:
    later = await subscribe(client, **eur, startDate="2027-02-01")
    got = await client.post(f"{SUBS}/{later['id']}/cancel", json={"at": "period_end"})
    assert (got.json()["status"], got.json()["cancelAt"]) == ("canceled", "2026-11-22")
    trial = await subscribe(client, **eur, trialDays=5)
    got = await client.post(f"{SUBS}/{trial['id']}/cancel")
    assert (got.json()["status"], got.json()["cancelAt"]) == ("trialing", "2026-11-27")
    # nothing was billed in a trial: prorate has nothing to credit
    trial2 = await subscribe(client, **eur, trialDays=5)
    got = await client.post(f"{SUBS}/{trial2['id']}/cancel", json={"at": "now", "prorate": True})
    assert (got.status_code, got.json()["status"]) == (200, "canceled")
    kinds = [k for k, _ in await stored_events(database)]
    assert kinds == [
        "subscription.created",
        "subscription.canceled",
        "subscription.created",
        "subscription.updated",
        "subscription.created",
        "subscription.canceled",
    ]


@pytest.mark.parametrize(
    ("body", "status", "error", "field"),
    [
        ({"at": "period_end", "prorate": True}, 422, "validation_error", "prorate"),
        ({"at": "tomorrow"}, 422, "validation_error", "at"),
        ({"at": "now", "prorate": "yes"}, 422, "validation_error", "prorate"),
        ({"at": "now\u0000"}, 422, "validation_error", "at"),
        ({"when": "now"}, 422, "validation_error", "when"),
    ],
)
async def test_bad_cancels_are_refused(
    client: httpx.AsyncClient,
    eur: dict[str, int],
    body: dict[str, Any],
    status: int,
    error: str,
    field: str,
) -> None:
    sub = await subscribe(client, **eur)
    response = await client.post(f"{SUBS}/{sub['id']}/cancel", json=body)
    assert response.status_code == status, response.text
    assert (response.json()["error"], response.json()["field"]) == (error, field)
    assert (await client.get(f"{SUBS}/{sub['id']}")).json() == sub


@pytest.mark.parametrize("action", ["change", "cancel", "reactivate"])
async def test_actions_on_unknown_or_bad_ids(client: httpx.AsyncClient, action: str) -> None:
    body = {"quantity": 2} if action == "change" else None
    missing = await client.post(f"{SUBS}/{2**63 - 1}/{action}", json=body)
    assert missing.status_code == 404, missing.text
    for bad in ("0", "9223372036854775808", "1.0", "x", "9" * 60):
        got = await client.post(f"{SUBS}/{bad}/{action}", json=body)
        assert (got.status_code, got.json()["field"]) == (422, "id"), got.text


# -- idempotency -----------------------------------------------------------------------


async def test_idempotent_replays_of_every_action(
    client: httpx.AsyncClient, database: Database, eur: dict[str, int]
) -> None:
    headers = {"Idempotency-Key": "k-1"}
    first = await client.post(SUBS, json=eur, headers=headers)
    again = await client.post(SUBS, json=eur, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    url = first.headers["location"]
    for action, body in [
        ("change", {"quantity": 5}),
        ("cancel", {"at": "period_end"}),
        ("reactivate", None),
    ]:
        one = await client.post(f"{url}/{action}", json=body, headers=headers)
        two = await client.post(f"{url}/{action}", json=body, headers=headers)
        assert one.status_code == two.status_code == 200, (one.text, two.text)
        assert two.json() == one.json()
        assert two.headers["idempotent-replayed"] == "true"
    reused = await client.post(f"{url}/change", json={"quantity": 6}, headers=headers)
    assert reused.json()["error"] == "idempotency_key_reused"
    kinds = [k for k, _ in await stored_events(database)]
    assert kinds == ["subscription.created"] + ["subscription.updated"] * 3
    assert len((await client.get(SUBS)).json()) == 1


async def test_two_identical_posts_with_one_key_race(
    client: httpx.AsyncClient,
    database: Database,
    eur: dict[str, int],
    race: dict[str, int],  # noqa: F811
) -> None:
    headers = {"Idempotency-Key": "race"}
    responses = await asyncio.gather(
        *(client.post(SUBS, json=eur, headers=headers) for _ in range(2))
    )
    assert [r.status_code for r in responses] == [201, 201], [r.text for r in responses]
    assert responses[0].json() == responses[1].json()
    assert len((await client.get(SUBS)).json()) == 1
    assert [k for k, _ in await stored_events(database)] == ["subscription.created"]
    if database.dialect == "postgresql":
        assert race["saves"] == 2, "the requests did not race"


async def test_concurrent_cancels_take_turns(
    client: httpx.AsyncClient, database: Database, eur: dict[str, int]
) -> None:
    sub = await subscribe(client, **eur)
    responses = await asyncio.gather(
        *(client.post(f"{SUBS}/{sub['id']}/cancel", json={"at": "now"}) for _ in range(4))
    )
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409]
    kinds = [k for k, _ in await stored_events(database)]
    # the period due since midnight is invoiced first (once), then the cancel
    assert kinds == ["subscription.created", "subscription.canceled"]


# -- listing ---------------------------------------------------------------------------


async def test_list_filters_and_pages(
    client: httpx.AsyncClient, clock: ManualClock, eur: dict[str, int]
) -> None:
    other_customer = await customer(client)
    other_plan = await new_plan(client, "other")
    a = await subscribe(client, **eur)  # active
    b = await subscribe(client, **eur, trialDays=3)  # trialing
    c = await subscribe(client, customerId=other_customer, planId=other_plan)  # active
    d = await subscribe(client, **eur, startDate="2027-01-01")  # scheduled
    e = await subscribe(client, customerId=other_customer, planId=eur["planId"])
    await client.post(f"{SUBS}/{e['id']}/cancel", json={"at": "now"})  # canceled

    async def ids(**params: Any) -> list[int]:
        response = await client.get(SUBS, params=params)
        assert response.status_code == 200, response.text
        return [s["id"] for s in response.json()]

    assert await ids() == [a["id"], b["id"], c["id"], d["id"], e["id"]]
    assert await ids(customerId=eur["customerId"]) == [a["id"], b["id"], d["id"]]
    assert await ids(planId=other_plan) == [c["id"]]
    assert await ids(status="active") == [a["id"], c["id"]]
    assert await ids(status="trialing") == [b["id"]]
    assert await ids(status="scheduled") == [d["id"]]
    assert await ids(status="canceled") == [e["id"]]
    assert await ids(status="active", customerId=other_customer) == [c["id"]]
    assert await ids(status="active", limit=1) == [a["id"]]
    seen: list[int] = []
    url: str | None = f"{SUBS}?limit=2"
    while url:
        got = await client.get(url)
        seen += [s["id"] for s in got.json()]
        link = got.headers.get("link")
        url = link[1 : link.index(">")] if link else None
    assert seen == [a["id"], b["id"], c["id"], d["id"], e["id"]]
    page = await client.get(SUBS, params={"status": "active", "limit": 1})
    link = page.headers["link"]
    nxt = await client.get(link[1 : link.index(">")])
    assert [s["id"] for s in nxt.json()] == [c["id"]]
    assert "link" not in nxt.headers
    clock.set(datetime(2026, 11, 25, 0, 0, tzinfo=UTC))  # the trial has ended
    assert await ids(status="active") == [a["id"], b["id"], c["id"]]
    for bad in ({"status": "paused"}, {"customerId": "0"}, {"planId": "1.5"}, {"limit": "0"}):
        got = await client.get(SUBS, params=bad)
        assert got.status_code == 422, got.text
        assert got.json()["field"] == next(iter(bad))


async def test_list_status_near_midnight_in_far_zones(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    pid = await new_plan(client)
    east = await customer(client, tz="Pacific/Kiritimati")
    west = await customer(client, tz="Pacific/Pago_Pago")
    e = await subscribe(client, customerId=east, planId=pid, startDate="2026-11-23")
    w = await subscribe(client, customerId=west, planId=pid, startDate="2026-11-23")
    got = await client.get(SUBS, params={"status": "active"})
    assert [s["id"] for s in got.json()] == [e["id"]]
    got = await client.get(SUBS, params={"status": "scheduled"})
    assert [s["id"] for s in got.json()] == [w["id"]]
    clock.set(datetime(2026, 11, 23, 11, 0, tzinfo=UTC))
    got = await client.get(SUBS, params={"status": "active"})
    assert [s["id"] for s in got.json()] == [e["id"], w["id"]]


async def test_unknown_subscription_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{SUBS}/1")
    assert (response.status_code, response.json()["error"]) == (404, "not_found")
    assert (await client.get(f"{SUBS}/{'9' * 30}")).status_code == 422


async def test_the_events_api_lists_subscription_events(
    client: httpx.AsyncClient, eur: dict[str, int]
) -> None:
    sub = await subscribe(client, **eur)
    # On PostgreSQL an event is listed once every transaction that began before its own
    # has ended (the events list's horizon, cluster-wide): wait for it, a little
    for _ in range(100):
        listed = await client.get("/rest/v1/events", params={"type": "subscription.created"})
        assert listed.status_code == 200, listed.text
        if listed.json():
            break
        await asyncio.sleep(0.1)
    assert [e["data"]["subscription"] for e in listed.json()] == [sub]


async def test_a_new_time_zone_moves_the_next_due_moment(
    client: httpx.AsyncClient, database: Database
) -> None:
    cid = await customer(client)
    pid = await new_plan(client)
    sub = await subscribe(client, customerId=cid, planId=pid, startDate="2026-12-01")
    ended = await subscribe(client, customerId=cid, planId=pid)
    await client.post(f"{SUBS}/{ended['id']}/cancel", json={"at": "now"})
    response = await client.patch(
        f"/rest/v1/customers/{cid}", json={"timezone": "Pacific/Kiritimati"}
    )
    assert response.status_code == 200, response.text
    async with database.read() as conn:
        rows = await conn.execute(select(subscriptions.c.id, subscriptions.c.next_due_at))
        due = {r.id: r.next_due_at for r in rows}
    # the dates stay; December 1st now begins at UTC+14
    assert due == {sub["id"]: datetime(2026, 11, 30, 10, tzinfo=UTC), ended["id"]: None}
    shown = (await client.get(f"{SUBS}/{sub['id']}")).json()
    assert shown["startDate"] == "2026-12-01"


async def test_a_change_now_before_billing_starts_applies_at_once(
    client: httpx.AsyncClient, database: Database
) -> None:
    cid = await customer(client)
    pid = await new_plan(client, trialDays=14)
    bigger = await new_plan(client, "bigger", amount={"value": "60.00", "currency": "EUR"})
    yearly = await new_plan(client, "yearly", interval="year")
    trial = await subscribe(client, customerId=cid, planId=pid)
    url = f"{SUBS}/{trial['id']}/change"
    await client.post(url, json={"quantity": 9})  # pending, replaced below
    got = await client.post(url, json={"planId": bigger, "quantity": 3, "effective": "now"})
    assert got.status_code == 200, got.text
    body = got.json()
    assert (body["planId"], body["quantity"], body["pendingChange"]) == (bigger, 3, None)
    assert (body["status"], body["trialEndDate"]) == ("trialing", "2026-12-06")
    other = await client.post(url, json={"planId": yearly, "effective": "now"})
    assert (other.status_code, other.json()["field"]) == (422, "effective")
    scheduled = await subscribe(client, customerId=cid, planId=pid, startDate="2027-03-01")
    got = await client.post(
        f"{SUBS}/{scheduled['id']}/change", json={"quantity": 2, "effective": "now"}
    )
    assert (got.status_code, got.json()["quantity"]) == (200, 2)
    kinds = [k for k, _ in await stored_events(database)]
    assert kinds.count("subscription.updated") == 3
