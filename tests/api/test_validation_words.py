"""Validation messages speak the API's language, never the library's (issue 20, item 17).

"at most 255 characters", not pydantic's "at most 255 items after validation";
an id too large for its column says so, with a 4xx, never a 500.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

LIBRARY_WORDS = ("items", "Input should", "Value should", "after validation", "String should")


def _said(response: httpx.Response, status: int, field: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["field"] == field, body
    message: str = body["message"]
    for words in LIBRARY_WORDS:
        assert words not in message, message
    return message


@pytest.mark.parametrize(
    ("path", "body", "field", "says"),
    [
        (
            "/rest/v1/customers",
            {"currency": "EUR", "providerCustomerId": "c" * 256},
            "providerCustomerId",
            "at most 255 characters",
        ),
        (
            "/rest/v1/customers",
            {"currency": "EUR", "timezone": "Z" * 65},
            "timezone",
            "at most 64 characters",
        ),
        (
            "/rest/v1/customers",
            {"currency": "EUR", "timezone": ""},
            "timezone",
            "must not be empty",
        ),
        (
            "/rest/v1/invoices",
            {"customerId": 2**63, "amount": {"value": "1.00", "currency": "EUR"}},
            "customerId",
            "too large for an id",
        ),
        (
            "/rest/v1/invoices",
            {"customerId": 10**40, "amount": {"value": "1.00", "currency": "EUR"}},
            "customerId",
            "too large for an id",
        ),
        (
            "/rest/v1/invoices",
            {"customerId": "7", "amount": {"value": "1.00", "currency": "EUR"}},
            "customerId",
            "must be a whole number",
        ),
        (
            "/rest/v1/invoices",
            {"customerId": 0, "amount": {"value": "1.00", "currency": "EUR"}},
            "customerId",
            "must be at least 1",
        ),
        ("/rest/v1/invoices/1/void", {"note": "n" * 2001}, "note", "at most 2000 characters"),
        ("/rest/v1/invoices/1/resolve", {"charged": "yes"}, "charged", "must be true or false"),
        (
            "/rest/v1/invoices/1/resolve",
            {"charged": True, "chargeId": "c" * 256},
            "chargeId",
            "at most 255 characters",
        ),
        ("/rest/v1/invoices/1/resolve", {"charged": True, "chargeId": 5}, "chargeId", "a string"),
        ("/rest/v1/billing", {"trigger": "cron"}, "trigger", "'cron' is not one of api, cli"),
        ("/rest/v1/webhooks", {"url": "https://e.example/" + "p" * 2100}, "url", "characters"),
        ("/rest/v1/webhooks", {"url": "https://e.example/", "events": "x"}, "events", "a list"),
    ],
)
async def test_body_messages_are_ours(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], field: str, says: str
) -> None:
    message = _said(await client.post(path, json=body), 422, field)
    assert says in message, message


@pytest.mark.parametrize(
    ("path", "params", "field", "says"),
    [
        ("/rest/v1/invoices/99999999999999999999", {}, "id", "too large for an id"),
        (f"/rest/v1/invoices/{2**63}", {}, "id", "too large for an id"),
        (f"/rest/v1/customers/{10**45}", {}, "id", "too large"),
        ("/rest/v1/invoices", {"customerId": str(2**63)}, "customerId", "too large for an id"),
        ("/rest/v1/invoices", {"after": "9" * 30}, "after", "too large for an id"),
        ("/rest/v1/invoices", {"limit": "10001"}, "limit", "must be at most 10000"),
        ("/rest/v1/invoices", {"status": "paid"}, "status", "'paid' is not one of PENDING"),
        ("/rest/v1/invoices", {"lastFailure": "x"}, "lastFailure", "customer_not_found"),
        ("/rest/v1/events", {"after": str(2**64)}, "after", "too large for an event id"),
        ("/rest/v1/events", {"after": f"evt_{2**63}"}, "after", "too large for an event id"),
    ],
)
async def test_path_and_query_messages_are_ours(
    client: httpx.AsyncClient, path: str, params: dict[str, str], field: str, says: str
) -> None:
    message = _said(await client.get(path, params=params), 422, field)
    assert says in message, message
