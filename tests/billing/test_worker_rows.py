"""The worker's outcome rows, decided once per batch for answers alike, are what deciding
each answer on its own writes (`Worker._row`, `policy.decided_alike`): pure, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from antaeus.billing.worker import Answer, Worker
from antaeus.clock import SystemClock
from antaeus.domain.events import ChargeAnswered, payload
from antaeus.domain.money import Currency, Money
from antaeus.domain.policy import ChargeOutcome, InvoiceProgress, PolicySettings, decide
from antaeus.simulators.simulated import SimulatedPaymentProvider
from antaeus.storage.repositories.billing import Claimed, OutcomeRow

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
ALIKE = [o for o in ChargeOutcome if o is not ChargeOutcome.UNKNOWN]


def expected(answer: Answer, now: datetime, policy: PolicySettings) -> OutcomeRow:
    """The row as the worker wrote it before it shared decisions (one `decide` each)."""
    item = answer.claimed
    assert answer.outcome is not None
    decision = decide(
        answer.outcome,
        InvoiceProgress(
            item.dunning_count,
            item.attempt_open_since,
            item.run_unknown_since,
            item.unknown_repeats,
            earlier_sends=item.sends - 1,
        ),
        now,
        policy,
    )
    last_failure = decision.last_failure.value if decision.last_failure else None
    event = ChargeAnswered(
        type=decision.rule.event_type,
        invoice_id=item.invoice_id,
        customer_id=item.customer_id,
        amount=item.amount,
        due_at=item.due_at,
        status=decision.status.value,
        outcome=answer.outcome.value,
        attempt=item.attempt,
        idempotency_key=item.idempotency_key,
        charge_id=answer.charge_id,
        reason=last_failure,
        run_id=item.run_id,
        next_attempt_at=decision.next_attempt_at,
        decline_code=answer.decline_code,
    )
    return OutcomeRow(
        invoice_id=item.invoice_id,
        lease_token=item.lease_token,
        run_id=item.run_id,
        attempt=item.attempt,
        status=decision.status.value,
        last_failure=last_failure,
        next_attempt_at=decision.next_attempt_at,
        eligible_at=decision.next_attempt_at or now,
        attempt_open_since=None if decision.closes_attempt else item.attempt_open_since,
        dunning_count=decision.dunning_count,
        unknown_repeats=decision.unknown_repeats,
        run_unknown_since=decision.run_unknown_since,
        attempt_outcome=answer.outcome.value,
        attempt_finished=decision.closes_attempt,
        charge_id=answer.charge_id,
        run_outcome=decision.rule.run_outcome.value if decision.leaves_run else None,
        event_type=decision.rule.event_type,
        event_payload=payload(event),
        decline_code=answer.decline_code,
    )


answers_st = st.lists(
    st.tuples(
        st.sampled_from(ALIKE),
        st.integers(0, 4) | st.just(0),  # dunning count (most often 0: answers alike)
        st.integers(1, 2),  # sends
        st.integers(0, 3),  # unknown repeats
        st.integers(0, 7200),  # seconds since the attempt opened
        st.sampled_from(["12.34", "0.00", "1000000.00"]),
        st.integers(0, 3),  # days before NOW it was due
        st.none() | st.just("expired_card"),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(answers_st, st.sampled_from([PolicySettings(), PolicySettings(dunning_schedule=())]))
def test_rows_decided_once_per_batch_are_rows_decided_each(
    specs: list[Any], policy: PolicySettings
) -> None:
    w = Worker(None, SimulatedPaymentProvider(), SystemClock(), policy)  # type: ignore[arg-type]
    answers = []
    for i, (outcome, dunning, sends, repeats, age, value, due, code) in enumerate(specs):
        claimed = Claimed(
            invoice_id=i + 1,
            customer_id=100 + i,
            amount=Money(Decimal(value), Currency("EUR")),
            run_id=7,
            attempt=1 + dunning,
            idempotency_key=f"inst-{i + 1}-{1 + dunning}",
            attempt_open_since=NOW - timedelta(seconds=age),
            due_at=NOW - timedelta(days=due),
            dunning_count=dunning,
            unknown_repeats=repeats,
            run_unknown_since=None,
            lease_token=3,
            sends=sends,
        )
        charge_id = f"ch_{i}" if outcome is ChargeOutcome.CHARGED else None
        decline = code if outcome is ChargeOutcome.CARD_DECLINED else None
        answers.append(Answer(claimed, outcome, charge_id, decline_code=decline))
    for now in (NOW, NOW + timedelta(seconds=1)):  # a second batch decides afresh
        assert [w._row(a, now) for a in answers] == [expected(a, now, policy) for a in answers]
