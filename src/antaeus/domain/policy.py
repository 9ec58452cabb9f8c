"""The outcome policy: what each answer of the payment provider leads to.

`OUTCOME_TABLE` is the one table (docs/architecture.md, "What each outcome leads to");
`decide` applies it to one invoice, filling in the parts that depend on the
invoice's history: how many dunning retries remain, and how long an unknown
outcome may still be repeated with its key before it needs a person.

Rate limits (429), a key still in use (409) and a refused credential (401) are
not outcomes: nothing happened, and the worker waits or pauses without
touching the invoice's attempt (see `billing/worker.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from antaeus.domain.events import EventType
from antaeus.domain.invoice import FailureReason, InvoiceEvent, InvoiceStatus, transition


class ChargeOutcome(StrEnum):
    CHARGED = "charged"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    CUSTOMER_NOT_FOUND = "customer_not_found"
    CURRENCY_MISMATCH = "currency_mismatch"
    UNKNOWN = "unknown_outcome"
    REJECTED = "provider_rejected"
    KEY_REUSED = "idempotency_key_reused"
    CARD_DECLINED = "card_declined"  # a definite decline other than funds (decline code kept)
    AUTHENTICATION_REQUIRED = "authentication_required"  # the customer must act


class RunOutcome(StrEnum):
    PAID = "paid"
    FAILED = "failed"
    REVIEW = "review"
    RESCHEDULED = "rescheduled"
    VOID = "void"


@dataclass(frozen=True, slots=True)
class Rule:
    event: InvoiceEvent
    reason: FailureReason | None
    closes_attempt: bool  # a definite outcome: the next attempt gets a new key
    run_outcome: RunOutcome
    event_type: EventType


#: The fixed part of the policy. INSUFFICIENT_FUNDS and UNKNOWN have variants
#: chosen by `decide` (dunning exhausted; repeat, reschedule or review).
OUTCOME_TABLE: Final[dict[ChargeOutcome, Rule]] = {
    ChargeOutcome.CHARGED: Rule(
        InvoiceEvent.CHARGED, None, True, RunOutcome.PAID, EventType.INVOICE_PAID
    ),
    ChargeOutcome.INSUFFICIENT_FUNDS: Rule(
        InvoiceEvent.DECLINED,
        FailureReason.INSUFFICIENT_FUNDS,
        True,
        RunOutcome.RESCHEDULED,
        EventType.INVOICE_PAYMENT_DECLINED,
    ),
    ChargeOutcome.CUSTOMER_NOT_FOUND: Rule(
        InvoiceEvent.FAILED_DEFINITELY,
        FailureReason.CUSTOMER_NOT_FOUND,
        True,
        RunOutcome.FAILED,
        EventType.INVOICE_FAILED,
    ),
    ChargeOutcome.CURRENCY_MISMATCH: Rule(
        InvoiceEvent.FAILED_DEFINITELY,
        FailureReason.CURRENCY_MISMATCH,
        True,
        RunOutcome.FAILED,
        EventType.INVOICE_FAILED,
    ),
    ChargeOutcome.REJECTED: Rule(
        InvoiceEvent.FAILED_DEFINITELY,
        FailureReason.PROVIDER_REJECTED,
        True,
        RunOutcome.FAILED,
        EventType.INVOICE_FAILED,
    ),
    ChargeOutcome.CARD_DECLINED: Rule(
        InvoiceEvent.FAILED_DEFINITELY,
        FailureReason.CARD_DECLINED,
        True,  # definite: a retry is a new attempt with a new key
        RunOutcome.FAILED,
        EventType.INVOICE_FAILED,
    ),
    ChargeOutcome.AUTHENTICATION_REQUIRED: Rule(
        InvoiceEvent.FAILED_DEFINITELY,
        FailureReason.AUTHENTICATION_REQUIRED,
        True,  # definite: once the customer acted, a retry is a new attempt
        RunOutcome.FAILED,
        EventType.INVOICE_FAILED,
    ),
    ChargeOutcome.KEY_REUSED: Rule(
        InvoiceEvent.NEEDS_REVIEW,
        FailureReason.IDEMPOTENCY_KEY_REUSED,
        False,  # the earlier use of the key may have charged: a person resolves it
        RunOutcome.REVIEW,
        EventType.INVOICE_REVIEW,
    ),
    ChargeOutcome.UNKNOWN: Rule(
        InvoiceEvent.OUTCOME_UNKNOWN,
        FailureReason.UNKNOWN_OUTCOME,
        False,  # repeated with the same key
        RunOutcome.RESCHEDULED,
        EventType.INVOICE_PAYMENT_UNKNOWN,
    ),
}

_DUNNING_EXHAUSTED: Final = Rule(
    InvoiceEvent.FAILED_DEFINITELY,
    FailureReason.INSUFFICIENT_FUNDS,
    True,
    RunOutcome.FAILED,
    EventType.INVOICE_FAILED,
)
#: A 400 speaks only for its own request and is not remembered by the provider:
#: when an earlier send of the same attempt may have reached it (it ended
#: unknown, or its worker died mid-call), that send may have charged. Closing
#: the attempt would let a retry charge again under a new key.
_REJECTED_AFTER_EARLIER_SEND: Final = Rule(
    InvoiceEvent.NEEDS_REVIEW,
    FailureReason.PROVIDER_REJECTED,
    False,  # the earlier send's key stays the attempt's: a person resolves it
    RunOutcome.REVIEW,
    EventType.INVOICE_REVIEW,
)
#: unknown answers for longer than the repeat window: out of the run, the same key later
_UNKNOWN_RESCHEDULED: Final = Rule(
    InvoiceEvent.OUTCOME_UNKNOWN,
    FailureReason.UNKNOWN_OUTCOME,
    False,  # repeated with the same key, later
    RunOutcome.RESCHEDULED,
    EventType.INVOICE_RESCHEDULED,
)
_UNKNOWN_TO_REVIEW: Final = Rule(
    InvoiceEvent.NEEDS_REVIEW,
    FailureReason.UNKNOWN_OUTCOME,
    False,
    RunOutcome.REVIEW,
    EventType.INVOICE_REVIEW,
)


#: What a provider may refuse before any call (`PaymentProvider.refusal`).
REFUSAL_REASONS: Final = frozenset(
    {FailureReason.PAYMENT_METHOD_MISSING, FailureReason.AMOUNT_NOT_CHARGEABLE}
)


@dataclass(frozen=True, slots=True)
class RefusalDecision:
    """What becomes of an invoice its provider refused before any call."""

    status: InvoiceStatus
    reason: FailureReason  # the invoice's last failure
    run_outcome: RunOutcome
    event_type: EventType
    takes_back_attempt: bool  # True: the attempt claimed ahead is removed (no key consumed)


def decide_refusal(reason: str, earlier_sends: int) -> RefusalDecision:
    """The invoice's next state (from PROCESSING) when the provider refused to be asked.

    No call was made, so the send the claim counted ahead is always taken back.
    A new attempt (no earlier send) is removed, its number and key given back, and
    the invoice FAILS with the refusal's reason: a person fixes the customer and
    retries, and that retry charges under the very key that was never used.

    An open attempt with an earlier send (an unknown outcome being repeated) is
    never failed: that send may have charged, and a retry of a FAILED invoice
    would charge again under a new key. It cannot be repeated either (the
    provider refuses the request now), so it goes to REVIEW `unknown_outcome`
    with its key kept, where reconciliation or a person settles it.
    A reason outside `REFUSAL_REASONS` (a provider's bug) counts as
    `provider_rejected`.
    """
    if earlier_sends > 0:
        return RefusalDecision(
            status=transition(InvoiceStatus.PROCESSING, _UNKNOWN_TO_REVIEW.event),
            reason=FailureReason.UNKNOWN_OUTCOME,
            run_outcome=RunOutcome.REVIEW,
            event_type=EventType.INVOICE_REVIEW,
            takes_back_attempt=False,
        )
    known = {r.value: r for r in REFUSAL_REASONS}
    return RefusalDecision(
        status=transition(InvoiceStatus.PROCESSING, InvoiceEvent.FAILED_DEFINITELY),
        reason=known.get(reason, FailureReason.PROVIDER_REJECTED),
        run_outcome=RunOutcome.FAILED,
        event_type=EventType.INVOICE_FAILED,
        takes_back_attempt=True,
    )


@dataclass(frozen=True, slots=True)
class PolicySettings:
    dunning_schedule: tuple[timedelta, ...] = (
        timedelta(days=1),
        timedelta(days=3),
        timedelta(days=7),
    )
    unknown_repeat_window: timedelta = timedelta(seconds=300)
    key_retention: timedelta = timedelta(hours=24)
    retention_margin: timedelta = timedelta(hours=1)
    backoff_base: timedelta = timedelta(seconds=0.5)
    backoff_max: timedelta = timedelta(seconds=30)
    reschedule_delay: timedelta = timedelta(minutes=15)
    provider_deduplicates: bool = True

    def repeat_deadline(self, attempt_open_since: datetime) -> datetime:
        """After this moment an open attempt is never sent again: it goes to REVIEW."""
        return attempt_open_since + self.key_retention - self.retention_margin

    def repeat_cut(self, now: datetime) -> datetime:
        """Open attempts first sent at or before this moment are past their deadline now."""
        return now - (self.key_retention - self.retention_margin)


@dataclass(frozen=True, slots=True)
class InvoiceProgress:
    """What the policy needs to know of an invoice that just got an answer."""

    dunning_count: int  # declines so far in this dunning cycle
    attempt_open_since: datetime  # first send of the current attempt
    run_unknown_since: datetime | None  # first unknown answer inside the current run
    unknown_repeats: int  # repeats of the current attempt inside the current run
    earlier_sends: int = 0  # sends of the current attempt before this one (0: first send)


@dataclass(frozen=True, slots=True)
class Decision:
    status: InvoiceStatus
    rule: Rule
    next_attempt_at: datetime | None
    leaves_run: bool  # False: repeated inside the run at next_attempt_at
    dunning_count: int
    run_unknown_since: datetime | None
    unknown_repeats: int

    @property
    def last_failure(self) -> FailureReason | None:
        return self.rule.reason

    @property
    def closes_attempt(self) -> bool:
        return self.rule.closes_attempt


@dataclass(frozen=True, slots=True)
class RetentionDecision:
    """What becomes of every open attempt first sent at or before `cut`."""

    cut: datetime
    status: InvoiceStatus
    reason: FailureReason
    run_outcome: RunOutcome
    event_type: EventType


def retention_ending(now: datetime, settings: PolicySettings) -> RetentionDecision:
    """The rule for open attempts whose key the provider may soon forget (the scheduler's
    sweep applies it): a repeat could then charge again, so a person must look."""
    return RetentionDecision(
        cut=settings.repeat_cut(now),
        status=transition(InvoiceStatus.PENDING, InvoiceEvent.RETENTION_EXPIRING),
        reason=FailureReason.UNKNOWN_OUTCOME,
        run_outcome=_UNKNOWN_TO_REVIEW.run_outcome,
        event_type=_UNKNOWN_TO_REVIEW.event_type,
    )


def backoff(settings: PolicySettings, repeats: int, jitter: float) -> timedelta:
    """Exponential backoff with jitter: base * 2^repeats, capped, scaled into [50%, 100%]."""
    raw = settings.backoff_base * (2 ** min(repeats, 30))
    capped: timedelta = min(raw, settings.backoff_max)
    scaled: timedelta = capped * (0.5 + 0.5 * min(max(jitter, 0.0), 1.0))
    return scaled


def decide(
    outcome: ChargeOutcome,
    progress: InvoiceProgress,
    now: datetime,
    settings: PolicySettings,
    jitter: float = 1.0,
) -> Decision:
    """The invoice's next state after `outcome` (from PROCESSING)."""
    rule = OUTCOME_TABLE[outcome]
    if outcome is ChargeOutcome.INSUFFICIENT_FUNDS:
        step = progress.dunning_count
        if step >= len(settings.dunning_schedule):
            return _final(_DUNNING_EXHAUSTED, step + 1)
        return Decision(
            status=transition(InvoiceStatus.PROCESSING, rule.event),
            rule=rule,
            next_attempt_at=now + settings.dunning_schedule[step],
            leaves_run=True,
            dunning_count=step + 1,
            run_unknown_since=None,
            unknown_repeats=0,
        )
    if outcome is ChargeOutcome.UNKNOWN:
        return _unknown(progress, now, settings, jitter)
    if outcome is ChargeOutcome.REJECTED and progress.earlier_sends > 0:
        return _final(_REJECTED_AFTER_EARLIER_SEND, progress.dunning_count)
    return _final(rule, progress.dunning_count)


def decided_alike(outcome: ChargeOutcome, settings: PolicySettings) -> bool:
    """Whether `decide(outcome, progress, now, settings, jitter)` depends on nothing of
    `progress` but its `dunning_count` and whether `earlier_sends > 0`, and not on the
    jitter: so one decision serves every invoice of a batch (one `now`) alike in those.

    True of every outcome but an unknown one that may be repeated: its wait has
    jitter, and how long it may still be repeated depends on the attempt's history.
    """
    return outcome is not ChargeOutcome.UNKNOWN or not settings.provider_deduplicates


def _final(rule: Rule, dunning_count: int) -> Decision:
    return Decision(
        status=transition(InvoiceStatus.PROCESSING, rule.event),
        rule=rule,
        next_attempt_at=None,
        leaves_run=True,
        dunning_count=dunning_count,
        run_unknown_since=None,
        unknown_repeats=0,
    )


def _unknown(
    progress: InvoiceProgress, now: datetime, settings: PolicySettings, jitter: float
) -> Decision:
    if not settings.provider_deduplicates:
        return _final(_UNKNOWN_TO_REVIEW, progress.dunning_count)
    deadline = settings.repeat_deadline(progress.attempt_open_since)
    since = progress.run_unknown_since or now
    wait = backoff(settings, progress.unknown_repeats, jitter)
    rule = OUTCOME_TABLE[ChargeOutcome.UNKNOWN]
    status = transition(InvoiceStatus.PROCESSING, rule.event)
    if now + wait >= deadline:
        return _final(_UNKNOWN_TO_REVIEW, progress.dunning_count)
    if (now + wait) - since <= settings.unknown_repeat_window:
        return Decision(
            status=status,
            rule=rule,
            next_attempt_at=now + wait,
            leaves_run=False,
            dunning_count=progress.dunning_count,
            run_unknown_since=since,
            unknown_repeats=progress.unknown_repeats + 1,
        )
    later = now + settings.reschedule_delay
    if later >= deadline:
        later = now + wait  # still before the deadline (checked above)
    return Decision(
        status=status,
        rule=_UNKNOWN_RESCHEDULED,
        next_attempt_at=later,
        leaves_run=True,
        dunning_count=progress.dunning_count,
        run_unknown_since=None,
        unknown_repeats=0,
    )
