"""Bad input: always a 4xx JSON error naming the field, never a 500, and nothing written."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import structlog

from antaeus.api import errors

JSON = {"content-type": "application/json"}
MIB = 1024 * 1024


@dataclass(frozen=True)
class World:
    customer_id: int  # a DKK customer in Europe/Copenhagen
    invoice_id: int
    before: tuple[Any, Any]  # every customer and invoice before the bad request

    async def assert_unchanged(self, client: httpx.AsyncClient) -> None:
        assert await _snapshot(client) == self.before, "a refused request wrote something"


async def _snapshot(client: httpx.AsyncClient) -> tuple[Any, Any]:
    customers = await client.get("/rest/v1/customers", params={"limit": 10_000})
    invoices = await client.get("/rest/v1/invoices", params={"limit": 10_000})
    assert customers.status_code == 200
    assert invoices.status_code == 200
    return customers.json(), invoices.json()


@pytest.fixture
async def world(client: httpx.AsyncClient) -> World:
    customer = await client.post(
        "/rest/v1/customers", json={"currency": "DKK", "timezone": "Europe/Copenhagen"}
    )
    assert customer.status_code == 201
    cid = customer.json()["id"]
    invoice = await client.post(
        "/rest/v1/invoices",
        json={"customerId": cid, "amount": {"value": "10.00", "currency": "DKK"}},
    )
    assert invoice.status_code == 201
    return World(cid, invoice.json()["id"], await _snapshot(client))


@pytest.fixture
def plain_error_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """Log unexpected errors as plain text: structlog's default pretty traceback with
    locals takes seconds per 500 (only the known-bug cases below reach it)."""
    logger = structlog.wrap_logger(
        structlog.PrintLogger(sys.stderr),
        processors=[structlog.processors.format_exc_info, structlog.processors.KeyValueRenderer()],
    )
    monkeypatch.setattr(errors, "log", logger)


def _assert_error(
    response: httpx.Response, status: int, field: str | None, error: str | None = None
) -> dict[str, Any]:
    assert response.status_code < 500, response.text
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.text
    body: dict[str, Any] = response.json()
    assert isinstance(body, dict)
    assert isinstance(body.get("error"), str), body
    assert isinstance(body.get("message"), str), body
    assert body["message"]
    if error is not None:
        assert body["error"] == error, body
    if field is not None:
        assert body.get("field") == field, body
    return body


def _lax_int_bug(value: str) -> Any:
    # was a bug: lax integer parsing took the path id as an integer (fixed, kept as a case)
    return pytest.param(value, id=f"lax-{value}")


# --- ids in the path ------------------------------------------------------------------

BAD_IDS = [
    "abc",
    "0",
    "-1",
    "1.5",
    str(2**63),
    str(10**30),
    "1e3",
    "0x1",
    "true",
    "%20",
    "١",  # ARABIC-INDIC DIGIT ONE
    _lax_int_bug("1_0"),
    _lax_int_bug("1.0"),
]


@pytest.mark.parametrize("resource", ["invoices", "customers"])
@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_bad_path_id(
    client: httpx.AsyncClient, world: World, resource: str, bad_id: str
) -> None:
    response = await client.get(f"/rest/v1/{resource}/{bad_id}")
    _assert_error(response, 422, "id", "validation_error")
    await world.assert_unchanged(client)


@pytest.mark.usefixtures("world")
@pytest.mark.parametrize("resource", ["invoices", "customers"])
async def test_largest_id_is_404_not_an_error(client: httpx.AsyncClient, resource: str) -> None:
    response = await client.get(f"/rest/v1/{resource}/{2**63 - 1}")
    _assert_error(response, 404, None, "not_found")


# --- query parameters -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/rest/v1/invoices", {"limit": "abc"}, "limit"),
        ("/rest/v1/invoices", {"limit": "0"}, "limit"),
        ("/rest/v1/invoices", {"limit": "-5"}, "limit"),
        ("/rest/v1/invoices", {"limit": "10001"}, "limit"),
        ("/rest/v1/invoices", {"limit": "1.5"}, "limit"),
        ("/rest/v1/invoices", {"limit": str(2**64)}, "limit"),
        ("/rest/v1/invoices", {"after": "-1"}, "after"),
        ("/rest/v1/invoices", {"after": "abc"}, "after"),
        ("/rest/v1/invoices", {"after": str(2**63)}, "after"),
        ("/rest/v1/invoices", {"status": "NOPE"}, "status"),
        ("/rest/v1/invoices", {"status": "pending"}, "status"),
        ("/rest/v1/invoices", {"customerId": "0"}, "customerId"),
        ("/rest/v1/invoices", {"customerId": "abc"}, "customerId"),
        ("/rest/v1/invoices", {"customerId": str(2**63)}, "customerId"),
        ("/rest/v1/customers", {"limit": "10001"}, "limit"),
        ("/rest/v1/customers", {"limit": "0"}, "limit"),
        ("/rest/v1/customers", {"after": "-1"}, "after"),
        ("/rest/v1/customers", {"after": "x"}, "after"),
    ],
)
async def test_bad_query_parameter(
    client: httpx.AsyncClient, world: World, path: str, params: dict[str, str], field: str
) -> None:
    response = await client.get(path, params=params)
    _assert_error(response, 422, field, "validation_error")
    await world.assert_unchanged(client)


# --- creating invoices ------------------------------------------------------------------


def _invoice(value: str = '"89.52"', currency: str = '"DKK"', extra: str = "") -> str:
    return f'{{"customerId":CID,"amount":{{"value":{value},"currency":{currency}}}{extra}}}'


def _bug(case: tuple[str, str, int, str | None, str | None], reason: str) -> Any:
    """A case that once was a bug (`reason`); fixed, it stays as a regression test."""
    return pytest.param(*case[1:], id=case[0])


INVOICE_CASES: list[tuple[str, str, int, str | None, str | None]] = [
    # id, body (CID is the customer's id), status, error, field
    ("three-decimals-string", _invoice('"1.234"'), 422, "validation_error", "amount.value"),
    ("three-decimals-number", _invoice("1.234"), 422, "validation_error", "amount.value"),
    ("three-decimals-zero", _invoice('"1.230"'), 422, "validation_error", "amount.value"),
    ("three-decimals-zero-number", _invoice("1.230"), 422, "validation_error", "amount.value"),
    ("tiny-number", _invoice("1e-5"), 422, "validation_error", "amount.value"),
    ("negative-string", _invoice('"-1.00"'), 422, "validation_error", "amount.value"),
    ("negative-number", _invoice("-5"), 422, "validation_error", "amount.value"),
    ("negative-cent", _invoice("-0.01"), 422, "validation_error", "amount.value"),
    ("zero-string", _invoice('"0"'), 422, "validation_error", "amount.value"),
    ("zero-number", _invoice("0"), 422, "validation_error", "amount.value"),
    ("zero-cents", _invoice('"0.00"'), 422, "validation_error", "amount.value"),
    ("negative-zero", _invoice('"-0.00"'), 422, "validation_error", "amount.value"),
    ("nan-literal", _invoice("NaN"), 400, "invalid_json", "body"),
    ("nan-string", _invoice('"NaN"'), 422, "validation_error", "amount.value"),
    ("infinity-literal", _invoice("Infinity"), 400, "invalid_json", "body"),
    ("minus-infinity-literal", _invoice("-Infinity"), 400, "invalid_json", "body"),
    ("infinity-string", _invoice('"Infinity"'), 422, "validation_error", "amount.value"),
    ("inf-string", _invoice('"inf"'), 422, "validation_error", "amount.value"),
    ("1e30-number", _invoice("1e30"), 422, "validation_error", "amount.value"),
    ("1e30-string", _invoice('"1e30"'), 422, "validation_error", "amount.value"),
    ("1e400-number", _invoice("1e400"), 422, "validation_error", "amount.value"),
    ("huge-integer", _invoice("1" + "0" * 30), 422, "validation_error", "amount.value"),
    ("over-max-string", _invoice('"1000000000000.00"'), 422, "validation_error", "amount.value"),
    ("over-max-number", _invoice("1000000000000.00"), 422, "validation_error", "amount.value"),
    ("1e5-string", _invoice('"1e5"'), 422, "validation_error", "amount.value"),
    ("1E5-string", _invoice('"1E5"'), 422, "validation_error", "amount.value"),
    ("hex-string", _invoice('"0x10"'), 422, "validation_error", "amount.value"),
    ("comma-string", _invoice('"1,00"'), 422, "validation_error", "amount.value"),
    ("plus-string", _invoice('"+1.00"'), 422, "validation_error", "amount.value"),
    ("spaces-string", _invoice('" 1.00 "'), 422, "validation_error", "amount.value"),
    ("empty-string", _invoice('""'), 422, "validation_error", "amount.value"),
    ("bool-value", _invoice("true"), 422, "validation_error", "amount.value"),
    ("null-value", _invoice("null"), 422, "validation_error", "amount.value"),
    ("list-value", _invoice("[1]"), 422, "validation_error", "amount.value"),
    ("object-value", _invoice('{"v":1}'), 422, "validation_error", "amount.value"),
    ("unknown-currency", _invoice(currency='"XXX"'), 422, "unknown_currency", "amount.currency"),
    ("lowercase-currency", _invoice(currency='"dkk"'), 422, "unknown_currency", "amount.currency"),
    ("number-currency", _invoice(currency="1"), 422, None, "amount.currency"),
    ("null-currency", _invoice(currency="null"), 422, None, "amount.currency"),
    ("other-currency", _invoice(currency='"EUR"'), 422, "currency_mismatch", "amount.currency"),
    ("missing-amount", '{"customerId":CID}', 422, "validation_error", "amount"),
    (
        "missing-customer",
        '{"amount":{"value":"1.00","currency":"DKK"}}',
        422,
        "validation_error",
        "customerId",
    ),
    (
        "missing-value",
        '{"customerId":CID,"amount":{"currency":"DKK"}}',
        422,
        "validation_error",
        "amount.value",
    ),
    (
        "missing-currency",
        '{"customerId":CID,"amount":{"value":"1.00"}}',
        422,
        "validation_error",
        "amount.currency",
    ),
    ("extra-field", _invoice(extra=',"status":"PAID"'), 422, "validation_error", "status"),
    ("extra-id", _invoice(extra=',"id":5'), 422, "validation_error", "id"),
    (
        "extra-amount-field",
        '{"customerId":CID,"amount":{"value":"1.00","currency":"DKK","cents":100}}',
        422,
        "validation_error",
        "amount.cents",
    ),
    (
        "customer-not-found",
        '{"customerId":999,"amount":{"value":"1.00","currency":"DKK"}}',
        422,
        "customer_not_found",
        "customerId",
    ),
    (
        "customer-string",
        '{"customerId":"CID","amount":{"value":"1.00","currency":"DKK"}}',
        422,
        "validation_error",
        "customerId",
    ),
    (
        "customer-float",
        '{"customerId":1.5,"amount":{"value":"1.00","currency":"DKK"}}',
        422,
        "validation_error",
        "customerId",
    ),
    (
        "customer-zero",
        '{"customerId":0,"amount":{"value":"1.00","currency":"DKK"}}',
        422,
        "validation_error",
        "customerId",
    ),
    (
        "customer-negative",
        '{"customerId":-1,"amount":{"value":"1.00","currency":"DKK"}}',
        422,
        "validation_error",
        "customerId",
    ),
    (
        "customer-2**63",
        f'{{"customerId":{2**63},"amount":{{"value":"1.00","currency":"DKK"}}}}',
        422,
        "validation_error",
        "customerId",
    ),
    (
        "customer-bool",
        '{"customerId":true,"amount":{"value":"1.00","currency":"DKK"}}',
        422,
        "validation_error",
        "customerId",
    ),
    (
        "customer-null",
        '{"customerId":null,"amount":{"value":"1.00","currency":"DKK"}}',
        422,
        "validation_error",
        "customerId",
    ),
    ("due-naive", _invoice(extra=',"dueAt":"2026-12-01T00:00:00"'), 422, None, "dueAt"),
    ("due-date-only", _invoice(extra=',"dueAt":"2026-12-01"'), 422, None, "dueAt"),
    ("due-number", _invoice(extra=',"dueAt":1764547200'), 422, None, "dueAt"),
    ("due-garbage", _invoice(extra=',"dueAt":"garbage"'), 422, None, "dueAt"),
    ("due-empty", _invoice(extra=',"dueAt":""'), 422, None, "dueAt"),
    ("due-feb-30", _invoice(extra=',"dueAt":"2026-02-30T00:00:00Z"'), 422, None, "dueAt"),
    ("due-hour-25", _invoice(extra=',"dueAt":"2026-12-01T25:00:00Z"'), 422, None, "dueAt"),
    ("due-offset-24h", _invoice(extra=',"dueAt":"2026-12-01T00:00:00+24:00"'), 422, None, "dueAt"),
    ("due-year-1", _invoice(extra=',"dueAt":"0001-01-01T00:00:00Z"'), 422, None, "dueAt"),
    ("due-year-9999", _invoice(extra=',"dueAt":"9999-01-01T00:00:00Z"'), 422, None, "dueAt"),
    ("due-list", _invoice(extra=',"dueAt":["2026-12-01T00:00:00Z"]'), 422, None, "dueAt"),
    ("body-array", "[]", 422, "validation_error", "body"),
    ("body-null", "null", 422, "validation_error", "body"),
    ("body-string", '"x"', 422, "validation_error", "body"),
    ("body-number", "1", 422, "validation_error", "body"),
    ("body-empty-object", "{}", 422, "validation_error", None),
    ("body-empty", "", 422, None, "body"),
    ("malformed-truncated", '{"customerId":CID,', 400, "invalid_json", "body"),
    ("malformed-text", "hello", 400, "invalid_json", "body"),
    ("malformed-single-quotes", "{'customerId':CID}", 400, "invalid_json", "body"),
    ("malformed-trailing-comma", _invoice()[:-1] + ",}", 400, "invalid_json", "body"),
    ("malformed-trailing-garbage", _invoice() + "x", 400, "invalid_json", "body"),
]

INVOICE_BUGS = [
    _bug(
        (
            "due-overflow-high",
            _invoice(extra=',"dueAt":"9999-12-31T23:59:59-01:00"'),
            422,
            None,
            "dueAt",
        ),
        "OverflowError converting a dueAt at the end of year 9999 with an offset to UTC: 500",
    ),
    _bug(
        (
            "due-overflow-low",
            _invoice(extra=',"dueAt":"0001-01-01T00:00:00+01:00"'),
            422,
            None,
            "dueAt",
        ),
        "OverflowError converting a dueAt in year 1 with an offset to UTC: 500",
    ),
    _bug(
        ("huge-exponent", _invoice("1e999999999"), 422, "validation_error", "amount.value"),
        "decimal.Overflow in parse_amount's abs() for a JSON number like 1e999999999: 500",
    ),
    _bug(
        ("due-unix-seconds-string", _invoice(extra=',"dueAt":"1764547200"'), 422, None, "dueAt"),
        "a numeric string is taken as Unix seconds (2025-12-01); not RFC 3339, no offset",
    ),
    _bug(
        ("too-many-digits-integer", _invoice("1" + "0" * 5000), 400, "invalid_json", "body"),
        "an integer over Python's 4300-digit limit answers 400 bad_request without field",
    ),
    _bug(
        ("too-deep-nesting", "[" * 100_000 + "]" * 100_000, 400, "invalid_json", "body"),
        "RecursionError in json.loads answers 400 bad_request without field",
    ),
]


@pytest.mark.usefixtures("plain_error_log")
@pytest.mark.parametrize(
    ("body", "status", "error", "field"),
    [pytest.param(*case[1:], id=case[0]) for case in INVOICE_CASES] + INVOICE_BUGS,
)
async def test_bad_invoice(
    client: httpx.AsyncClient,
    world: World,
    body: str,
    status: int,
    error: str | None,
    field: str | None,
) -> None:
    content = body.replace("CID", str(world.customer_id))
    response = await client.post("/rest/v1/invoices", content=content, headers=JSON)
    _assert_error(response, status, field, error)
    await world.assert_unchanged(client)


async def test_several_errors_are_listed(client: httpx.AsyncClient, world: World) -> None:
    response = await client.post(
        "/rest/v1/invoices",
        json={"customerId": "x", "amount": {"value": "1.23456", "currency": "XXX"}, "y": 1},
    )
    body = _assert_error(response, 422, None)
    fields = {e["field"] for e in body["errors"]}
    assert {"customerId", "amount.value", "amount.currency", "y"} <= fields
    assert body["field"] in fields
    await world.assert_unchanged(client)


# --- creating customers -----------------------------------------------------------------


def _localtime_case() -> Any:
    return pytest.param(
        '{"currency":"DKK","timezone":"localtime"}',
        422,
        None,
        "timezone",
        id="timezone-localtime",  # was accepted: the host's file, not an IANA zone
    )


CUSTOMER_CASES: list[tuple[str, str, int, str | None, str | None]] = [
    ("unknown-currency", '{"currency":"XXX"}', 422, "unknown_currency", "currency"),
    ("lowercase-currency", '{"currency":"dkk"}', 422, "unknown_currency", "currency"),
    ("currency-with-space", '{"currency":"DKK "}', 422, "unknown_currency", "currency"),
    ("number-currency", '{"currency":208}', 422, None, "currency"),
    ("null-currency", '{"currency":null}', 422, None, "currency"),
    ("missing-currency", '{"timezone":"UTC"}', 422, "validation_error", "currency"),
    ("extra-field", '{"currency":"DKK","id":7}', 422, "validation_error", "id"),
    ("extra-name", '{"currency":"DKK","name":"x"}', 422, "validation_error", "name"),
    ("unknown-timezone", '{"currency":"DKK","timezone":"Mars/Olympus"}', 422, None, "timezone"),
    (
        "lowercase-timezone",
        '{"currency":"DKK","timezone":"europe/copenhagen"}',
        422,
        None,
        "timezone",
    ),
    ("path-timezone", '{"currency":"DKK","timezone":"../../etc/passwd"}', 422, None, "timezone"),
    (
        "posix-timezone",
        '{"currency":"DKK","timezone":"posix/Europe/Copenhagen"}',
        422,
        None,
        "timezone",
    ),
    ("offset-timezone", '{"currency":"DKK","timezone":"+01:00"}', 422, None, "timezone"),
    ("empty-timezone", '{"currency":"DKK","timezone":""}', 422, None, "timezone"),
    ("null-timezone", '{"currency":"DKK","timezone":null}', 422, None, "timezone"),
    ("number-timezone", '{"currency":"DKK","timezone":1}', 422, None, "timezone"),
    ("long-timezone", '{"currency":"DKK","timezone":"' + "A" * 65 + '"}', 422, None, "timezone"),
    (
        "nul-timezone",
        '{"currency":"DKK","timezone":"Europe/Copenhagen\\u0000"}',
        422,
        None,
        "timezone",
    ),
    ("body-array", '[{"currency":"DKK"}]', 422, "validation_error", "body"),
    ("body-empty", "", 422, None, "body"),
    ("malformed", '{"currency":', 400, "invalid_json", "body"),
    ("malformed-nan", '{"currency":"DKK","x":NaN}', 400, "invalid_json", "body"),
    ("not-utf8", b'{"currency":"\xff"}'.decode("latin-1"), 400, None, None),
]


@pytest.mark.parametrize(
    ("body", "status", "error", "field"),
    [pytest.param(*case[1:], id=case[0]) for case in CUSTOMER_CASES] + [_localtime_case()],
)
async def test_bad_customer(
    client: httpx.AsyncClient,
    world: World,
    body: str,
    status: int,
    error: str | None,
    field: str | None,
) -> None:
    content = body.encode("latin-1") if "\xff" in body else body.encode("utf-8")
    response = await client.post("/rest/v1/customers", content=content, headers=JSON)
    _assert_error(response, status, field, error)
    await world.assert_unchanged(client)


# --- body size --------------------------------------------------------------------------


def _padded(text: str, size: int) -> bytes:
    raw = text.encode("utf-8")
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


@pytest.mark.parametrize("path", ["/rest/v1/customers", "/rest/v1/invoices"])
async def test_body_over_1_mib_streamed_is_400(
    client: httpx.AsyncClient, world: World, path: str
) -> None:
    body = _padded('{"currency":"DKK"}', MIB + 1)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    response = await client.post(path, content=chunks(), headers=JSON)
    _assert_error(response, 400, "body", "body_too_large")
    await world.assert_unchanged(client)


@pytest.mark.parametrize("path", ["/rest/v1/customers", "/rest/v1/invoices"])
@pytest.mark.parametrize("size", [MIB + 1, 5 * MIB])
async def test_body_over_1_mib_is_400(
    client: httpx.AsyncClient, world: World, path: str, size: int
) -> None:
    body = _padded('{"currency":"DKK"}', size)
    response = await client.post(path, content=body, headers=JSON)
    _assert_error(response, 400, "body", "body_too_large")
    await world.assert_unchanged(client)


@pytest.mark.parametrize("path", ["/rest/v1/customers", "/rest/v1/invoices"])
async def test_body_over_1_mib_is_refused_and_writes_nothing(
    client: httpx.AsyncClient, world: World, path: str
) -> None:
    # A valid body, padded with whitespace: only its size is wrong.
    body = (
        '{"currency":"DKK"}'
        if path.endswith("customers")
        else f'{{"customerId":{world.customer_id},"amount":{{"value":"1.00","currency":"DKK"}}}}'
    )
    response = await client.post(path, content=_padded(body, MIB + 1), headers=JSON)
    assert response.status_code in (400, 413)  # 413: the known bug above
    await world.assert_unchanged(client)


async def test_body_of_exactly_1_mib_is_accepted(client: httpx.AsyncClient) -> None:
    body = _padded('{"currency":"DKK","timezone":"Europe/Copenhagen"}', MIB)
    response = await client.post("/rest/v1/customers", content=body, headers=JSON)
    assert response.status_code == 201, response.text
    assert response.json()["timezone"] == "Europe/Copenhagen"


# --- unknown paths and methods ----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/rest/v1/nope"),
        ("GET", "/rest/v2/invoices"),
        ("GET", "/nope"),
        ("GET", "/rest"),
        ("GET", "/rest/v1/invoices/1/extra"),
        ("GET", "/rest/v1/customers/1/invoices"),
        ("POST", "/rest/v1/nope"),
        ("POST", "/rest/v1/invoices/1/pay"),
    ],
)
async def test_unknown_path_is_404_json(
    client: httpx.AsyncClient, world: World, method: str, path: str
) -> None:
    response = await client.request(method, path, json={"currency": "DKK"})
    _assert_error(response, 404, None, "not_found")
    await world.assert_unchanged(client)


@pytest.mark.usefixtures("world")
async def test_unknown_path_is_404_json_without_token(anon: httpx.AsyncClient) -> None:
    _assert_error(await anon.get("/rest/v1/nope"), 404, None, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/rest/v1/invoices/1"),
        ("PUT", "/rest/v1/invoices/1"),
        ("PATCH", "/rest/v1/invoices/1"),
        ("PATCH", "/rest/v1/customers"),
        ("DELETE", "/rest/v1/customers"),
        ("POST", "/rest/health"),
    ],
)
async def test_wrong_method_is_405_json(
    client: httpx.AsyncClient, world: World, method: str, path: str
) -> None:
    response = await client.request(method, path)
    _assert_error(response, 405, None, "method_not_allowed")
    await world.assert_unchanged(client)
