"""The client without a server: webhook verification, retry waits, models of the JSON
issue 21 adds, the route map against the app's routes, and the sync file made from
the async one."""

from __future__ import annotations

import inspect
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, get_args

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from antaeus.api.app import create_app
from antaeus.client import (
    AsyncClient,
    Client,
    CreditEntry,
    Customer,
    FailureReason,
    Interval,
    Invoice,
    InvoiceStatus,
    Money,
    SubscriptionStatus,
    UpcomingInvoice,
    WebhookVerificationError,
    _core,
    _unasync,
    verify_webhook,
)
from antaeus.client._routes import ROUTES
from antaeus.config import Settings
from antaeus.domain import invoice as domain_invoice
from antaeus.domain import periods as domain_periods
from antaeus.domain import subscription as domain_subscription
from antaeus.notify.webhooks import new_secret, sign

# -- webhooks -------------------------------------------------------------------------

BODY = (
    '{"id":"evt_7","type":"invoice.paid","createdAt":"2026-11-22T12:00:00Z","data":'
    '{"invoice":{"id":3,"customerId":1,"amount":{"value":123.40,"currency":"EUR"},'
    '"status":"PAID","dueAt":"2026-11-01T00:00:00Z","attemptCount":1,"lastFailure":null,'
    '"nextAttemptAt":null},"runId":2}}'
)


def _headers(secret: str, body: str, at: datetime | None = None, msg_id: str = "evt_7") -> Any:
    stamp = int((at or datetime.now(UTC)).timestamp())
    return {
        "Webhook-Id": msg_id,
        "Webhook-Timestamp": str(stamp),
        "Webhook-Signature": sign(secret, msg_id, stamp, body),  # the server's own signer
    }


def test_a_delivery_signed_by_the_server_verifies_to_a_typed_event() -> None:
    secret = new_secret()
    event = verify_webhook(secret, _headers(secret, BODY), BODY.encode())
    assert (event.id, event.type, event.run_id) == ("evt_7", "invoice.paid", 2)
    assert event.created_at == datetime(2026, 11, 22, 12, tzinfo=UTC)
    assert event.invoice is not None
    assert event.invoice.amount == Money(Decimal("123.40"), "EUR")
    assert str(event.invoice.amount.value) == "123.40"  # exact, never a float
    assert verify_webhook(secret, _headers(secret, BODY), BODY) == event  # str body alike
    pairs = list(_headers(secret, BODY).items())  # headers as pairs, in any case
    assert verify_webhook(secret, [(k.upper(), v) for k, v in pairs], BODY) == event


@pytest.mark.parametrize(
    "case", ["tampered", "other_secret", "stale", "future", "missing", "bad_secret"]
)
def test_anything_that_does_not_check_is_refused(case: str) -> None:
    secret = new_secret()
    headers, body, key = _headers(secret, BODY), BODY, secret
    if case == "tampered":
        body = BODY.replace("123.40", "1.40")
    elif case == "other_secret":
        key = new_secret()
    elif case == "stale":
        headers = _headers(secret, BODY, datetime.now(UTC) - timedelta(minutes=10))
    elif case == "future":
        headers = _headers(secret, BODY, datetime.now(UTC) + timedelta(minutes=10))
    elif case == "missing":
        del headers["Webhook-Signature"]
    elif case == "bad_secret":
        key = ""
    with pytest.raises(WebhookVerificationError):
        verify_webhook(key, headers, body)


def test_every_signature_in_the_header_is_tried() -> None:
    old, new = new_secret(), new_secret()
    headers = _headers(new, BODY)
    stamp = int(headers["Webhook-Timestamp"])
    headers["Webhook-Signature"] = (
        f"{sign(old, 'evt_7', stamp, BODY)} {sign(new, 'evt_7', stamp, BODY)}"
    )
    assert verify_webhook(old, headers, BODY).id == "evt_7"
    assert verify_webhook(new, headers, BODY).id == "evt_7"
    # and the reference library's own signature checks the same
    signed = Webhook(new).sign("evt_7", datetime.now(UTC), BODY)
    headers["Webhook-Signature"] = signed
    assert verify_webhook(new, headers, BODY).type == "invoice.paid"


def test_signed_but_not_an_event_is_refused() -> None:
    secret = new_secret()
    with pytest.raises(WebhookVerificationError, match="not an Antaeus event"):
        verify_webhook(secret, _headers(secret, "[1]"), "[1]")


# -- retries ----------------------------------------------------------------------------


def _response(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, json={"error": "x", "message": "y"})


def test_waits_grow_with_jitter_and_honour_retry_after() -> None:
    for retry in (1, 2, 3):
        step = 0.5 * 2 ** (retry - 1)
        waits = {_core.wait_before(retry, 0.5, None) for _ in range(50)}
        assert all(step / 2 <= w <= step for w in waits)
        assert len(waits) > 1  # jittered
    assert _core.wait_before(1, 0.5, _response(429, **{"Retry-After": "7"})) == 7
    later = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 25 <= _core.wait_before(1, 0.5, _response(503, **{"Retry-After": later})) <= 30
    assert _core.wait_before(1, 0.5, _response(503, **{"Retry-After": "86400"})) == 60
    assert _core.wait_before(1, 0.5, _response(503, **{"Retry-After": "soon"})) <= 0.5


def test_what_is_retried() -> None:
    assert _core.retryable(_response(429))
    assert _core.retryable(_response(500))
    assert _core.retryable(_response(503))
    assert not _core.retryable(_response(404))
    assert not _core.retryable(_response(422))
    conflict = httpx.Response(409, json={"error": "idempotency_conflict", "message": "m"})
    assert _core.retryable(conflict)
    assert not _core.retryable(httpx.Response(409, json={"error": "invalid_state"}))


def test_arguments_go_out_exact() -> None:
    body = _core.wire({"amount": {"value": Decimal("89.50"), "currency": "EUR"}, "x": None})
    assert body == {"amount": {"value": "89.50", "currency": "EUR"}, "x": None}
    assert _core.wire(datetime(2027, 1, 1, 1, tzinfo=UTC)) == "2027-01-01T01:00:00Z"
    assert _core.wire(date(2027, 1, 14)) == "2027-01-14"
    with pytest.raises(TypeError, match="float"):
        _core.wire(1.5)
    with pytest.raises(ValueError, match="naive"):
        _core.wire(datetime(2027, 1, 1))
    assert _core.query(archived=False, status=None, customerId=3) == {
        "archived": "false",
        "customerId": "3",
    }


# -- models -----------------------------------------------------------------------------


def test_issue_21_fields_are_read_when_the_server_sends_them() -> None:
    line = {
        "id": 9,
        "kind": "subscription",
        "subscriptionId": 4,
        "planId": 3,
        "description": "Pro × 2, Jan 14 – Feb 1",
        "periodStart": "2027-01-14",
        "periodEnd": "2027-02-01",
        "quantity": 2,
        "amount": {"value": Decimal("34.84"), "currency": "EUR"},
    }
    invoice = Invoice.from_json(
        {
            "id": 1,
            "customerId": 2,
            "amount": {"value": Decimal("34.84"), "currency": "EUR"},
            "status": "PENDING",
            "dueAt": "2027-01-13T23:00:00Z",
            "attemptCount": 0,
            "lastFailure": None,
            "nextAttemptAt": None,
            "lines": [line, {**line, "id": 10, "kind": "balance", "subscriptionId": None}],
        }
    )
    assert invoice.lines[0].period_start == date(2027, 1, 14)
    assert invoice.lines[0].amount == Money(Decimal("34.84"), "EUR")
    assert invoice.lines[1].subscription_id is None
    customer = Customer.from_json(
        {
            "id": 2,
            "currency": "JPY",
            "timezone": "Asia/Tokyo",
            "providerCustomerId": None,
            "providerPaymentMethodId": None,
            "creditBalance": {"value": 1000, "currency": "JPY"},
        }
    )
    assert customer.credit_balance == Money(Decimal(1000), "JPY")
    upcoming = UpcomingInvoice.from_json(
        {"dueAt": "2027-02-01T00:00:00+09:00", "amount": line["amount"], "lines": [line]}
    )
    assert upcoming.due_at == datetime(2027, 1, 31, 15, tzinfo=UTC)
    entry = CreditEntry.from_json(
        {
            "id": 1,
            "customerId": 2,
            "amount": {"value": Decimal("-5.00"), "currency": "EUR"},
            "balanceAfter": {"value": Decimal("10.00"), "currency": "EUR"},
            "changeId": None,
            "reason": "adjustment",
            "note": "goodwill",
            "actor": "ops",
            "createdAt": "2027-01-01T00:00:00Z",
        }
    )
    assert entry.amount.value == Decimal("-5.00")
    assert entry.balance_after == Money(Decimal("10.00"), "EUR")
    assert (entry.customer_id, entry.change_id) == (2, None)
    assert entry.raw["reason"] == "adjustment"


def test_the_argument_literals_are_the_servers_values() -> None:
    assert set(get_args(InvoiceStatus)) == {s.value for s in domain_invoice.InvoiceStatus}
    assert set(get_args(FailureReason)) == {r.value for r in domain_invoice.FailureReason}
    assert set(get_args(SubscriptionStatus)) == {
        s.value for s in domain_subscription.SubscriptionStatus
    }
    assert set(get_args(Interval)) == {i.value for i in domain_periods.Interval}


# -- every route has its method ---------------------------------------------------------

#: routes of issue 21 the client already calls, which the app may not have yet
ANNOUNCED = {
    ("GET", "/rest/v1/customers/{id}/upcoming-invoice"),
    ("GET", "/rest/v1/customers/{id}/credit-entries"),
    ("POST", "/rest/v1/customers/{id}/credit-entries"),
}


def _app_routes() -> set[tuple[str, str]]:
    app = create_app(Settings(DATABASE_URL="sqlite:///unused.db"))
    found = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/rest/")
        for method in operations
    }
    return found | {("GET", "/metrics")}  # left out of the OpenAPI document


def test_every_route_of_the_api_has_a_client_method() -> None:
    routes = _app_routes()
    assert len(routes) >= 39
    assert sorted(routes - set(ROUTES)) == []
    assert sorted(set(ROUTES) - routes - ANNOUNCED) == []  # nothing stale


@pytest.mark.parametrize("client_class", [Client, AsyncClient])
def test_every_mapped_method_exists(client_class: type[Client] | type[AsyncClient]) -> None:
    client = client_class(base_url="http://antaeus.invalid")
    for attribute in ROUTES.values():
        target: Any = client
        for part in attribute.split("."):
            target = getattr(target, part)
        assert callable(target), attribute


def test_the_sync_client_is_the_async_one_made_plain() -> None:
    made = _unasync.unasync(_unasync.SOURCE.read_text(encoding="utf-8"))
    assert _unasync.TARGET.read_text(encoding="utf-8") == made, (
        "run python -m antaeus.client._unasync"
    )
    sync, not_sync = Client(base_url="http://x.invalid"), AsyncClient(base_url="http://x.invalid")
    for name in (
        "customers",
        "invoices",
        "plans",
        "subscriptions",
        "billing",
        "runs",
        "events",
        "webhooks",
    ):
        one, other = getattr(sync, name), getattr(not_sync, name)
        methods = {m for m in dir(one) if not m.startswith("_")}
        assert methods == {m for m in dir(other) if not m.startswith("_")}
        for method in methods:
            assert inspect.signature(getattr(one, method)).parameters.keys() == (
                inspect.signature(getattr(other, method)).parameters.keys()
            ), (name, method)
            paged = method in {"list", "credit_entries", "actions", "deliveries"}
            assert inspect.iscoroutinefunction(getattr(other, method)) is not paged, method
