"""Text that reaches the database or the logs: NUL, other control characters, invalid
Unicode and over-long values are a 4xx JSON error naming the field, on both engines,
and nothing is written (PostgreSQL refuses NUL in text, SQLite would store it)."""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from sqlalchemy import func, select

from antaeus.api import schemas
from antaeus.clock import ManualClock
from antaeus.simulators.simulated import SimulatedPaymentProvider
from antaeus.storage.database import Database
from antaeus.storage.tables import invoice_actions
from tests.api.test_billing_api import (
    failed_invoice,
    get_json,
    new_customer,
    new_invoice,
    review_invoice,
)

FUTURE = "2027-01-01T00:00:00Z"


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatedPaymentProvider]:
    provider = SimulatedPaymentProvider(":memory:", failure_rate=0.0, seed=1)
    try:
        yield provider
    finally:
        await provider.aclose()


async def _actions(database: Database) -> int:
    async with database.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(invoice_actions))).scalar())


async def _invoice_in_state(
    action: str,
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,
) -> int:
    """An invoice the action would succeed on: FAILED (retry), REVIEW (resolve), PENDING (void)."""
    if action == "retry":
        return await failed_invoice(client, database, clock, simulator)
    if action == "resolve":
        iid, _run = await review_invoice(client, database, clock)
        return iid
    return await new_invoice(client, await new_customer(client), due_at=FUTURE)


def _assert_422(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == "validation_error", body
    assert body["field"] == field, body
    assert field in body["message"], body


NUL_CASES = [
    ("retry", {"note": "before\u0000after"}, "note"),
    ("void", {"note": "\u0000"}, "note"),
    ("resolve", {"charged": False, "note": "checked\u0000"}, "note"),
    ("resolve", {"charged": True, "chargeId": "ch_1\u00002"}, "chargeId"),
    ("resolve", {"charged": True, "chargeId": "ch_1", "note": "x\u0000"}, "note"),
]


@pytest.mark.parametrize(("action", "body", "field"), NUL_CASES)
async def test_nul_in_a_text_field_is_422_and_writes_nothing(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,
    action: str,
    body: dict[str, Any],
    field: str,
) -> None:
    iid = await _invoice_in_state(action, client, database, clock, simulator)
    before = await get_json(client, f"/rest/v1/invoices/{iid}")
    response = await client.post(f"/rest/v1/invoices/{iid}/{action}", json=body)
    _assert_422(response, field)
    assert await get_json(client, f"/rest/v1/invoices/{iid}") == before
    assert await _actions(database) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"charged": True, "chargeId": "ch\u00011"}, "chargeId"),
        ({"charged": True, "chargeId": "ch_1\n"}, "chargeId"),
        ({"charged": True, "chargeId": "ch\t1"}, "chargeId"),
        ({"charged": True, "chargeId": "ch_1\u007f"}, "chargeId"),
        ({"charged": True, "chargeId": "ch_1\u0085"}, "chargeId"),
        ({"charged": True, "chargeId": "x" * 256}, "chargeId"),
        ({"charged": False, "note": "esc \u001b[31m red"}, "note"),
        ({"charged": False, "note": "bell\u0007"}, "note"),
        ({"charged": False, "note": "x" * 2001}, "note"),
    ],
    ids=[
        "charge-id-soh",
        "charge-id-newline",
        "charge-id-tab",
        "charge-id-del",
        "charge-id-c1",
        "charge-id-256",
        "note-escape",
        "note-bell",
        "note-2001",
    ],
)
async def test_control_characters_and_over_long_values_are_422(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    body: dict[str, Any],
    field: str,
) -> None:
    iid, _run = await review_invoice(client, database, clock)
    _assert_422(await client.post(f"/rest/v1/invoices/{iid}/resolve", json=body), field)
    assert (await get_json(client, f"/rest/v1/invoices/{iid}"))["status"] == "REVIEW"
    assert await _actions(database) == 0


async def test_a_note_may_hold_line_breaks_tabs_and_any_language(
    client: httpx.AsyncClient, database: Database
) -> None:
    note = "checked in the dashboard:\r\n\tch_1 ✓ — Grüße, 日本語 🙂" + "x" * 1950
    iid = await new_invoice(client, await new_customer(client), due_at=FUTURE)
    response = await client.post(f"/rest/v1/invoices/{iid}/void", json={"note": note})
    assert response.status_code == 200, response.text
    async with database.read() as conn:
        stored = (await conn.execute(select(invoice_actions.c.note))).scalar_one()
    assert stored == note


@pytest.mark.parametrize(
    "raw",
    [
        b'{"note": "\\ud800"}',  # a lone surrogate, escaped
        b'{"note": "a\\udfffb"}',
        b'{"note": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8: not UTF-8
        b'{"\\ud800": 1}',  # in a key (its error message would name it)
        b'{"note": "\xff"}',  # not UTF-8 at all
    ],
    ids=["escaped", "escaped-low", "encoded", "in-a-key", "latin-1"],
)
async def test_text_that_is_not_unicode_is_400(
    client: httpx.AsyncClient, database: Database, raw: bytes
) -> None:
    iid = await new_invoice(client, await new_customer(client), due_at=FUTURE)
    response = await client.post(
        f"/rest/v1/invoices/{iid}/void", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_json"
    assert response.json()["field"] == "body"
    assert (await get_json(client, f"/rest/v1/invoices/{iid}"))["status"] == "PENDING"
    assert await _actions(database) == 0


async def test_a_surrogate_pair_is_one_character_and_fine(
    client: httpx.AsyncClient, database: Database
) -> None:
    iid = await new_invoice(client, await new_customer(client), due_at=FUTURE)
    response = await client.post(
        f"/rest/v1/invoices/{iid}/void",
        content=b'{"note": "smile \\ud83d\\ude42"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    async with database.read() as conn:
        assert (await conn.execute(select(invoice_actions.c.note))).scalar_one() == "smile 🙂"


@pytest.mark.parametrize(
    "timezone",
    ["UTC\u0000", "Europe/Copenhagen\u0000", "\u0000", "UTC\n", "x" * 65],
    ids=["utc-nul", "zone-nul", "nul", "newline", "65"],
)
async def test_customer_timezone_with_nul_or_too_long_is_422(
    client: httpx.AsyncClient, timezone: str
) -> None:
    response = await client.post(
        "/rest/v1/customers", json={"currency": "DKK", "timezone": timezone}
    )
    _assert_422(response, "timezone")
    assert (await client.get("/rest/v1/customers")).json() == []


@pytest.mark.parametrize(
    "path",
    [
        "/rest/v1/customers/1%00",
        "/rest/v1/customers/%00",
        "/rest/v1/invoices/1%01",
        "/rest/v1/invoices/1%ED%A0%80",
        "/rest/v1/invoices?customerId=1%00",
        "/rest/v1/invoices?customerId=%FF",
        "/rest/v1/invoices?status=PAID%00",
    ],
)
async def test_control_characters_in_ids_of_urls_are_422(
    client: httpx.AsyncClient, path: str
) -> None:
    await new_customer(client)
    response = await client.get(path)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"


@pytest.mark.parametrize(
    "key",
    [b"key\x00", b"key\x01", b"key\x7f", b"k" * 256, b"caf\xc3\xa9", b"\xff"],
    ids=["nul", "soh", "del", "256", "utf-8", "latin-1"],
)
async def test_a_bad_idempotency_key_is_400_and_creates_nothing(
    client: httpx.AsyncClient, key: bytes
) -> None:
    response = await client.post(
        "/rest/v1/customers", json={"currency": "DKK"}, headers={"Idempotency-Key": key}
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert (body["error"], body["field"]) == ("invalid_idempotency_key", "Idempotency-Key")
    assert (await client.get("/rest/v1/customers")).json() == []


# -- every string a request body can carry goes through one checked type ---------------


def _request_models() -> list[type[BaseModel]]:
    return [
        obj
        for obj in vars(schemas).values()
        if isinstance(obj, type)
        and issubclass(obj, schemas.RequestBody)
        and obj is not schemas.RequestBody
    ]


def _strings_checked(annotation: Any, metadata: list[Any]) -> bool | None:
    """None when no str is in the annotation; else whether every str is the checked type."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        inner, *extra = typing.get_args(annotation)
        return _strings_checked(inner, [*metadata, *extra])
    if annotation is str:
        return any(getattr(m, "func", None) in schemas.TEXT_CHECKS for m in metadata)
    results = [_strings_checked(a, metadata) for a in typing.get_args(annotation)]
    found = [r for r in results if r is not None]
    return all(found) if found else None


def test_every_string_field_of_a_request_body_is_checked_text() -> None:
    models = _request_models()
    assert {m.__name__ for m in models} >= {"ActionBody", "ResolveBody", "CustomerCreate"}
    unchecked = []
    for model in models:
        for name, info in model.model_fields.items():
            if _strings_checked(info.annotation, list(info.metadata)) is False:
                unchecked.append(f"{model.__name__}.{name}")
    assert unchecked == [], f"str fields without the shared text check: {unchecked}"
