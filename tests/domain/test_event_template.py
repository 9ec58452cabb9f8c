"""The worker's `invoice.*` payload from a template is the general encoder's text, byte for byte."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from antaeus.domain.events import ANSWER_TYPES, ChargeAnswered, answered_payload, payload
from antaeus.domain.money import Currency, Money
from antaeus.exactjson import dumps

texts = st.text()  # quotes, backslashes, control characters, non-ASCII, astral planes
maybe_texts = st.none() | texts
ids = st.integers(min_value=-(2**70), max_value=2**70)
moments = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone.min]),
)
values = st.decimals(allow_nan=False, allow_infinity=False, places=None) | st.sampled_from(
    [Decimal("0"), Decimal("-0.00"), Decimal("1E+2"), Decimal("123.40"), Decimal("1e-7")]
)


@settings(max_examples=500, deadline=None)
@given(
    type_=st.sampled_from(sorted(ANSWER_TYPES)),
    invoice_id=ids,
    customer_id=ids,
    value=values,
    currency=st.sampled_from(["EUR", "USD", "JPY", "BHD"]),
    due_at=moments,
    status=texts,
    outcome=texts,
    attempt=ids,
    key=texts,
    charge_id=maybe_texts,
    reason=maybe_texts,
    run_id=ids,
    next_at=st.none() | moments,
    decline=maybe_texts,
)
def test_the_template_writes_what_the_encoder_writes(
    type_, invoice_id, customer_id, value, currency, due_at, status, outcome, attempt, key,
    charge_id, reason, run_id, next_at, decline,
):  # fmt: skip
    money = Money.__new__(Money)  # any Decimal, not only a currency's precision
    object.__setattr__(money, "value", value)
    object.__setattr__(money, "currency", Currency(currency))
    event = ChargeAnswered(
        type=type_,
        invoice_id=invoice_id,
        customer_id=customer_id,
        amount=money,
        due_at=due_at,
        status=status,
        outcome=outcome,
        attempt=attempt,
        idempotency_key=key,
        charge_id=charge_id,
        reason=reason,
        run_id=run_id,
        next_attempt_at=next_at,
        decline_code=decline,
    )
    general = dumps(event.data())
    assert answered_payload(event) == general
    assert payload(event) == general


def test_an_unusual_field_falls_back_to_the_general_encoder() -> None:
    event = ChargeAnswered(
        type=sorted(ANSWER_TYPES)[0],
        invoice_id=True,  # a bool is an int to Python, not to JSON
        customer_id=1,
        amount=Money(Decimal("1.00"), Currency("EUR")),
        due_at=datetime(2026, 1, 1, tzinfo=UTC),
        status="PAID",
        outcome="charged",
        attempt=1,
        idempotency_key="k",
        charge_id="ch_1",
        reason=None,
        run_id=1,
        next_attempt_at=None,
    )
    assert answered_payload(event) is None
    assert payload(event) == dumps(event.data())
    assert payload(event).startswith('{"invoice":{"id":true,')
