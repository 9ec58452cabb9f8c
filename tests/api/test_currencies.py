"""Every ISO 4217 currency with its own decimals, over REST (SQLite and PostgreSQL).

JPY has no decimals, KWD and BHD three, CLF four: invoices are created, billed
through the simulated provider and listed with exactly their currency's
decimals, as exact JSON numbers; too many decimals, unknown currencies and
currencies without minor units are 422s naming the problem, and write nothing.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from antaeus.clock import ManualClock
from antaeus.domain.money import Currency
from antaeus.simulators.simulated import SimulatedPaymentProvider
from antaeus.storage.database import Database
from antaeus.storage.tables import customers, invoices
from tests.api.test_billing_api import (
    charge,
    get_json,
    new_customer,
    new_invoice,
    simulator,  # noqa: F401  (the fixture)
    trigger,
)
from tests.notify.helpers import settled

#: (currency, value sent, the JSON text the API writes for it, minor units stored)
CASES = [
    ("JPY", "1000", "1000", 1000),
    ("KRW", "25000", "25000", 25000),
    ("KWD", "12.345", "12.345", 12345),
    ("KWD", "1.230", "1.230", 1230),  # three decimals written: fine in KWD
    ("BHD", "7", "7.000", 7000),
    ("CLF", "0.5", "0.5000", 5000),
    ("HUF", "100.5", "100.50", 10050),  # ISO says two (CLDR says none): ISO decides
    ("EUR", "12.3", "12.30", 1230),
]


def _amount_text(value: str, currency: str) -> str:
    return f'"amount":{{"value":{value},"currency":"{currency}"}}'


async def _count(database: Database) -> tuple[int, int]:
    async with database.read() as conn:
        n_customers = (await conn.execute(select(func.count()).select_from(customers))).scalar()
        n_invoices = (await conn.execute(select(func.count()).select_from(invoices))).scalar()
    assert n_customers is not None
    assert n_invoices is not None
    return n_customers, n_invoices


async def test_invoices_in_every_kind_of_currency_are_created_billed_and_listed_exactly(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,  # noqa: F811
) -> None:
    created: dict[int, tuple[str, str, int]] = {}
    for currency, sent, written, minor in CASES:
        cid = await new_customer(client, currency)
        response = await client.post(
            "/rest/v1/invoices",
            json={
                "customerId": cid,
                "amount": {"value": sent, "currency": currency},
                "dueAt": "2026-11-01T00:00:00Z",
            },
        )
        assert response.status_code == 201, response.text
        assert _amount_text(written, currency) in response.text
        created[response.json()["id"]] = (currency, written, minor)

    # stored as integer minor units of each currency
    async with database.read() as conn:
        rows = (await conn.execute(select(invoices.c.id, invoices.c.amount_minor))).all()
    assert {r.id: r.amount_minor for r in rows} == {i: m for i, (_, _, m) in created.items()}

    run = await trigger(client)
    await charge(database, simulator, clock)

    listed = await client.get("/rest/v1/invoices")
    assert listed.status_code == 200, listed.text
    for iid, (currency, written, _) in created.items():
        one = await client.get(f"/rest/v1/invoices/{iid}")
        assert one.json()["status"] == "PAID", one.text
        assert _amount_text(written, currency) in one.text
        assert _amount_text(written, currency) in listed.text
    # never a float: every amount parses to the exact decimal it was written as
    for item in json.loads(listed.text, parse_float=Decimal, parse_int=Decimal):
        currency, written, _ = created[int(item["id"])]
        assert item["amount"]["value"] == Decimal(written)
        assert str(item["amount"]["value"]) == written

    done = await client.get(f"/rest/v1/billing/runs/{run['id']}")
    assert done.json()["counts"]["paid"] == len(CASES)
    collected = (
        '"collected":[{"value":7.000,"currency":"BHD"},{"value":0.5000,"currency":"CLF"},'
        '{"value":12.30,"currency":"EUR"},{"value":100.50,"currency":"HUF"},'
        '{"value":1000,"currency":"JPY"},{"value":25000,"currency":"KRW"},'
        '{"value":13.575,"currency":"KWD"}]'
    )
    assert collected in done.text

    # the simulator was charged each invoice's amount in its currency's minor units
    charged = {
        (e.invoice_id, e.amount.minor, e.amount.currency.code) for e in simulator.store.ledger()
    }
    assert charged == {(i, m, c) for i, (c, _, m) in created.items()}

    # the events carry the same exact amounts
    await settled(database)
    events = await client.get("/rest/v1/events?type=invoice.paid&limit=100")
    assert events.status_code == 200, events.text
    for currency, written, _ in created.values():
        assert _amount_text(written, currency) in events.text


async def test_a_json_number_in_a_currency_without_decimals_or_with_three(
    client: httpx.AsyncClient,
) -> None:
    for currency, number, written in [("JPY", "1000", "1000"), ("KWD", "12.345", "12.345")]:
        cid = await new_customer(client, currency)
        response = await client.post(
            "/rest/v1/invoices",
            content=f'{{"customerId":{cid},"amount":{{"value":{number},"currency":"{currency}"}}}}',
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 201, response.text
        assert _amount_text(written, currency) in response.text


@pytest.mark.parametrize(
    ("currency", "value", "largest"),
    [
        ("JPY", "99999999999999", "99999999999999"),
        ("KWD", "99999999999.999", "99999999999.999"),
        ("EUR", "999999999999.99", "999999999999.99"),
        ("CLF", "9999999999.9999", "9999999999.9999"),
    ],
)
async def test_the_largest_amount_is_fourteen_digits_in_every_currency(
    client: httpx.AsyncClient, database: Database, currency: str, value: str, largest: str
) -> None:
    cid = await new_customer(client, currency)
    iid = await new_invoice(client, cid, value, currency)
    found = await client.get(f"/rest/v1/invoices/{iid}")
    assert _amount_text(largest, currency) in found.text
    one_more = Decimal(value) + Currency(currency).quantum  # one minor unit more
    before = await _count(database)
    response = await client.post(
        "/rest/v1/invoices",
        json={"customerId": cid, "amount": {"value": f"{one_more:f}", "currency": currency}},
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == "amount.value"
    assert f"must not exceed {largest} {currency}" in body["message"]
    assert await _count(database) == before


BAD_PRECISION = [
    ("JPY", '"1.5"', "JPY has no decimals"),
    ("JPY", "1.5", "JPY has none"),
    ("JPY", '"1.0"', "JPY has no decimals"),
    ("JPY", '"1000.00"', "JPY has no decimals"),
    ("JPY", "1000.00", "JPY has none"),
    ("KRW", '"0.5"', "KRW has no decimals"),
    ("KWD", '"1.2345"', "KWD has three decimals"),
    ("KWD", "1.2345", "KWD has three"),
    ("BHD", '"0.0001"', "BHD has three decimals"),
    ("EUR", '"1.230"', "EUR has two decimals"),
    ("EUR", "1.230", "EUR has two"),
    ("USD", '"0.001"', "USD has two decimals"),
    ("HUF", '"1.005"', "HUF has two decimals"),
    ("CLF", '"1.23456"', "CLF has four decimals"),
]


@pytest.mark.parametrize(("currency", "value", "says"), BAD_PRECISION)
async def test_more_decimals_than_the_currency_has_is_a_422_naming_it(
    client: httpx.AsyncClient, database: Database, currency: str, value: str, says: str
) -> None:
    cid = await new_customer(client, currency)
    before = await _count(database)
    response = await client.post(
        "/rest/v1/invoices",
        content=f'{{"customerId":{cid},"amount":{{"value":{value},"currency":"{currency}"}}}}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert (body["error"], body["field"]) == ("validation_error", "amount.value")
    assert says in body["message"], body["message"]
    assert await _count(database) == before


NOT_BILLABLE = [
    ("XAU", "without minor units"),  # gold
    ("XDR", "without minor units"),  # special drawing rights
    ("XTS", "without minor units"),  # the testing code
    ("XXX", "without minor units"),  # no currency
    ("XSU", "without minor units"),
    ("ABC", "unknown currency 'ABC'"),
    ("jpy", "unknown currency 'jpy'"),
    ("JP", "unknown currency 'JP'"),
    ("EURO", "unknown currency 'EURO'"),
    ("{x}", "unknown currency '{x}'"),  # braces are text, not a template
]


@pytest.mark.parametrize(("code", "says"), NOT_BILLABLE)
async def test_unknown_currencies_and_ones_without_minor_units_are_a_422_naming_them(
    client: httpx.AsyncClient, database: Database, code: str, says: str
) -> None:
    cid = await new_customer(client, "EUR")
    before = await _count(database)
    bodies: list[tuple[str, dict[str, Any], str]] = [
        ("/rest/v1/customers", {"currency": code}, "currency"),
        (
            "/rest/v1/invoices",
            {"customerId": cid, "amount": {"value": "1", "currency": code}},
            "amount.currency",
        ),
    ]
    for path, sent, field in bodies:
        response = await client.post(path, json=sent)
        assert response.status_code == 422, response.text
        body = response.json()
        assert (body["error"], body["field"]) == ("unknown_currency", field)
        assert says in body["message"], body["message"]
        assert repr(code) in body["message"]
    assert await _count(database) == before


async def test_the_customer_and_its_invoices_keep_one_currency(client: httpx.AsyncClient) -> None:
    cid = await new_customer(client, "JPY")
    assert (await get_json(client, f"/rest/v1/customers/{cid}"))["currency"] == "JPY"
    response = await client.post(
        "/rest/v1/invoices", json={"customerId": cid, "amount": {"value": "10", "currency": "KWD"}}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "currency_mismatch"


async def test_openapi_describes_currencies_and_their_decimals(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    text = json.dumps(spec)
    assert "ISO 4217" in text
    assert "JPY 0, KWD 3" in text
    schemas = spec["components"]["schemas"]
    assert schemas["CustomerCreate"]["properties"]["currency"]["pattern"] == "^[A-Z]{3}$"
    assert "enum" not in schemas["CustomerCreate"]["properties"]["currency"]
