"""Property tests of the outcome policy (domain/policy.py): pure, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from antaeus.domain.invoice import TRANSITIONS, InvoiceStatus
from antaeus.domain.policy import (
    OUTCOME_TABLE,
    ChargeOutcome,
    InvoiceProgress,
    PolicySettings,
    RunOutcome,
    backoff,
    decide,
    decided_alike,
    retention_ending,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)

settings_st = st.builds(
    PolicySettings,
    dunning_schedule=st.lists(
        st.integers(1, 30).map(lambda d: timedelta(days=d)), min_size=0, max_size=5
    ).map(tuple),
    unknown_repeat_window=st.integers(1, 3600).map(lambda s: timedelta(seconds=s)),
    key_retention=st.integers(7200, 7 * 86400).map(lambda s: timedelta(seconds=s)),
    retention_margin=st.integers(0, 3600).map(lambda s: timedelta(seconds=s)),
    backoff_base=st.floats(0.01, 5).map(lambda s: timedelta(seconds=s)),
    backoff_max=st.floats(5, 600).map(lambda s: timedelta(seconds=s)),
    reschedule_delay=st.integers(1, 7200).map(lambda s: timedelta(seconds=s)),
    provider_deduplicates=st.booleans(),
)

progress_st = st.builds(
    InvoiceProgress,
    dunning_count=st.integers(0, 6),
    attempt_open_since=st.integers(0, 8 * 86400).map(lambda s: NOW - timedelta(seconds=s)),
    run_unknown_since=st.none() | st.integers(0, 7200).map(lambda s: NOW - timedelta(seconds=s)),
    unknown_repeats=st.integers(0, 40),
)


@given(
    st.sampled_from(list(ChargeOutcome)),
    progress_st,
    progress_st,
    st.integers(0, 3),
    st.integers(0, 3),
    settings_st,
    st.floats(0, 1),
    st.floats(0, 1),
)
def test_a_decision_decided_alike_is_the_same_for_every_invoice_alike(
    outcome: ChargeOutcome,
    one: InvoiceProgress,
    other: InvoiceProgress,
    sends: int,
    other_sends: int,
    settings: PolicySettings,
    jitter: float,
    other_jitter: float,
) -> None:
    """What the worker relies on to decide once per batch (`decided_alike`)."""
    if not decided_alike(outcome, settings):
        return
    alike = InvoiceProgress(
        dunning_count=one.dunning_count,
        attempt_open_since=other.attempt_open_since,
        run_unknown_since=other.run_unknown_since,
        unknown_repeats=other.unknown_repeats,
        earlier_sends=other_sends if (other_sends > 0) == (sends > 0) else sends,
    )
    first = InvoiceProgress(
        one.dunning_count,
        one.attempt_open_since,
        one.run_unknown_since,
        one.unknown_repeats,
        earlier_sends=sends,
    )
    assert decide(outcome, first, NOW, settings, jitter) == decide(
        outcome, alike, NOW, settings, other_jitter
    )


@given(st.sampled_from(list(ChargeOutcome)), progress_st, settings_st, st.floats(0, 1))
def test_every_decision_is_an_allowed_transition_from_processing(
    outcome: ChargeOutcome, progress: InvoiceProgress, settings: PolicySettings, jitter: float
) -> None:
    d = decide(outcome, progress, NOW, settings, jitter)
    assert TRANSITIONS[(InvoiceStatus.PROCESSING, d.rule.event)] is d.status


@given(st.sampled_from(list(ChargeOutcome)), progress_st, settings_st, st.floats(0, 1))
def test_a_pending_invoice_always_says_when_it_is_tried_next(
    outcome: ChargeOutcome, progress: InvoiceProgress, settings: PolicySettings, jitter: float
) -> None:
    d = decide(outcome, progress, NOW, settings, jitter)
    if d.status is InvoiceStatus.PENDING:
        assert d.next_attempt_at is not None
        assert d.next_attempt_at > NOW
        assert d.last_failure is not None
    else:
        assert d.next_attempt_at is None
        assert d.leaves_run


@given(progress_st, settings_st, st.floats(0, 1))
def test_an_unknown_outcome_never_closes_the_attempt_and_never_outlives_the_key(
    progress: InvoiceProgress, settings: PolicySettings, jitter: float
) -> None:
    d = decide(ChargeOutcome.UNKNOWN, progress, NOW, settings, jitter)
    assert not d.closes_attempt  # the next send repeats the same key
    if d.status is InvoiceStatus.PENDING:
        assert d.next_attempt_at is not None
        assert d.next_attempt_at < settings.repeat_deadline(progress.attempt_open_since)
        assert settings.provider_deduplicates
    else:
        assert d.status is InvoiceStatus.REVIEW


@given(progress_st, settings_st, st.floats(0, 1))
def test_repeats_inside_a_run_stay_within_the_repeat_window(
    progress: InvoiceProgress, settings: PolicySettings, jitter: float
) -> None:
    d = decide(ChargeOutcome.UNKNOWN, progress, NOW, settings, jitter)
    if d.status is InvoiceStatus.PENDING and not d.leaves_run:
        since = progress.run_unknown_since or NOW
        assert d.next_attempt_at is not None
        assert d.next_attempt_at - since <= settings.unknown_repeat_window
        assert d.unknown_repeats == progress.unknown_repeats + 1


@given(progress_st, settings_st)
def test_declines_follow_the_dunning_schedule_then_fail(
    progress: InvoiceProgress, settings: PolicySettings
) -> None:
    d = decide(ChargeOutcome.INSUFFICIENT_FUNDS, progress, NOW, settings)
    assert d.closes_attempt  # a dunning retry is a new attempt with a new key
    assert d.dunning_count == progress.dunning_count + 1
    if progress.dunning_count < len(settings.dunning_schedule):
        assert d.status is InvoiceStatus.PENDING
        assert d.next_attempt_at == NOW + settings.dunning_schedule[progress.dunning_count]
        assert d.rule.run_outcome is RunOutcome.RESCHEDULED
    else:
        assert d.status is InvoiceStatus.FAILED
        assert d.rule.run_outcome is RunOutcome.FAILED


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (ChargeOutcome.CHARGED, InvoiceStatus.PAID),
        (ChargeOutcome.CUSTOMER_NOT_FOUND, InvoiceStatus.FAILED),
        (ChargeOutcome.CURRENCY_MISMATCH, InvoiceStatus.FAILED),
        (ChargeOutcome.REJECTED, InvoiceStatus.FAILED),
        (ChargeOutcome.KEY_REUSED, InvoiceStatus.REVIEW),
    ],
)
def test_fixed_outcomes(outcome: ChargeOutcome, status: InvoiceStatus) -> None:
    progress = InvoiceProgress(0, NOW, None, 0)
    d = decide(outcome, progress, NOW, PolicySettings())
    assert d.status is status
    assert d.leaves_run
    assert d.closes_attempt is (outcome is not ChargeOutcome.KEY_REUSED)


def test_the_table_names_every_outcome_and_its_failure_code() -> None:
    assert set(OUTCOME_TABLE) == set(ChargeOutcome)
    for outcome, rule in OUTCOME_TABLE.items():
        if outcome is ChargeOutcome.CHARGED:
            assert rule.reason is None
        else:
            assert rule.reason is not None
            assert rule.reason.value == outcome.value


@given(st.integers(0, 100), st.floats(0, 1))
def test_backoff_grows_and_is_capped(repeats: int, jitter: float) -> None:
    s = PolicySettings()
    wait = backoff(s, repeats, jitter)
    assert s.backoff_base / 2 <= wait <= s.backoff_max
    assert backoff(s, repeats, 1.0) <= backoff(s, repeats + 1, 1.0)


@given(progress_st, settings_st, st.floats(0, 1))
def test_an_attempt_past_the_retention_cut_goes_to_review_and_none_before(
    progress: InvoiceProgress, settings: PolicySettings, jitter: float
) -> None:
    """The scheduler's sweep applies `retention_ending`: the cut is exactly the moment past
    which `decide` would no longer repeat an unknown outcome (its repeat deadline)."""
    rule = retention_ending(NOW, settings)
    assert (rule.status, rule.reason.value, rule.run_outcome) == (
        InvoiceStatus.REVIEW,
        "unknown_outcome",
        RunOutcome.REVIEW,
    )
    assert rule.event_type == "invoice.review"
    past = progress.attempt_open_since <= rule.cut
    assert past == (settings.repeat_deadline(progress.attempt_open_since) <= NOW)
    if past and settings.provider_deduplicates:
        # an unknown answer now would not be repeated either: same rule, same place
        assert decide(ChargeOutcome.UNKNOWN, progress, NOW, settings, jitter).status is (
            InvoiceStatus.REVIEW
        )
