"""Invoices: create (amounts exact, default due date), read, list, filter, paginate."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from antaeus.clock import ManualClock
from antaeus.seeding import seed
from antaeus.storage.database import Database

LINK = re.compile(r'<([^>]+)>; rel="next"')
JSON = {"content-type": "application/json"}


async def _customer(
    client: httpx.AsyncClient, currency: str = "DKK", timezone: str = "Europe/Copenhagen"
) -> int:
    response = await client.post(
        "/rest/v1/customers", json={"currency": currency, "timezone": timezone}
    )
    assert response.status_code == 201, response.text
    cid: int = response.json()["id"]
    return cid


async def _invoice(
    client: httpx.AsyncClient, customer_id: int, value: str = "89.52", currency: str = "DKK"
) -> dict[str, Any]:
    response = await client.post(
        "/rest/v1/invoices",
        json={"customerId": customer_id, "amount": {"value": value, "currency": currency}},
    )
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


async def _walk(client: httpx.AsyncClient, url: str) -> tuple[list[dict[str, Any]], list[int]]:
    items: list[dict[str, Any]] = []
    sizes: list[int] = []
    next_url: str | None = url
    while next_url is not None:
        response = await client.get(next_url)
        assert response.status_code == 200, response.text
        items.extend(response.json())
        sizes.append(len(response.json()))
        next_url = _next(response)
        assert len(sizes) <= 10_000
    return items, sizes


# --- create and read ---------------------------------------------------------


async def test_create_answers_201_with_the_full_invoice(client: httpx.AsyncClient) -> None:
    cid = await _customer(client)
    response = await client.post(
        "/rest/v1/invoices",
        json={
            "customerId": cid,
            "amount": {"value": "89.52", "currency": "DKK"},
            "dueAt": "2026-12-01T00:00:00Z",
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body == {
        "id": body["id"],
        "customerId": cid,
        "amount": {"value": 89.52, "currency": "DKK"},
        "status": "PENDING",
        "dueAt": "2026-12-01T00:00:00Z",
        "attemptCount": 0,
        "lastFailure": None,
        "nextAttemptAt": None,
        "lines": [
            {
                "id": body["lines"][0]["id"],
                "kind": "manual",
                "subscriptionId": None,
                "planId": None,
                "description": "Manual invoice",
                "periodStart": None,
                "periodEnd": None,
                "quantity": None,
                "amount": {"value": 89.52, "currency": "DKK"},
            }
        ],
    }
    assert list(body) == [
        "id",
        "customerId",
        "amount",
        "status",
        "dueAt",
        "attemptCount",
        "lastFailure",
        "nextAttemptAt",
        "lines",
    ]
    assert '"amount":{"value":89.52,"currency":"DKK"}' in response.text
    assert response.headers["location"] == f"/rest/v1/invoices/{body['id']}"
    fetched = await client.get(f"/rest/v1/invoices/{body['id']}")
    assert fetched.status_code == 200
    assert fetched.text == response.text


@pytest.mark.parametrize(
    ("sent", "written"),
    [
        ('"89.52"', "89.52"),
        ("89.52", "89.52"),
        ('"0.01"', "0.01"),
        ("0.01", "0.01"),
        ("10", "10.00"),
        ('"10"', "10.00"),
        ('"7.5"', "7.50"),
        ("7.50", "7.50"),
        ('"999999999999.99"', "999999999999.99"),
        ("999999999999.99", "999999999999.99"),
        ("0.30", "0.30"),
    ],
)
async def test_amount_is_parsed_and_written_exactly(
    client: httpx.AsyncClient, sent: str, written: str
) -> None:
    cid = await _customer(client, "EUR", "UTC")
    body = f'{{"customerId":{cid},"amount":{{"value":{sent},"currency":"EUR"}}}}'
    response = await client.post("/rest/v1/invoices", content=body, headers=JSON)
    assert response.status_code == 201, response.text
    assert f'"amount":{{"value":{written},"currency":"EUR"}}' in response.text
    fetched = await client.get(f"/rest/v1/invoices/{response.json()['id']}")
    assert f'"amount":{{"value":{written},"currency":"EUR"}}' in fetched.text


async def test_unknown_invoice_is_404_json(client: httpx.AsyncClient) -> None:
    cid = await _customer(client)
    await _invoice(client, cid)
    response = await client.get("/rest/v1/invoices/999")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == "not_found"
    assert "999" in body["message"]


# --- due dates ----------------------------------------------------------------


async def test_default_due_at_copenhagen(client: httpx.AsyncClient) -> None:
    cid = await _customer(client, "DKK", "Europe/Copenhagen")
    created = await _invoice(client, cid)
    assert created["dueAt"] == "2026-11-30T23:00:00Z"
    fetched = await client.get(f"/rest/v1/invoices/{created['id']}")
    assert fetched.json()["dueAt"] == "2026-11-30T23:00:00Z"


@pytest.mark.parametrize(
    ("timezone", "expected"),
    [
        ("UTC", "2026-12-01T00:00:00Z"),
        ("America/New_York", "2026-12-01T05:00:00Z"),
        ("Asia/Tokyo", "2026-11-30T15:00:00Z"),
        ("Asia/Kolkata", "2026-11-30T18:30:00Z"),
    ],
)
async def test_default_due_at_follows_the_customer_time_zone(
    client: httpx.AsyncClient, timezone: str, expected: str
) -> None:
    cid = await _customer(client, "USD", timezone)
    created = await _invoice(client, cid, currency="USD")
    assert created["dueAt"] == expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # 00:30 on 1 January in Copenhagen: the next first is 1 February.
        (datetime(2026, 12, 31, 23, 30, tzinfo=UTC), "2027-01-31T23:00:00Z"),
        # Midnight on 1 December in Copenhagen exactly: the next first is 1 January.
        (datetime(2026, 11, 30, 23, 0, tzinfo=UTC), "2026-12-31T23:00:00Z"),
        # One second before it: 1 December.
        (datetime(2026, 11, 30, 22, 59, 59, tzinfo=UTC), "2026-11-30T23:00:00Z"),
        # Summer time (UTC+2) in Copenhagen on 1 April.
        (datetime(2027, 3, 15, 12, 0, tzinfo=UTC), "2027-03-31T22:00:00Z"),
    ],
)
async def test_default_due_at_uses_the_local_calendar(
    client: httpx.AsyncClient, clock: ManualClock, now: datetime, expected: str
) -> None:
    cid = await _customer(client, "DKK", "Europe/Copenhagen")
    clock.set(now)
    created = await _invoice(client, cid)
    assert created["dueAt"] == expected


async def test_due_at_with_offset_is_returned_in_utc(client: httpx.AsyncClient) -> None:
    cid = await _customer(client)
    response = await client.post(
        "/rest/v1/invoices",
        json={
            "customerId": cid,
            "amount": {"value": "89.52", "currency": "DKK"},
            "dueAt": "2026-12-01T00:00:00+01:00",
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["dueAt"] == "2026-11-30T23:00:00Z"
    fetched = await client.get(f"/rest/v1/invoices/{response.json()['id']}")
    assert fetched.json()["dueAt"] == "2026-11-30T23:00:00Z"


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("2026-12-01T00:00:00Z", "2026-12-01T00:00:00Z"),
        ("2026-12-01T00:00:00z", "2026-12-01T00:00:00Z"),
        ("2026-12-01T00:00:00+00:00", "2026-12-01T00:00:00Z"),
        ("2026-12-01T00:00:00-05:30", "2026-12-01T05:30:00Z"),
        ("2027-01-01T01:00:00+02:00", "2026-12-31T23:00:00Z"),
    ],
)
async def test_due_at_offsets(client: httpx.AsyncClient, sent: str, stored: str) -> None:
    cid = await _customer(client)
    response = await client.post(
        "/rest/v1/invoices",
        json={"customerId": cid, "amount": {"value": "1.00", "currency": "DKK"}, "dueAt": sent},
    )
    assert response.status_code == 201, response.text
    assert response.json()["dueAt"] == stored


# --- lists --------------------------------------------------------------------


async def test_empty_list(client: httpx.AsyncClient) -> None:
    response = await client.get("/rest/v1/invoices")
    assert response.status_code == 200
    assert response.text == "[]"
    assert "link" not in response.headers


async def test_list_is_ascending_by_id(client: httpx.AsyncClient) -> None:
    a = await _customer(client)
    b = await _customer(client, "SEK", "UTC")
    created = [
        await _invoice(client, a),
        await _invoice(client, b, "1.00", "SEK"),
        await _invoice(client, a, "2.00"),
    ]
    response = await client.get("/rest/v1/invoices")
    assert response.status_code == 200
    assert response.json() == created


@pytest.mark.usefixtures("seeded")
async def test_filter_by_status(client: httpx.AsyncClient) -> None:
    pending, sizes = await _walk(client, "/rest/v1/invoices?status=PENDING&limit=30")
    assert sizes == [30, 30, 30, 10]
    assert [i["id"] for i in pending] == list(range(1, 1001, 10))
    assert all(i["status"] == "PENDING" for i in pending)
    paid, _ = await _walk(client, "/rest/v1/invoices?status=PAID&limit=1000")
    assert len(paid) == 900
    assert all(i["status"] == "PAID" for i in paid)
    failed = await client.get("/rest/v1/invoices", params={"status": "FAILED"})
    assert failed.status_code == 200
    assert failed.json() == []


@pytest.mark.usefixtures("seeded")
async def test_filter_by_customer(client: httpx.AsyncClient) -> None:
    response = await client.get("/rest/v1/invoices", params={"customerId": 7})
    assert response.status_code == 200
    rows = response.json()
    assert [i["id"] for i in rows] == list(range(61, 71))
    assert {i["customerId"] for i in rows} == {7}
    assert "link" not in response.headers
    nobody = await client.get("/rest/v1/invoices", params={"customerId": 101})
    assert nobody.json() == []


@pytest.mark.usefixtures("seeded")
async def test_filters_combine_and_survive_pagination(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/rest/v1/invoices", params={"customerId": 7, "status": "PAID", "limit": 4}
    )
    assert [i["id"] for i in response.json()] == [62, 63, 64, 65]
    url = _next(response)
    assert url is not None
    params = httpx.URL(url).params
    assert params["customerId"] == "7"
    assert params["status"] == "PAID"
    assert params["after"] == "65"
    assert params["limit"] == "4"
    rest, sizes = await _walk(client, url)
    assert [i["id"] for i in rest] == [66, 67, 68, 69, 70]
    assert sizes == [4, 1]
    only_pending = await client.get(
        "/rest/v1/invoices", params={"customerId": 7, "status": "PENDING"}
    )
    assert [i["id"] for i in only_pending.json()] == [61]


# --- pagination edges -----------------------------------------------------------


@pytest.fixture
async def seeded(database: Database, clock: ManualClock) -> None:
    await seed(database, now=clock.now(), seed_value=42)


@pytest.mark.usefixtures("seeded")
async def test_limit_1(client: httpx.AsyncClient) -> None:
    first = await client.get("/rest/v1/invoices", params={"limit": 1})
    assert [i["id"] for i in first.json()] == [1]
    url = _next(first)
    assert url is not None
    assert httpx.URL(url).params["after"] == "1"
    assert httpx.URL(url).params["limit"] == "1"
    second = await client.get(url)
    assert [i["id"] for i in second.json()] == [2]
    last = await client.get("/rest/v1/invoices", params={"limit": 1, "after": 999})
    assert [i["id"] for i in last.json()] == [1000]
    assert "link" not in last.headers


async def test_limit_1_walks_everything(client: httpx.AsyncClient) -> None:
    cid = await _customer(client)
    created = [await _invoice(client, cid, f"{n}.00") for n in range(1, 6)]
    items, sizes = await _walk(client, "/rest/v1/invoices?limit=1")
    assert sizes == [1] * 5
    assert items == created


@pytest.mark.usefixtures("seeded")
async def test_default_limit_is_100(client: httpx.AsyncClient) -> None:
    response = await client.get("/rest/v1/invoices")
    assert [i["id"] for i in response.json()] == list(range(1, 101))
    url = _next(response)
    assert url is not None
    assert httpx.URL(url).params["after"] == "100"


async def test_limit_10000(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    await seed(database, now=clock.now(), seed_value=7, customers=1001)  # 10,010 invoices
    response = await client.get("/rest/v1/invoices", params={"limit": 10_000})
    assert response.status_code == 200
    assert [i["id"] for i in response.json()] == list(range(1, 10_001))
    url = _next(response)
    assert url is not None
    rest = await client.get(url)
    assert [i["id"] for i in rest.json()] == list(range(10_001, 10_011))
    assert "link" not in rest.headers


@pytest.mark.parametrize("limit", ["10001", "0", "-1", "1000000"])
async def test_limit_out_of_range_is_422(client: httpx.AsyncClient, limit: str) -> None:
    response = await client.get("/rest/v1/invoices", params={"limit": limit})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["field"] == "limit"


@pytest.mark.usefixtures("seeded")
async def test_exactly_limit_left_has_no_link(client: httpx.AsyncClient) -> None:
    response = await client.get("/rest/v1/invoices", params={"after": 990, "limit": 10})
    assert [i["id"] for i in response.json()] == list(range(991, 1001))
    assert "link" not in response.headers
    one_short = await client.get("/rest/v1/invoices", params={"after": 989, "limit": 10})
    assert _next(one_short) is not None


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize("after", [1000, 1001, 5000, 2**63 - 1])
async def test_after_beyond_the_last_is_empty_without_link(
    client: httpx.AsyncClient, after: int
) -> None:
    response = await client.get("/rest/v1/invoices", params={"after": after})
    assert response.status_code == 200
    assert response.json() == []
    assert "link" not in response.headers
