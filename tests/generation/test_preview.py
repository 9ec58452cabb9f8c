"""The preview (`GET /rest/v1/customers/{id}/upcoming-invoice`) is the invoice generated
later, line for line, to the minor unit, for every anchor, interval, trial and change
case (issue 21): each case previews, moves the clock to the preview's `dueAt`,
generates, and compares; four periods in a row."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from antaeus.billing.generation import generate_due
from antaeus.clock import ManualClock
from antaeus.storage.database import Database
from antaeus.storage.tables import customers
from tests.api.test_plans import new_plan
from tests.api.test_subscriptions import customer, subscribe


def _plan(code: str, value: str, currency: str, interval: str, count: int = 1) -> dict[str, Any]:
    return {
        "code": code,
        "amount": {"value": value, "currency": currency},
        "interval": interval,
        "intervalCount": count,
    }


CASES: dict[str, dict[str, Any]] = {
    "calendar-month-mid-month": {
        "tz": "Europe/Copenhagen",
        "at": datetime(2027, 1, 14, 9, tzinfo=UTC),
        "plans": [_plan("m", "30.00", "EUR", "month")],
        "subs": [{"plan": 0, "startDate": "2027-01-14"}],
    },
    "anniversary-31st": {
        "tz": "UTC",
        "at": datetime(2027, 1, 31, 9, tzinfo=UTC),
        "plans": [_plan("m", "30.00", "EUR", "month")],
        "subs": [{"plan": 0, "billingAnchor": "anniversary"}],
    },
    "calendar-quarter-kwd": {
        "tz": "Asia/Kuwait",
        "currency": "KWD",
        "at": datetime(2027, 2, 10, 9, tzinfo=UTC),
        "plans": [_plan("q", "10.125", "KWD", "month", 3)],
        "subs": [{"plan": 0, "quantity": 3}],
    },
    "yearly-feb-29th": {
        "tz": "UTC",
        "at": datetime(2028, 2, 29, 9, tzinfo=UTC),
        "plans": [_plan("y", "120.00", "EUR", "year")],
        "subs": [{"plan": 0, "billingAnchor": "anniversary"}],
    },
    "calendar-week-jpy": {
        "tz": "Asia/Tokyo",
        "currency": "JPY",
        "at": datetime(2027, 3, 3, 1, tzinfo=UTC),
        "plans": [_plan("w", "1000", "JPY", "week")],
        "subs": [{"plan": 0}],
    },
    "anniversary-two-weeks": {
        "tz": "America/Havana",
        "at": datetime(2027, 3, 3, 12, tzinfo=UTC),
        "plans": [_plan("w2", "7.77", "EUR", "week", 2)],
        "subs": [{"plan": 0}],
    },
    "daily": {
        "tz": "Pacific/Pago_Pago",
        "at": datetime(2027, 5, 30, 12, tzinfo=UTC),
        "plans": [_plan("d", "1.01", "EUR", "day")],
        "subs": [{"plan": 0, "quantity": 7}],
    },
    "trial-across-month-end": {
        "tz": "Pacific/Kiritimati",
        "at": datetime(2027, 1, 25, 12, tzinfo=UTC),
        "plans": [_plan("m", "30.00", "EUR", "month")],
        "subs": [{"plan": 0, "trialDays": 14}],
    },
    "anniversary-with-trial": {
        "tz": "UTC",
        "at": datetime(2027, 1, 20, 12, tzinfo=UTC),
        "plans": [_plan("m", "30.00", "EUR", "month")],
        "subs": [{"plan": 0, "trialDays": 11, "billingAnchor": "anniversary"}],
    },
    "consolidated-two-plans": {
        "tz": "Europe/Copenhagen",
        "at": datetime(2027, 4, 17, 12, tzinfo=UTC),
        "plans": [_plan("a", "30.00", "EUR", "month"), _plan("b", "99.99", "EUR", "year")],
        "subs": [{"plan": 0, "quantity": 3}, {"plan": 1}],
    },
    "credit-used": {
        "tz": "UTC",
        "at": datetime(2027, 4, 17, 12, tzinfo=UTC),
        "credit": 4_321,
        "plans": [_plan("m", "30.00", "EUR", "month")],
        "subs": [{"plan": 0}],
    },
    "change-at-period-end": {
        "tz": "UTC",
        "at": datetime(2027, 4, 17, 12, tzinfo=UTC),
        "plans": [_plan("m", "30.00", "EUR", "month"), _plan("m2", "45.50", "EUR", "month")],
        "subs": [{"plan": 0}],
        "change": {"plan": 1, "quantity": 2},
    },
    "change-of-interval-at-period-end": {
        "tz": "Australia/Lord_Howe",
        "at": datetime(2027, 4, 17, 12, tzinfo=UTC),
        "plans": [_plan("m", "30.00", "EUR", "month"), _plan("y", "300.00", "EUR", "year")],
        "subs": [{"plan": 0, "billingAnchor": "anniversary"}],
        "change": {"plan": 1},
    },
}


def _without_ids(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in line.items() if k != "id"} for line in lines]


@pytest.mark.parametrize("case", sorted(CASES))
async def test_preview_is_the_generated_invoice(
    case: str, client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    spec = CASES[case]
    clock.set(spec["at"])
    cid = await customer(client, spec.get("currency", "EUR"), spec["tz"])
    if "credit" in spec:
        async with database.write() as conn:
            await conn.execute(
                update(customers).where(customers.c.id == cid).values(credit_minor=spec["credit"])
            )
    plan_ids = [await new_plan(client, **plan) for plan in spec["plans"]]
    subs = []
    for sub in spec["subs"]:
        body = {k: v for k, v in sub.items() if k != "plan"}
        subs.append(await subscribe(client, customerId=cid, planId=plan_ids[sub["plan"]], **body))
    for step in range(4):
        preview = await client.get(f"/rest/v1/customers/{cid}/upcoming-invoice")
        assert preview.status_code == 200, preview.text
        expected = preview.json()
        assert all(line["id"] is None for line in expected["lines"])
        due = datetime.fromisoformat(expected["dueAt"])
        clock.set(max(clock.now(), due))
        made = await generate_due(database, clock)
        assert made.invoices >= 1, (case, step)
        listed = await client.get("/rest/v1/invoices", params={"customerId": cid, "limit": 100})
        generated = [i for i in listed.json() if i["lines"] and i["lines"][0]["kind"] != "manual"]
        first_new = generated[-made.invoices]
        assert first_new["dueAt"] == expected["dueAt"], (case, step)
        assert first_new["amount"] == expected["amount"], (case, step)
        assert _without_ids(first_new["lines"]) == _without_ids(expected["lines"]), (case, step)
        if step == 0 and "change" in spec:
            change = spec["change"]
            body = {"planId": plan_ids[change["plan"]], "effective": "period_end"}
            if "quantity" in change:
                body["quantity"] = change["quantity"]
            answer = await client.post(f"/rest/v1/subscriptions/{subs[0]['id']}/change", json=body)
            assert answer.status_code == 200, answer.text


async def test_no_upcoming_invoice(client: httpx.AsyncClient) -> None:
    cid = await customer(client)
    got = await client.get(f"/rest/v1/customers/{cid}/upcoming-invoice")
    assert got.status_code == 404
    assert got.json()["error"] == "no_upcoming_invoice"
    missing = await client.get("/rest/v1/customers/999999/upcoming-invoice")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    bad = await client.get("/rest/v1/customers/abc/upcoming-invoice")
    assert bad.status_code == 422
