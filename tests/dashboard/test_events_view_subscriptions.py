"""The dashboard's events page says what the subscription events and `invoice.created`
mean (issue 21), from the envelope a consumer receives; odd payloads still get a line."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from antaeus.dashboard.events_view import describe


def _sub(**over: Any) -> dict[str, Any]:
    sub: dict[str, Any] = {
        "id": 5,
        "planId": 3,
        "quantity": 2,
        "startDate": "2027-01-14",
        "trialEndDate": None,
        "cancelAt": None,
        "pendingChange": None,
    }
    sub.update(over)
    return sub


def test_invoice_created_names_its_lines_and_links_the_invoice() -> None:
    envelope = {
        "type": "invoice.created",
        "data": {
            "invoice": {
                "id": 9,
                "customerId": 4,
                "amount": {"value": Decimal("17.42"), "currency": "EUR"},
                "dueAt": "2027-01-14T00:00:00Z",
                "lines": [{"kind": "subscription"}, {"kind": "balance"}],
            }
        },
    }
    line = describe(envelope)
    assert line["what"].startswith("Invoice created from balance, subscription lines, due")
    assert line["amount"] == "17.42 EUR"
    assert ("invoice 9", "/invoices/9") in line["links"]


def test_a_manual_invoice_is_made_by_hand() -> None:
    envelope = {
        "type": "invoice.created",
        "data": {"invoice": {"id": 1, "lines": [{"kind": "manual"}], "dueAt": None}},
    }
    assert describe(envelope)["what"].startswith("Invoice created by hand")


@pytest.mark.parametrize(
    ("kind", "sub", "words"),
    [
        ("subscription.created", _sub(trialEndDate="2027-01-28"), "trial until 2027-01-28"),
        ("subscription.updated", _sub(cancelAt="2027-02-01"), "cancel pending, ends 2027-02-01"),
        (
            "subscription.updated",
            _sub(pendingChange={"planId": 7, "quantity": 1, "effectiveDate": "2027-02-01"}),
            "plan 7 × 1 from 2027-02-01",
        ),
        ("subscription.canceled", _sub(cancelAt="2027-02-01"), "canceled (ends 2027-02-01)"),
        (
            "subscription.trial_will_end",
            _sub(trialEndDate="2027-01-28"),
            "Trial ends on 2027-01-28",
        ),
    ],
)
def test_subscription_events_in_words(kind: str, sub: dict[str, Any], words: str) -> None:
    line = describe({"type": kind, "data": {"subscription": sub}})
    assert words in line["what"]
    assert ("subscription 5", "/subscriptions/5") in line["links"]


@pytest.mark.parametrize(
    "data",
    [
        {"subscription": "not an object"},
        {"subscription": {"id": "5", "pendingChange": [1]}},
        {"invoice": {"lines": "nope"}},
        {},
    ],
)
def test_odd_payloads_still_get_a_line(data: dict[str, Any]) -> None:
    for kind in ("subscription.updated", "invoice.created", "subscription.created"):
        line = describe({"type": kind, "data": data})
        assert isinstance(line["what"], str)
        assert all(not label.startswith("subscription 5") for label, _ in line["links"])
