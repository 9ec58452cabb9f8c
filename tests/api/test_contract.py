"""The original Antaeus wire format, pinned byte for byte on the seeded sample data.

`seed(seed_value=42)` is deterministic, so the expected texts below were computed
once and hard-coded: any change in field order, number formatting (`421.20`, not
`421.2` or `"421.20"`), spacing or time format breaks these tests on purpose.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import httpx
import pytest

from antaeus.clock import ManualClock
from antaeus.seeding import seed
from antaeus.storage.database import Database

RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")

# Invoice 2 is customer 1's second invoice: PAID, due 2026-10-01 (seed 42).
PAID_INVOICE_2 = (
    '{"id":2,"customerId":1,"amount":{"value":498.23,"currency":"EUR"},"status":"PAID",'
)
PAID_INVOICE_2_FULL = (
    '{"id":2,"customerId":1,"amount":{"value":498.23,"currency":"EUR"},"status":"PAID",'
    '"dueAt":"2026-10-01T00:00:00Z","attemptCount":0,"lastFailure":null,"nextAttemptAt":null,'
    '"lines":[{"id":2,"kind":"manual","subscriptionId":null,"planId":null,'
    '"description":"Manual invoice","periodStart":null,"periodEnd":null,"quantity":null,'
    '"amount":{"value":498.23,"currency":"EUR"}}]}'
)
PENDING_INVOICE_1 = (
    '{"id":1,"customerId":1,"amount":{"value":171.62,"currency":"EUR"},"status":"PENDING",'
)
# Amounts with trailing zeros in the sample data: 421.20 and 304.00.
TRAILING_ZERO_INVOICE_20 = (
    '{"id":20,"customerId":2,"amount":{"value":421.20,"currency":"EUR"},"status":"PAID",'
)
TRAILING_ZEROS_INVOICE_168 = (
    '{"id":168,"customerId":17,"amount":{"value":304.00,"currency":"GBP"},"status":"PAID",'
)
CUSTOMER_1 = '{"id":1,"currency":"EUR",'
CUSTOMER_3 = '{"id":3,"currency":"DKK",'


@pytest.fixture
async def seeded(database: Database, clock: ManualClock) -> None:
    result = await seed(database, now=clock.now(), seed_value=42)
    assert (result.customers, result.invoices, result.pending) == (100, 1000, 100)


async def _all_pages(client: httpx.AsyncClient, url: str) -> tuple[list[Any], list[int]]:
    """Follow `Link: rel="next"` from `url`; answers every item and each page's size."""
    items: list[Any] = []
    sizes: list[int] = []
    next_url: str | None = url
    while next_url is not None:
        response = await client.get(next_url)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page)
        sizes.append(len(page))
        link = response.headers.get("link")
        if link is None:
            next_url = None
        else:
            match = re.fullmatch(r'<([^>]+)>; rel="next"', link)
            assert match is not None, link
            next_url = match.group(1)
        assert len(sizes) <= 1000, "pagination does not end"
    return items, sizes


async def test_health_is_the_json_string_ok(anon: httpx.AsyncClient) -> None:
    response = await anon.get("/rest/health")
    assert response.status_code == 200
    assert response.text == '"ok"'
    assert response.headers["content-type"].startswith("application/json")


@pytest.mark.usefixtures("seeded")
async def test_paid_invoice_original_fields_byte_for_byte(client: httpx.AsyncClient) -> None:
    response = await client.get("/rest/v1/invoices/2")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.text.startswith(PAID_INVOICE_2)
    assert response.text == PAID_INVOICE_2_FULL


@pytest.mark.usefixtures("seeded")
async def test_pending_invoice_original_fields_byte_for_byte(client: httpx.AsyncClient) -> None:
    response = await client.get("/rest/v1/invoices/1")
    assert response.status_code == 200
    assert response.text.startswith(PENDING_INVOICE_1)
    assert '"dueAt":"2026-11-01T00:00:00Z"' in response.text


@pytest.mark.usefixtures("seeded")
async def test_customer_byte_for_byte(client: httpx.AsyncClient) -> None:
    response = await client.get("/rest/v1/customers/1")
    assert response.status_code == 200
    assert response.text.startswith(CUSTOMER_1)
    assert response.text == (
        '{"id":1,"currency":"EUR","timezone":"UTC",'
        '"providerCustomerId":null,"providerPaymentMethodId":null,'
        '"creditBalance":{"value":0.00,"currency":"EUR"}}'
    )
    third = await client.get("/rest/v1/customers/3")
    assert third.text.startswith(CUSTOMER_3)


@pytest.mark.usefixtures("seeded")
async def test_trailing_zeros_are_kept_in_sample_data(client: httpx.AsyncClient) -> None:
    one = await client.get("/rest/v1/invoices/20")
    assert one.text.startswith(TRAILING_ZERO_INVOICE_20)
    two = await client.get("/rest/v1/invoices/168")
    assert two.text.startswith(TRAILING_ZEROS_INVOICE_168)
    # The same bytes inside a list.
    listed = await client.get("/rest/v1/invoices", params={"after": 19, "limit": 1})
    assert listed.text.startswith("[" + TRAILING_ZERO_INVOICE_20)


async def test_created_amount_with_trailing_zero_is_written_123_40(
    client: httpx.AsyncClient,
) -> None:
    customer = await client.post("/rest/v1/customers", json={"currency": "USD"})
    cid = customer.json()["id"]
    for sent in ('"123.40"', '"123.4"', "123.40", "123.4"):
        body = f'{{"customerId":{cid},"amount":{{"value":{sent},"currency":"USD"}}}}'
        created = await client.post(
            "/rest/v1/invoices", content=body, headers={"content-type": "application/json"}
        )
        assert created.status_code == 201, created.text
        assert '"amount":{"value":123.40,"currency":"USD"}' in created.text, sent
        fetched = await client.get(f"/rest/v1/invoices/{created.json()['id']}")
        assert '"amount":{"value":123.40,"currency":"USD"}' in fetched.text, sent


@pytest.mark.usefixtures("seeded")
async def test_sample_invoices_come_in_ten_pages_of_100(client: httpx.AsyncClient) -> None:
    items, sizes = await _all_pages(client, "/rest/v1/invoices")
    assert sizes == [100] * 10
    ids = [i["id"] for i in items]
    assert ids == list(range(1, 1001))
    assert sum(1 for i in items if i["status"] == "PENDING") == 100
    assert sum(1 for i in items if i["status"] == "PAID") == 900


@pytest.mark.usefixtures("seeded")
async def test_sample_data_shape(client: httpx.AsyncClient) -> None:
    customers, customer_pages = await _all_pages(client, "/rest/v1/customers")
    assert customer_pages == [100]
    assert [c["id"] for c in customers] == list(range(1, 101))
    currency_of = {c["id"]: c["currency"] for c in customers}
    invoices, _ = await _all_pages(client, "/rest/v1/invoices?limit=1000")
    assert len(invoices) == 1000
    per_customer: dict[int, list[dict[str, Any]]] = {}
    for invoice in invoices:
        per_customer.setdefault(invoice["customerId"], []).append(invoice)
        # Always in the customer's own currency, in [10, 500), two decimals.
        assert invoice["amount"]["currency"] == currency_of[invoice["customerId"]]
        value = invoice["amount"]["value"]
        assert isinstance(value, float)  # a JSON number, not a string
        assert Decimal("10") <= Decimal(str(value)) < Decimal("500")
        assert RFC3339_Z.match(invoice["dueAt"]), invoice["dueAt"]
    assert sorted(per_customer) == list(range(1, 101))
    for rows in per_customer.values():
        assert [r["status"] for r in rows] == ["PENDING"] + ["PAID"] * 9
    pending, pages = await _all_pages(client, "/rest/v1/invoices?status=PENDING")
    assert pages == [100]
    assert all(i["status"] == "PENDING" for i in pending)


@pytest.mark.usefixtures("seeded")
async def test_every_amount_has_exactly_two_decimals_on_the_wire(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/rest/v1/invoices", params={"limit": 1000})
    values = re.findall(r'"value":([^,}]+)', response.text)
    assert len(values) == 2000  # each invoice's amount and its one line's
    assert all(re.fullmatch(r"[1-9][0-9]*\.[0-9]{2}", v) for v in values), values[:5]
    assert any(v.endswith("0") for v in values)  # trailing zeros are present and kept
