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


#: one of every event, with the shape of its stored data
EXAMPLES: list[tuple[Event, str, int | None, int | None, dict[str, Any]]] = [
    (
        answered(),
        "invoice.payment_declined",
        7,
        11,
        {
            "invoiceId": 7,
            "customerId": 3,
            "amount": {"value": "123456789012.40", "currency": "DKK"},
            "status": "PENDING",
            "outcome": "insufficient_funds",
            "attempt": 2,
            "idempotencyKey": "inst:7:2",
            "chargeId": None,
            "reason": "insufficient_funds",
            "runId": 11,
            "nextAttemptAt": "2026-03-01T00:00:30Z",
        },
    ),
    (
        SentToReview(
            invoice_id=7,
            run_id=None,
            attempt=1,
            idempotency_key="inst:7:1",
            status="REVIEW",
            reason="unknown_outcome",
        ),
        "invoice.review",
        7,
        None,
        {
            "invoiceId": 7,
            "status": "REVIEW",
            "attempt": 1,
            "idempotencyKey": "inst:7:1",
            "reason": "unknown_outcome",
            "runId": None,
        },
    ),
    (
        ActionTaken(
            invoice_id=7,
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
            "invoiceId": 7,
            "action": "resolved_charged",
            "actor": "ops",
            "note": "seen in the dashboard",
            "chargeId": "ch_9",
            "fromStatus": "REVIEW",
            "toStatus": "PAID",
        },
    ),
    (
        RunOpened(run_id=11, trigger="api"),
        "run.opened",
        None,
        11,
        {"runId": 11, "trigger": "api"},
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
    assert json.loads(text) == data
    assert text == payload(event)


@pytest.mark.parametrize(
    ("event", "_t", "_i", "_r", "data"), EXAMPLES, ids=[e[1] for e in EXAMPLES]
)
def test_payloads_round_trip_through_the_api_codec(
    event: Event, _t: str, _i: int | None, _r: int | None, data: dict[str, Any]
) -> None:
    assert loads(payload(event)) == event.data() == data


def test_amounts_are_decimal_strings_never_floats() -> None:
    text = payload(answered(amount=Money(Decimal("0.10"), Currency.EUR)))
    assert '"amount":{"value":"0.10","currency":"EUR"}' in text
    parsed = json.loads(text, parse_float=lambda s: pytest.fail(f"a float in the payload: {s}"))
    assert parsed["amount"]["value"] == "0.10"


def test_the_payload_is_compact_and_keeps_foreign_text_as_json() -> None:
    text = payload(answered(charge_id='ch_"ø\\\n', type=EventType.INVOICE_PAID))
    assert " " not in text.replace("ch_", "")  # compact separators
    assert json.loads(text)["chargeId"] == 'ch_"ø\\\n'
    assert "ø" in text  # as the API writes it: not \u-escaped


def test_actions_have_their_types() -> None:
    def of(action: str) -> str:
        event = ActionTaken(
            invoice_id=1,
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
    }
