"""The worked example of docs/subscriptions.md ("From plan to paid invoice"), run: its
numbers are what Antaeus makes, so that the page a reader checks by hand is true."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx

from antaeus.billing.generation import generate_due
from antaeus.clock import ManualClock
from antaeus.storage.database import Database
from tests.api.test_subscriptions import customer

DOC = Path(__file__).resolve().parents[2] / "docs" / "subscriptions.md"


def _money(value: str) -> dict[str, object]:
    return {"value": Decimal(value), "currency": "EUR"}


async def _json(response: httpx.Response) -> object:
    assert response.status_code < 300, response.text
    return json.loads(response.text, parse_float=Decimal)


async def test_the_worked_example_of_the_subscriptions_page(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    text = DOC.read_text(encoding="utf-8")
    for figure in (
        "34.84 EUR",
        "60.00 EUR",
        "−19.29",
        "+28.93",
        "9.64 EUR",
        "2027-01-13T23:00:00Z",
    ):
        assert figure in text, figure
    clock.set(datetime(2027, 1, 14, 8, tzinfo=UTC))
    cid = await customer(client, "EUR", "Europe/Copenhagen")
    plan = await _json(
        await client.post(
            "/rest/v1/plans",
            json={
                "code": "pro-monthly",
                "name": "Pro",
                "amount": {"value": "30.00", "currency": "EUR"},
                "interval": "month",
            },
        )
    )
    assert isinstance(plan, dict)
    sub = await _json(
        await client.post(
            "/rest/v1/subscriptions",
            json={
                "customerId": cid,
                "planId": plan["id"],
                "quantity": 2,
                "startDate": "2027-01-14",
            },
        )
    )
    assert isinstance(sub, dict)
    first = await _json(await client.get("/rest/v1/invoices", params={"subscriptionId": sub["id"]}))
    assert isinstance(first, list)
    assert [(i["amount"], i["dueAt"]) for i in first] == [(_money("34.84"), "2027-01-13T23:00:00Z")]
    preview = await _json(await client.get(f"/rest/v1/customers/{cid}/upcoming-invoice"))
    assert isinstance(preview, dict)
    assert (preview["amount"], preview["dueAt"]) == (_money("60.00"), "2027-01-31T23:00:00Z")
    clock.set(datetime(2027, 2, 1, 6, tzinfo=UTC))
    await generate_due(database, clock)
    upgrade = await _json(
        await client.post(
            "/rest/v1/plans",
            json={
                "code": "pro-plus",
                "name": "Pro Plus",
                "amount": {"value": "45.00", "currency": "EUR"},
                "interval": "month",
            },
        )
    )
    assert isinstance(upgrade, dict)
    clock.set(datetime(2027, 2, 20, 9, tzinfo=UTC))
    changed = await client.post(
        f"/rest/v1/subscriptions/{sub['id']}/change",
        json={"planId": upgrade["id"], "effective": "now"},
    )
    assert changed.status_code == 200, changed.text
    listed = await _json(
        await client.get("/rest/v1/invoices", params={"subscriptionId": sub["id"]})
    )
    assert isinstance(listed, list)
    assert [i["amount"] for i in listed] == [_money("34.84"), _money("60.00"), _money("9.64")]
    assert [(line["kind"], line["amount"]) for line in listed[-1]["lines"]] == [
        ("credit", _money("-19.29")),
        ("proration", _money("28.93")),
    ]
