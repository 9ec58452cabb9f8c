"""The invoice state machine, checked against an explicit table taken from docs/architecture.md.

The expected table is written out here on purpose: it is never derived from
`TRANSITIONS`, so a change to the code's table that the design does not allow fails.
"""

from __future__ import annotations

import itertools
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from antaeus.domain.invoice import (
    InvalidTransitionError,
    InvoiceEvent,
    InvoiceStatus,
    sources_of,
    transition,
)

S = InvoiceStatus
E = InvoiceEvent

#: (from, event) -> to, as docs/architecture.md describes it. Every pair not listed is refused.
EXPECTED: dict[tuple[InvoiceStatus, InvoiceEvent], InvoiceStatus] = {
    # PENDING waits for its due time, a dunning retry or a repeat of an unknown outcome.
    (S.PENDING, E.CLAIM): S.PROCESSING,  # a worker claims it under a lease
    (S.PENDING, E.RETENTION_EXPIRING): S.REVIEW,  # open unknown attempt outliving its key
    (S.PENDING, E.VOID): S.VOID,  # a person cancels it (no open unknown attempt)
    # PROCESSING: a worker holds it; every outcome of a charge starts here.
    (S.PROCESSING, E.RELEASE): S.PENDING,  # lease expired or given back
    (S.PROCESSING, E.CHARGED): S.PAID,
    (S.PROCESSING, E.DECLINED): S.PENDING,  # insufficient funds, dunning retry remains
    (S.PROCESSING, E.FAILED_DEFINITELY): S.FAILED,  # not found, mismatch, 400, dunning over
    (S.PROCESSING, E.OUTCOME_UNKNOWN): S.PENDING,  # rescheduled with the same open attempt
    (S.PROCESSING, E.NEEDS_REVIEW): S.REVIEW,  # key reused, or unknown that cannot repeat
    # FAILED: a person acts, retry or void.
    (S.FAILED, E.RETRY): S.PENDING,
    (S.FAILED, E.VOID): S.VOID,
    # REVIEW: a person resolves it, charged or not charged.
    (S.REVIEW, E.RESOLVE_CHARGED): S.PAID,
    (S.REVIEW, E.RESOLVE_NOT_CHARGED): S.PENDING,
    # PAID and VOID are terminal: nothing leaves them.
}

TERMINAL = frozenset({S.PAID, S.VOID})

ALL_PAIRS = list(itertools.product(InvoiceStatus, InvoiceEvent))


def _pair_id(pair: tuple[InvoiceStatus, InvoiceEvent]) -> str:
    status, event = pair
    return f"{status.value}-{event.value}"


def test_expected_table_only_names_real_statuses_and_events() -> None:
    # Guards the table above against typos turning into silently refused pairs.
    assert len(ALL_PAIRS) == len(InvoiceStatus) * len(InvoiceEvent) == 6 * 12
    assert set(EXPECTED) <= set(ALL_PAIRS)
    assert not any(status in TERMINAL for status, _ in EXPECTED)


@pytest.mark.parametrize("pair", ALL_PAIRS, ids=[_pair_id(p) for p in ALL_PAIRS])
def test_transition(pair: tuple[InvoiceStatus, InvoiceEvent]) -> None:
    status, event = pair
    if pair in EXPECTED:
        assert transition(status, event) is EXPECTED[pair]
    else:
        with pytest.raises(InvalidTransitionError) as excinfo:
            transition(status, event)
        assert excinfo.value.status is status
        assert excinfo.value.event is event
        assert str(excinfo.value) == (f"an invoice in {status.value} cannot take {event.value}")


@pytest.mark.parametrize("event", list(InvoiceEvent), ids=[e.value for e in InvoiceEvent])
def test_sources_of_agrees_with_the_table(event: InvoiceEvent) -> None:
    expected = frozenset(status for (status, ev) in EXPECTED if ev is event)
    assert sources_of(event) == expected


# --- docs/architecture.md, spelled out ---------------------------------------------------------


def test_void_only_from_failed_or_pending() -> None:
    assert sources_of(E.VOID) == {S.FAILED, S.PENDING}
    for status in (S.PROCESSING, S.REVIEW, S.PAID, S.VOID):
        with pytest.raises(InvalidTransitionError):
            transition(status, E.VOID)


@pytest.mark.parametrize("terminal", sorted(TERMINAL), ids=str)
def test_paid_and_void_are_terminal(terminal: InvoiceStatus) -> None:
    for event in InvoiceEvent:
        with pytest.raises(InvalidTransitionError):
            transition(terminal, event)
    assert not any(terminal in sources_of(event) for event in InvoiceEvent)


def test_review_resolves_to_paid_or_pending_only() -> None:
    allowed = {e: to for e in InvoiceEvent if (to := _allowed(S.REVIEW, e)) is not None}
    assert allowed == {E.RESOLVE_CHARGED: S.PAID, E.RESOLVE_NOT_CHARGED: S.PENDING}


def test_only_a_claimed_invoice_is_charged() -> None:
    assert sources_of(E.CHARGED) == {S.PROCESSING}
    assert {s for s in InvoiceStatus for e in InvoiceEvent if _allowed(s, e) is S.PAID} == {
        S.PROCESSING,
        S.REVIEW,
    }


def test_failed_is_left_only_by_a_person() -> None:
    assert {e for e in InvoiceEvent if _allowed(S.FAILED, e) is not None} == {E.RETRY, E.VOID}


def _allowed(status: InvoiceStatus, event: InvoiceEvent) -> InvoiceStatus | None:
    try:
        return transition(status, event)
    except InvalidTransitionError:
        return None


def _reachable(start: InvoiceStatus) -> set[InvoiceStatus]:
    seen = {start}
    queue = deque([start])
    while queue:
        status = queue.popleft()
        for event in InvoiceEvent:
            target = _allowed(status, event)
            if target is not None and target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


def test_every_status_is_reachable_from_pending() -> None:
    assert _reachable(S.PENDING) == set(InvoiceStatus)


@pytest.mark.parametrize("status", sorted(set(InvoiceStatus) - TERMINAL), ids=str)
def test_no_invoice_is_stuck(status: InvoiceStatus) -> None:
    # Invariant 2: every non-terminal invoice can still end PAID (and so is never lost).
    assert S.PAID in _reachable(status)


# --- random walks -------------------------------------------------------------------


@given(st.lists(st.sampled_from(list(InvoiceEvent)), max_size=60))
def test_random_event_sequences_follow_the_table_and_never_leave_terminal(
    events: list[InvoiceEvent],
) -> None:
    status = S.PENDING
    terminal_reached: InvoiceStatus | None = None
    for event in events:
        expected = EXPECTED.get((status, event))
        if expected is None:
            with pytest.raises(InvalidTransitionError):
                transition(status, event)
        else:
            assert status in sources_of(event)
            status = transition(status, event)
            assert status is expected
        if terminal_reached is not None:
            assert status is terminal_reached
        elif status in TERMINAL:
            terminal_reached = status


@given(st.sampled_from(list(InvoiceStatus)), st.sampled_from(list(InvoiceEvent)))
def test_sources_of_agrees_with_transition(status: InvoiceStatus, event: InvoiceEvent) -> None:
    assert (status in sources_of(event)) is (_allowed(status, event) is not None)
    assert (status in sources_of(event)) is ((status, event) in EXPECTED)


@given(st.data())
def test_random_allowed_walks_end_only_in_terminal_states(data: st.DataObject) -> None:
    # A walk that always takes an event the table allows: it stops only where no event
    # is allowed, and that is exactly PAID or VOID.
    status = S.PENDING
    for _ in range(40):
        choices = sorted(event for (src, event) in EXPECTED if src is status)
        if not choices:
            break
        event = data.draw(st.sampled_from(choices))
        target = transition(status, event)
        assert target is EXPECTED[(status, event)]
        status = target
    if not [event for (src, event) in EXPECTED if src is status]:
        assert status in TERMINAL
        for event in InvoiceEvent:
            with pytest.raises(InvalidTransitionError):
                transition(status, event)
