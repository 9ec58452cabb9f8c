"""Customers: create, read, list, paginate."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from antaeus.clock import ManualClock
from antaeus.seeding import seed
from antaeus.storage.database import Database

LINK = re.compile(r'<([^>]+)>; rel="next"')


async def _create(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/rest/v1/customers", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _next(response: httpx.Response) -> str | None:
    link = response.headers.get("link")
    if link is None:
        return None
    match = LINK.fullmatch(link)
    assert match is not None, link
    return match.group(1)


async def test_create_answers_201_with_the_customer_and_location(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/rest/v1/customers", json={"currency": "DKK", "timezone": "Europe/Copenhagen"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body == {
        "id": body["id"],
        "currency": "DKK",
        "timezone": "Europe/Copenhagen",
        "providerCustomerId": None,
        "providerPaymentMethodId": None,
        "creditBalance": {"value": 0, "currency": "DKK"},
    }
    assert isinstance(body["id"], int)
    assert body["id"] >= 1
    assert list(body) == [
        "id",
        "currency",
        "timezone",
        "providerCustomerId",
        "providerPaymentMethodId",
        "creditBalance",
    ]
    assert response.headers["location"] == f"/rest/v1/customers/{body['id']}"
    fetched = await client.get(response.headers["location"])
    assert fetched.status_code == 200
    assert fetched.json() == body


async def test_timezone_defaults_to_utc(client: httpx.AsyncClient) -> None:
    body = await _create(client, currency="EUR")
    assert body["timezone"] == "UTC"
    fetched = await client.get(f"/rest/v1/customers/{body['id']}")
    assert fetched.json()["timezone"] == "UTC"


@pytest.mark.parametrize("currency", ["EUR", "USD", "DKK", "SEK", "GBP"])
async def test_every_supported_currency(client: httpx.AsyncClient, currency: str) -> None:
    body = await _create(client, currency=currency, timezone="America/New_York")
    assert body["currency"] == currency
    assert body["timezone"] == "America/New_York"


async def test_ids_are_distinct_and_increasing(client: httpx.AsyncClient) -> None:
    ids = [(await _create(client, currency="SEK"))["id"] for _ in range(3)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3


async def test_unknown_customer_is_404_json(client: httpx.AsyncClient) -> None:
    await _create(client, currency="SEK")
    response = await client.get("/rest/v1/customers/999")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == "not_found"
    assert "999" in body["message"]


async def test_largest_id_is_a_plain_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/rest/v1/customers/{2**63 - 1}")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_empty_list(client: httpx.AsyncClient) -> None:
    response = await client.get("/rest/v1/customers")
    assert response.status_code == 200
    assert response.text == "[]"
    assert "link" not in response.headers


async def test_list_is_ascending_by_id(client: httpx.AsyncClient) -> None:
    created = [await _create(client, currency=c) for c in ("GBP", "EUR", "USD", "DKK")]
    response = await client.get("/rest/v1/customers")
    assert response.status_code == 200
    assert response.json() == created
    assert "link" not in response.headers


async def test_limit_1_walks_every_customer(client: httpx.AsyncClient) -> None:
    created = [await _create(client, currency="EUR") for _ in range(3)]
    seen: list[dict[str, Any]] = []
    url: str | None = "/rest/v1/customers?limit=1"
    pages = 0
    while url is not None:
        response = await client.get(url)
        assert response.status_code == 200
        page = response.json()
        assert len(page) == 1
        seen.extend(page)
        url = _next(response)
        pages += 1
        assert pages <= 3
    assert seen == created


async def test_link_points_after_the_last_id_with_the_same_limit(
    client: httpx.AsyncClient,
) -> None:
    created = [await _create(client, currency="EUR") for _ in range(5)]
    response = await client.get("/rest/v1/customers", params={"limit": 2})
    assert [c["id"] for c in response.json()] == [created[0]["id"], created[1]["id"]]
    url = _next(response)
    assert url is not None
    query = httpx.URL(url).params
    assert query["after"] == str(created[1]["id"])
    assert query["limit"] == "2"


async def test_exactly_limit_left_has_no_link(client: httpx.AsyncClient) -> None:
    created = [await _create(client, currency="EUR") for _ in range(3)]
    response = await client.get("/rest/v1/customers", params={"limit": 3})
    assert response.json() == created
    assert "link" not in response.headers
    shorter = await client.get("/rest/v1/customers", params={"limit": 2})
    assert _next(shorter) is not None


async def test_after_selects_greater_ids(client: httpx.AsyncClient) -> None:
    created = [await _create(client, currency="EUR") for _ in range(4)]
    response = await client.get("/rest/v1/customers", params={"after": created[1]["id"]})
    assert response.json() == created[2:]


async def test_after_beyond_the_last_is_empty_without_link(client: httpx.AsyncClient) -> None:
    created = await _create(client, currency="EUR")
    for after in (created["id"], created["id"] + 1, 2**63 - 1):
        response = await client.get("/rest/v1/customers", params={"after": after})
        assert response.status_code == 200
        assert response.json() == []
        assert "link" not in response.headers


async def test_limit_10000_is_allowed_and_10001_is_not(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    await seed(database, now=clock.now(), seed_value=1, customers=10_005, invoices_per_customer=0)
    full = await client.get("/rest/v1/customers", params={"limit": 10_000})
    assert full.status_code == 200
    page = full.json()
    assert len(page) == 10_000
    assert [c["id"] for c in page] == list(range(1, 10_001))
    url = _next(full)
    assert url is not None
    rest = await client.get(url)
    assert [c["id"] for c in rest.json()] == list(range(10_001, 10_006))
    assert "link" not in rest.headers

    too_many = await client.get("/rest/v1/customers", params={"limit": 10_001})
    assert too_many.status_code == 422
    assert too_many.json()["field"] == "limit"


async def test_default_limit_is_100(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    await seed(database, now=clock.now(), seed_value=1, customers=101, invoices_per_customer=0)
    response = await client.get("/rest/v1/customers")
    assert len(response.json()) == 100
    url = _next(response)
    assert url is not None
    last = await client.get(url)
    assert [c["id"] for c in last.json()] == [101]
    assert "link" not in last.headers
