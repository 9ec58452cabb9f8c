"""The outbox events: every type's stored shape, built in one place (domain/events.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from antaeus.domain.events import (
    ACTION_TYPES,
    ANSWER_TYPES,
    ActionTaken,
    ChargeAnswered,
    ChargeRefused,
    ChargingPaused,
    ChargingResumed,
    Event,
    EventType,
    RunCompleted,
    RunOpened,
    SentToReview,
    payload,
    row,
)
from antaeus.domain.invoice import FailureReason, Invoice, InvoiceStatus
from antaeus.domain.money import Currency, Money
from antaeus.domain.policy import OUTCOME_TABLE, PolicySettings, retention_ending
from antaeus.exactjson import loads

MOMENT = datetime(2026, 3, 1, 0, 0, 30, tzinfo=UTC)


def answered(**changes: Any) -> ChargeAnswered:
    values: dict[str, Any] = {
        "type": EventType.INVOICE_PAYMENT_DECLINED,
        "invoice_id": 7,
        "customer_id": 3,
        "amount": Money(Decimal("123456789012.4"), Currency.DKK),
        "due_at": DUE,
        "status": "PENDING",
        "outcome": "insufficient_funds",
        "attempt": 2,
        "idempotency_key": "inst:7:2",
        "charge_id": None,
        "reason": "insufficient_funds",
        "run_id": 11,
        "next_attempt_at": MOMENT,
    }
    values.update(changes)
    return ChargeAnswered(**values)


DUE = datetime(2026, 2, 28, 23, 0, tzinfo=UTC)


def invoice(status: InvoiceStatus, **changes: Any) -> Invoice:
    values: dict[str, Any] = {
        "id": 7,
        "customer_id": 3,
        "amount": Money(Decimal("10.5"), Currency.EUR),
        "status": status,
        "due_at": DUE,
        "attempt_count": 1,
    }
    values.update(changes)
    return Invoice(**values)


def invoice_shown(status: str, **changes: Any) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": 7,
        "customerId": 3,
        "amount": {"value": Decimal("10.50"), "currency": "EUR"},
        "status": status,
        "dueAt": "2026-02-28T23:00:00Z",
        "attemptCount": 1,
        "lastFailure": None,
        "nextAttemptAt": None,
    }
    shown.update(changes)
    return shown


#: one of every event, with the shape of its stored data
EXAMPLES: list[tuple[Event, str, int | None, int | None, dict[str, Any]]] = [
    (
        answered(),
        "invoice.payment_declined",
        7,
        11,
        {
            "invoice": {
                "id": 7,
                "customerId": 3,
                "amount": {"value": Decimal("123456789012.40"), "currency": "DKK"},
                "status": "PENDING",
                "dueAt": "2026-02-28T23:00:00Z",
                "attemptCount": 2,
                "lastFailure": "insufficient_funds",
                "nextAttemptAt": "2026-03-01T00:00:30Z",
            },
            "attempt": {
                "number": 2,
                "idempotencyKey": "inst:7:2",
                "outcome": "insufficient_funds",
                "chargeId": None,
                "reason": "insufficient_funds",
                "declineCode": None,
            },
            "runId": 11,
        },
    ),
    (
        SentToReview(
            invoice=invoice(InvoiceStatus.REVIEW, last_failure=FailureReason.UNKNOWN_OUTCOME),
            run_id=None,
            attempt=1,
            idempotency_key="inst:7:1",
            reason="unknown_outcome",
        ),
        "invoice.review",
        7,
        None,
        {
            "invoice": invoice_shown("REVIEW", lastFailure="unknown_outcome"),
            "attempt": {
                "number": 1,
                "idempotencyKey": "inst:7:1",
                "outcome": None,
                "chargeId": None,
                "reason": "unknown_outcome",
                "declineCode": None,
            },
            "runId": None,
        },
    ),
    (
        ActionTaken(
            invoice=invoice(InvoiceStatus.PAID),
            action="resolved_charged",
            actor="ops",
            note="seen in the dashboard",
            charge_id="ch_9",
            from_status="REVIEW",
            to_status="PAID",
        ),
        "invoice.resolved",
        7,
        None,
        {
            "invoice": invoice_shown("PAID"),
            "action": {
                "action": "resolved_charged",
                "actor": "ops",
                "note": "seen in the dashboard",
                "chargeId": "ch_9",
                "fromStatus": "REVIEW",
                "toStatus": "PAID",
            },
        },
    ),
    (
        RunOpened(run_id=11, trigger="api", invoices=3),
        "run.opened",
        None,
        11,
        {"runId": 11, "trigger": "api", "invoices": 3},
    ),
    (RunCompleted(run_id=11), "run.completed", None, 11, {"runId": 11}),
    (
        ChargingPaused(reason="provider_unauthorized", detail="401"),
        "charging.paused",
        None,
        None,
        {"reason": "provider_unauthorized", "detail": "401"},
    ),
    (ChargingResumed(), "charging.resumed", None, None, {}),
]


EXAMPLES += [
    (
        answered(
            type=EventType.INVOICE_FAILED,
            status="FAILED",
            outcome="card_declined",
            reason="card_declined",
            decline_code="expired_card",
            next_attempt_at=None,
        ),
        "invoice.failed",
        7,
        11,
        {
            "invoice": {
                "id": 7,
                "customerId": 3,
                "amount": {"value": Decimal("123456789012.40"), "currency": "DKK"},
                "status": "FAILED",
                "dueAt": "2026-02-28T23:00:00Z",
                "attemptCount": 2,
                "lastFailure": "card_declined",
                "nextAttemptAt": None,
            },
            "attempt": {
                "number": 2,
                "idempotencyKey": "inst:7:2",
                "outcome": "card_declined",
                "chargeId": None,
                "reason": "card_declined",
                "declineCode": "expired_card",
            },
            "runId": 11,
        },
    ),
    (
        ChargeRefused(
            type=EventType.INVOICE_FAILED,
            invoice_id=7,
            customer_id=3,
            amount=Money(Decimal("10.5"), Currency.EUR),
            due_at=DUE,
            status="FAILED",
            attempt_count=0,
            reason="payment_method_missing",
            refusal_reason="payment_method_missing",
            detail="customer lacks providerPaymentMethodId",
            run_id=11,
            open_attempt=None,
            idempotency_key=None,
        ),
        "invoice.failed",
        7,
        11,
        {
            "invoice": invoice_shown(
                "FAILED", attemptCount=0, lastFailure="payment_method_missing"
            ),
            "attempt": None,
            "refusal": {
                "reason": "payment_method_missing",
                "detail": "customer lacks providerPaymentMethodId",
            },
            "runId": 11,
        },
    ),
    (
        ChargeRefused(
            type=EventType.INVOICE_REVIEW,
            invoice_id=7,
            customer_id=3,
            amount=Money(Decimal("10.5"), Currency.EUR),
            due_at=DUE,
            status="REVIEW",
            attempt_count=1,
            reason="unknown_outcome",
            refusal_reason="payment_method_missing",
            detail="customer lacks providerCustomerId",
            run_id=11,
            open_attempt=1,
            idempotency_key="inst:7:1",
        ),
        "invoice.review",
        7,
        11,
        {
            "invoice": invoice_shown("REVIEW", lastFailure="unknown_outcome"),
            "attempt": {
                "number": 1,
                "idempotencyKey": "inst:7:1",
                "outcome": None,
                "chargeId": None,
                "reason": "unknown_outcome",
                "declineCode": None,
            },
            "refusal": {
                "reason": "payment_method_missing",
                "detail": "customer lacks providerCustomerId",
            },
            "runId": 11,
        },
    ),
]


@pytest.mark.parametrize(
    ("event", "type_", "invoice_id", "run_id", "data"),
    EXAMPLES,
    ids=[e[1] for e in EXAMPLES],
)
def test_each_event_type_has_its_shape(
    event: Event, type_: str, invoice_id: int | None, run_id: int | None, data: dict[str, Any]
) -> None:
    stored_type, stored_invoice, stored_run, text = row(event)
    assert (stored_type, stored_invoice, stored_run) == (type_, invoice_id, run_id)
    assert loads(text) == data
    assert text == payload(event)


@pytest.mark.parametrize(
    ("event", "_t", "_i", "_r", "data"), EXAMPLES, ids=[e[1] for e in EXAMPLES]
)
def test_payloads_round_trip_through_the_api_codec(
    event: Event, _t: str, _i: int | None, _r: int | None, data: dict[str, Any]
) -> None:
    assert loads(payload(event)) == event.data() == data


def test_amounts_are_exact_numbers_as_the_api_writes_them() -> None:
    text = payload(answered(amount=Money(Decimal("0.10"), Currency.EUR)))
    assert '"amount":{"value":0.10,"currency":"EUR"}' in text  # every digit, as the API
    assert loads(text)["invoice"]["amount"]["value"] == Decimal("0.10")


def test_the_payload_is_compact_and_keeps_foreign_text_as_json() -> None:
    text = payload(answered(charge_id='ch_"ø\\\n', type=EventType.INVOICE_PAID))
    assert " " not in text.replace("ch_", "")  # compact separators
    assert json.loads(text)["attempt"]["chargeId"] == 'ch_"ø\\\n'
    assert "ø" in text  # as the API writes it: not \u-escaped


def test_actions_have_their_types() -> None:
    def of(action: str) -> str:
        event = ActionTaken(
            invoice=invoice(InvoiceStatus.PENDING),
            action=action,
            actor="a",
            note=None,
            charge_id=None,
            from_status="FAILED",
            to_status="PENDING",
        )
        return row(event)[0]

    assert {a: of(a) for a in ACTION_TYPES} == {
        "retried": "invoice.retried",
        "resolved_charged": "invoice.resolved",
        "resolved_not_charged": "invoice.resolved",
        "voided": "invoice.voided",
    }


def test_the_policy_only_chooses_answer_types() -> None:
    assert {rule.event_type for rule in OUTCOME_TABLE.values()} <= ANSWER_TYPES
    assert retention_ending(MOMENT, PolicySettings()).event_type is EventType.INVOICE_REVIEW


def test_every_type_the_events_work_publishes_is_named() -> None:
    assert {t.value for t in EventType} == {
        "invoice.paid",
        "invoice.payment_declined",
        "invoice.failed",
        "invoice.review",
        "invoice.payment_unknown",
        "invoice.rescheduled",
        "invoice.retried",
        "invoice.resolved",
        "invoice.voided",
        "run.opened",
        "run.completed",
        "charging.paused",
        "charging.resumed",
        "subscription.created",
        "subscription.updated",
        "subscription.canceled",
        "subscription.trial_will_end",
        "invoice.created",
    }
