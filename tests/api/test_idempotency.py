"""`Idempotency-Key` on POST /rest/v1/customers and POST /rest/v1/invoices."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from antaeus.billing import runs as runs_module
from antaeus.billing.runs import Scheduler
from antaeus.clock import ManualClock
from antaeus.config import Settings
from antaeus.domain.policy import PolicySettings
from antaeus.storage.database import Database
from antaeus.storage.repositories.idempotency import IdempotencyRepository, StoredResponse
from antaeus.storage.tables import idempotency_keys

CUSTOMERS = "/rest/v1/customers"
INVOICES = "/rest/v1/invoices"


async def _all(client: httpx.AsyncClient, path: str) -> list[dict[str, Any]]:
    response = await client.get(path, params={"limit": 10_000})
    assert response.status_code == 200
    rows: list[dict[str, Any]] = response.json()
    return rows


async def _snapshot(client: httpx.AsyncClient) -> tuple[list[Any], list[Any]]:
    return await _all(client, CUSTOMERS), await _all(client, INVOICES)


@pytest.fixture
async def customer_id(client: httpx.AsyncClient) -> int:
    response = await client.post(
        CUSTOMERS, json={"currency": "DKK", "timezone": "Europe/Copenhagen"}
    )
    assert response.status_code == 201
    cid: int = response.json()["id"]
    return cid


def _invoice_body(customer_id: int, value: str = "89.52") -> dict[str, Any]:
    return {"customerId": customer_id, "amount": {"value": value, "currency": "DKK"}}


async def test_customer_replay_answers_the_first_response(client: httpx.AsyncClient) -> None:
    body = {"currency": "SEK", "timezone": "Europe/Stockholm"}
    headers = {"Idempotency-Key": "customer-1"}
    first = await client.post(CUSTOMERS, json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    before = await _snapshot(client)
    for _ in range(3):
        again = await client.post(CUSTOMERS, json=body, headers=headers)
        assert again.status_code == 201
        assert again.text == first.text
        assert again.headers["idempotent-replayed"] == "true"
    assert await _snapshot(client) == before
    assert [c["id"] for c in before[0]] == [first.json()["id"]]


async def test_invoice_replay_answers_the_first_response(
    client: httpx.AsyncClient, customer_id: int
) -> None:
    headers = {"Idempotency-Key": "invoice-1"}
    first = await client.post(INVOICES, json=_invoice_body(customer_id), headers=headers)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    before = await _snapshot(client)
    again = await client.post(INVOICES, json=_invoice_body(customer_id), headers=headers)
    assert again.status_code == 201
    assert again.text == first.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["content-type"].startswith("application/json")
    assert await _snapshot(client) == before
    assert len(before[1]) == 1


async def test_replay_keeps_exact_amount_text(client: httpx.AsyncClient, customer_id: int) -> None:
    headers = {"Idempotency-Key": "amount-text"}
    first = await client.post(INVOICES, json=_invoice_body(customer_id, "123.4"), headers=headers)
    assert '"value":123.40' in first.text
    again = await client.post(INVOICES, json=_invoice_body(customer_id, "123.4"), headers=headers)
    assert '"value":123.40' in again.text
    assert again.text == first.text


async def test_replay_is_the_stored_response_not_a_new_computation(
    client: httpx.AsyncClient, customer_id: int, clock: ManualClock
) -> None:
    """The default dueAt depends on the clock; a replay a month later answers the first."""
    headers = {"Idempotency-Key": "late-retry"}
    first = await client.post(INVOICES, json=_invoice_body(customer_id), headers=headers)
    assert first.json()["dueAt"] == "2026-11-30T23:00:00Z"
    clock.advance(timedelta(days=31))
    again = await client.post(INVOICES, json=_invoice_body(customer_id), headers=headers)
    assert again.status_code == 201
    assert again.text == first.text
    assert len(await _all(client, INVOICES)) == 1
    fresh = await client.post(INVOICES, json=_invoice_body(customer_id))
    assert fresh.json()["dueAt"] == "2026-12-31T23:00:00Z"


async def test_same_request_written_differently_is_a_replay(
    client: httpx.AsyncClient, customer_id: int
) -> None:
    headers = {"Idempotency-Key": "normalized", "content-type": "application/json"}
    first = await client.post(
        INVOICES,
        content=f'{{"customerId":{customer_id},"amount":{{"value":"89.50","currency":"DKK"}}}}',
        headers=headers,
    )
    assert first.status_code == 201
    again = await client.post(
        INVOICES,
        content=(
            f'{{ "amount": {{"currency": "DKK", "value": 89.5}}, "customerId": {customer_id} }}'
        ),
        headers=headers,
    )
    assert again.status_code == 201
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.text == first.text
    assert len(await _all(client, INVOICES)) == 1


@pytest.mark.parametrize(
    "other",
    [
        {"currency": "EUR", "timezone": "Europe/Stockholm"},
        {"currency": "SEK", "timezone": "UTC"},
        {"currency": "SEK"},
    ],
)
async def test_customer_key_with_another_body_is_422(
    client: httpx.AsyncClient, other: dict[str, str]
) -> None:
    headers = {"Idempotency-Key": "customer-2"}
    first = await client.post(
        CUSTOMERS, json={"currency": "SEK", "timezone": "Europe/Stockholm"}, headers=headers
    )
    assert first.status_code == 201
    before = await _snapshot(client)
    response = await client.post(CUSTOMERS, json=other, headers=headers)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "idempotency_key_reused"
    assert isinstance(body["message"], str)
    assert "idempotent-replayed" not in response.headers
    assert await _snapshot(client) == before
    # The original request still replays.
    again = await client.post(
        CUSTOMERS, json={"currency": "SEK", "timezone": "Europe/Stockholm"}, headers=headers
    )
    assert again.status_code == 201
    assert again.text == first.text


@pytest.mark.parametrize(
    "change",
    ["value", "currency-customer", "dueAt"],
)
async def test_invoice_key_with_another_body_is_422(
    client: httpx.AsyncClient, customer_id: int, change: str
) -> None:
    other_customer = await client.post(CUSTOMERS, json={"currency": "DKK"})
    headers = {"Idempotency-Key": "invoice-2"}
    first = await client.post(INVOICES, json=_invoice_body(customer_id), headers=headers)
    assert first.status_code == 201
    before = await _snapshot(client)
    other: dict[str, Any] = _invoice_body(customer_id)
    if change == "value":
        other["amount"]["value"] = "89.53"
    elif change == "currency-customer":
        other["customerId"] = other_customer.json()["id"]
    else:
        other["dueAt"] = "2026-12-01T00:00:00Z"
    response = await client.post(INVOICES, json=other, headers=headers)
    assert response.status_code == 422
    assert response.json()["error"] == "idempotency_key_reused"
    assert await _snapshot(client) == before


async def test_keys_are_per_route(client: httpx.AsyncClient, customer_id: int) -> None:
    headers = {"Idempotency-Key": "shared"}
    customer = await client.post(CUSTOMERS, json={"currency": "DKK"}, headers=headers)
    invoice = await client.post(INVOICES, json=_invoice_body(customer_id), headers=headers)
    assert customer.status_code == 201
    assert invoice.status_code == 201, invoice.text
    assert "idempotent-replayed" not in invoice.headers
    assert invoice.json()["customerId"] == customer_id


async def test_different_keys_create_different_objects(
    client: httpx.AsyncClient, customer_id: int
) -> None:
    a = await client.post(
        INVOICES, json=_invoice_body(customer_id), headers={"Idempotency-Key": "a"}
    )
    b = await client.post(
        INVOICES, json=_invoice_body(customer_id), headers={"Idempotency-Key": "b"}
    )
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]
    assert len(await _all(client, INVOICES)) == 2


async def test_without_a_key_every_request_creates(
    client: httpx.AsyncClient, customer_id: int
) -> None:
    for _ in range(2):
        response = await client.post(INVOICES, json=_invoice_body(customer_id))
        assert response.status_code == 201
        assert "idempotent-replayed" not in response.headers
    assert len(await _all(client, INVOICES)) == 2


async def test_a_refused_request_is_not_remembered(client: httpx.AsyncClient) -> None:
    """A request that failed wrote nothing, so its key is still free for the same request."""
    headers = {"Idempotency-Key": "early"}
    body = {"customerId": 1, "amount": {"value": "5.00", "currency": "DKK"}}
    refused = await client.post(INVOICES, json=body, headers=headers)
    assert refused.status_code == 422
    assert refused.json()["error"] == "customer_not_found"
    created_customer = await client.post(CUSTOMERS, json={"currency": "DKK"})
    assert created_customer.json()["id"] == 1
    accepted = await client.post(INVOICES, json=body, headers=headers)
    assert accepted.status_code == 201, accepted.text
    assert "idempotent-replayed" not in accepted.headers
    replay = await client.post(INVOICES, json=body, headers=headers)
    assert replay.headers.get("idempotent-replayed") == "true"
    assert replay.text == accepted.text


@pytest.mark.parametrize(
    "key",
    ["", " ", "a b", "é", "k" * 256, "tab\tkey"],
    ids=["empty", "space", "inner-space", "non-ascii", "too-long", "tab"],
)
async def test_invalid_key_is_400_and_creates_nothing(
    client: httpx.AsyncClient, customer_id: int, key: str
) -> None:
    before = await _snapshot(client)
    response = await client.post(
        INVOICES, json=_invoice_body(customer_id), headers={b"Idempotency-Key": key.encode()}
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_idempotency_key"
    assert body["field"] == "Idempotency-Key"
    assert await _snapshot(client) == before


@pytest.mark.parametrize("key", ["k" * 255, "!~", "550e8400-e29b-41d4-a716-446655440000"])
async def test_valid_key_shapes(client: httpx.AsyncClient, customer_id: int, key: str) -> None:
    headers = {"Idempotency-Key": key}
    first = await client.post(INVOICES, json=_invoice_body(customer_id), headers=headers)
    assert first.status_code == 201, first.text
    again = await client.post(INVOICES, json=_invoice_body(customer_id), headers=headers)
    assert again.text == first.text
    assert len(await _all(client, INVOICES)) == 1


async def test_keys_are_case_sensitive(client: httpx.AsyncClient, customer_id: int) -> None:
    a = await client.post(
        INVOICES, json=_invoice_body(customer_id), headers={"Idempotency-Key": "K"}
    )
    b = await client.post(
        INVOICES, json=_invoice_body(customer_id), headers={"Idempotency-Key": "k"}
    )
    assert a.json()["id"] != b.json()["id"]


@pytest.fixture
def race(monkeypatch: pytest.MonkeyPatch, database: Database) -> dict[str, int]:
    """Widen the race window and count how often the effect ran to completion.

    On PostgreSQL a request that finds no stored response waits a little inside its
    transaction, so concurrent requests with one key all get past the lookup and
    run the effect; only the unique key lets one of them commit. SQLite's
    `BEGIN IMMEDIATE` serializes writers, so there the effect runs once.
    """
    counts = {"saves": 0}
    find = IdempotencyRepository.find
    save = IdempotencyRepository.save

    async def slow_find(self: IdempotencyRepository, scope: str, key: str) -> StoredResponse | None:
        found = await find(self, scope, key)
        if found is None and database.dialect == "postgresql":
            await asyncio.sleep(0.2)
        return found

    async def counting_save(self: IdempotencyRepository, *args: Any, **kwargs: Any) -> None:
        counts["saves"] += 1
        await save(self, *args, **kwargs)

    monkeypatch.setattr(IdempotencyRepository, "find", slow_find)
    monkeypatch.setattr(IdempotencyRepository, "save", counting_save)
    return counts


def _check_race(database: Database, race: dict[str, int]) -> None:
    if database.dialect == "postgresql":
        assert race["saves"] > 1, "the requests did not race"
    else:
        assert race["saves"] == 1


async def test_concurrent_invoice_requests_with_one_key_create_one(
    client: httpx.AsyncClient, customer_id: int, database: Database, race: dict[str, int]
) -> None:
    headers = {"Idempotency-Key": "concurrent-invoice"}
    responses = await asyncio.gather(
        *(
            client.post(INVOICES, json=_invoice_body(customer_id), headers=headers)
            for _ in range(10)
        )
    )
    assert [r.status_code for r in responses] == [201] * 10, [r.text for r in responses]
    assert len({r.text for r in responses}) == 1
    assert sum(1 for r in responses if "idempotent-replayed" not in r.headers) == 1
    invoices = await _all(client, INVOICES)
    assert len(invoices) == 1
    assert invoices[0] == responses[0].json()
    _check_race(database, race)


async def test_concurrent_customer_requests_with_one_key_create_one(
    client: httpx.AsyncClient, database: Database, race: dict[str, int]
) -> None:
    headers = {"Idempotency-Key": "concurrent-customer"}
    responses = await asyncio.gather(
        *(client.post(CUSTOMERS, json={"currency": "GBP"}, headers=headers) for _ in range(10))
    )
    assert [r.status_code for r in responses] == [201] * 10, [r.text for r in responses]
    assert len({r.text for r in responses}) == 1
    customers = await _all(client, CUSTOMERS)
    assert customers == [responses[0].json()]
    _check_race(database, race)


async def test_concurrent_requests_with_distinct_keys_create_each(
    client: httpx.AsyncClient, customer_id: int
) -> None:
    responses = await asyncio.gather(
        *(
            client.post(
                INVOICES, json=_invoice_body(customer_id), headers={"Idempotency-Key": f"key-{n}"}
            )
            for n in range(10)
        )
    )
    assert [r.status_code for r in responses] == [201] * 10
    assert len({r.json()["id"] for r in responses}) == 10
    assert len(await _all(client, INVOICES)) == 10


async def test_concurrent_same_key_different_bodies_create_one(
    client: httpx.AsyncClient, customer_id: int, database: Database, race: dict[str, int]
) -> None:
    headers = {"Idempotency-Key": "racing-bodies"}
    responses = await asyncio.gather(
        *(
            client.post(INVOICES, json=_invoice_body(customer_id, f"{n}.00"), headers=headers)
            for n in range(1, 11)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [422] * 9, [r.text for r in responses]
    assert all(
        r.json()["error"] == "idempotency_key_reused" for r in responses if r.status_code == 422
    )
    invoices = await _all(client, INVOICES)
    assert len(invoices) == 1
    winner = next(r for r in responses if r.status_code == 201)
    assert invoices[0] == winner.json()
    _check_race(database, race)


# -- retention ------------------------------------------------------------------------


async def _stored_keys(database: Database) -> set[str]:
    async with database.read() as conn:
        rows = await conn.execute(select(idempotency_keys.c.key))
        return set(rows.scalars())


async def test_the_scheduler_forgets_keys_older_than_their_retention(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    body = {"currency": "SEK", "timezone": "Europe/Stockholm"}
    old = await client.post(CUSTOMERS, json=body, headers={"Idempotency-Key": "old"})
    clock.advance(timedelta(days=6))
    young = await client.post(CUSTOMERS, json=body, headers={"Idempotency-Key": "young"})
    clock.advance(timedelta(days=1, seconds=1))  # "old" is 7 days and a second old
    scheduler = Scheduler(database, clock, PolicySettings(), "external")
    assert scheduler.idempotency_retention == timedelta(days=7)  # the default
    await scheduler.tick()
    assert await _stored_keys(database) == {"young"}

    # the young key still answers its first response; the forgotten one creates anew
    again = await client.post(CUSTOMERS, json=body, headers={"Idempotency-Key": "young"})
    assert (again.headers.get("idempotent-replayed"), again.json()) == ("true", young.json())
    anew = await client.post(CUSTOMERS, json=body, headers={"Idempotency-Key": "old"})
    assert anew.status_code == 201
    assert "idempotent-replayed" not in anew.headers
    assert anew.json()["id"] not in (old.json()["id"], young.json()["id"])


async def test_the_sweep_runs_once_a_minute_and_deletes_in_chunks(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    customer_id: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runs_module, "SWEEP_CHUNK", 3)
    scheduler = Scheduler(
        database, clock, PolicySettings(), "external", idempotency_retention=timedelta(hours=1)
    )
    await scheduler.tick()  # swept (nothing yet); the next sweep is a minute away
    for i in range(10):
        headers = {"Idempotency-Key": f"k{i}"}
        response = await client.post(INVOICES, json=_invoice_body(customer_id), headers=headers)
        assert response.status_code == 201, response.text
    clock.advance(timedelta(minutes=59, seconds=30))
    await scheduler.tick()  # swept: nothing is an hour old yet
    assert len(await _stored_keys(database)) == 10
    clock.advance(timedelta(seconds=31))
    await scheduler.tick()  # expired now, but the last sweep was 31 s ago
    assert len(await _stored_keys(database)) == 10
    clock.advance(timedelta(seconds=30))
    monkeypatch.setattr(runs_module, "SWEEP_MAX_CHUNKS", 2)
    await scheduler.tick()
    assert len(await _stored_keys(database)) == 4  # two chunks of 3 per pass
    await scheduler.tick()  # a full pass: the next one goes on at once
    assert await _stored_keys(database) == set()


@pytest.mark.parametrize("seconds", ["0", "59", "-1", "soon"])
def test_a_retention_under_an_hour_is_refused(seconds: str) -> None:
    with pytest.raises(ValidationError, match="IDEMPOTENCY_KEY_RETENTION"):
        Settings(IDEMPOTENCY_KEY_RETENTION=seconds)  # type: ignore[arg-type]


# --- a replay repeats the first answer's headers (issue 20, item 11) ----------------------


@pytest.mark.parametrize(
    ("path", "body", "status", "location"),
    [
        (CUSTOMERS, {"currency": "SEK"}, 201, "/rest/v1/customers/{id}"),
        (INVOICES, None, 201, "/rest/v1/invoices/{id}"),
        ("/rest/v1/billing", {"trigger": "api"}, 202, "/rest/v1/billing/runs/{id}"),
    ],
    ids=["customers", "invoices", "billing"],
)
async def test_a_replay_repeats_the_first_answers_location(
    client: httpx.AsyncClient,
    customer_id: int,
    path: str,
    body: dict[str, Any] | None,
    status: int,
    location: str,
) -> None:
    payload = body if body is not None else _invoice_body(customer_id)
    headers = {"Idempotency-Key": f"location-{path}"}
    first = await client.post(path, json=payload, headers=headers)
    assert first.status_code == status, first.text
    assert first.headers["location"] == location.format(id=first.json()["id"])
    assert "idempotent-replayed" not in first.headers
    again = await client.post(path, json=payload, headers=headers)
    assert again.status_code == status, again.text
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]


async def test_a_key_stored_before_headers_were_kept_replays_a_derived_location(
    client: httpx.AsyncClient, customer_id: int, database: Database
) -> None:
    """Rows written before migration 0014 have no headers: Location comes from the body."""
    headers = {"Idempotency-Key": "from-before-0014"}
    first = await client.post(INVOICES, json=_invoice_body(customer_id), headers=headers)
    async with database.write() as conn:
        await conn.execute(
            idempotency_keys.update()
            .where(idempotency_keys.c.key == "from-before-0014")
            .values(response_headers=None)
        )
    again = await client.post(INVOICES, json=_invoice_body(customer_id), headers=headers)
    assert again.status_code == 201
    assert again.text == first.text
    assert again.headers["location"] == f"/rest/v1/invoices/{first.json()['id']}"
    assert again.headers["idempotent-replayed"] == "true"


async def test_a_replayed_refusal_has_no_location(
    client: httpx.AsyncClient, customer_id: int
) -> None:
    """An answer without headers repeats none (an empty run keeps its Location only)."""
    headers = {"Idempotency-Key": "patch-once"}
    path = f"{CUSTOMERS}/{customer_id}"
    first = await client.patch(path, json={"timezone": "UTC"}, headers=headers)
    again = await client.patch(path, json={"timezone": "UTC"}, headers=headers)
    assert (first.status_code, again.status_code) == (200, 200)
    assert "location" not in first.headers
    assert "location" not in again.headers
    assert again.headers["idempotent-replayed"] == "true"
