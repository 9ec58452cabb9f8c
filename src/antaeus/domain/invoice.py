"""Invoices and their state machine.

Every status change Antaeus makes is an `InvoiceEvent` applied to the current
`InvoiceStatus` through the one `TRANSITIONS` table below; anything not in the
table is refused. The storage layer turns each allowed transition into one
conditional UPDATE (`WHERE status = <from>`) and checks its row count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from antaeus.domain.money import Money


class InvoiceStatus(StrEnum):
    PENDING = "PENDING"  # not paid; waits for its due time or a retry
    PROCESSING = "PROCESSING"  # claimed by a worker under a short lease
    PAID = "PAID"  # the provider charged it
    FAILED = "FAILED"  # no automatic retry; nothing moved; a person acts
    REVIEW = "REVIEW"  # money may have moved; a person checks with the provider
    VOID = "VOID"  # cancelled by a person; never charged again


class FailureReason(StrEnum):
    INSUFFICIENT_FUNDS = "insufficient_funds"
    CUSTOMER_NOT_FOUND = "customer_not_found"
    CURRENCY_MISMATCH = "currency_mismatch"
    UNKNOWN_OUTCOME = "unknown_outcome"
    PROVIDER_REJECTED = "provider_rejected"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    CARD_DECLINED = "card_declined"  # declined for another reason than funds (decline code kept)
    AUTHENTICATION_REQUIRED = "authentication_required"  # the customer must act
    # refused by the provider before any call (`provider.refusal`): no attempt consumed
    PAYMENT_METHOD_MISSING = "payment_method_missing"
    AMOUNT_NOT_CHARGEABLE = "amount_not_chargeable"


class InvoiceEvent(StrEnum):
    CLAIM = "claim"  # a worker takes a due invoice under a lease
    RELEASE = "release"  # lease expired or given back; no outcome learned
    CHARGED = "charged"  # the provider charged it
    DECLINED = "declined"  # insufficient funds, a dunning retry remains
    FAILED_DEFINITELY = "failed_definitely"  # not found, mismatch, rejected, declined, refused…
    OUTCOME_UNKNOWN = "outcome_unknown"  # rescheduled with the same open attempt
    NEEDS_REVIEW = "needs_review"  # key reused, or unknown outcome that cannot be repeated
    RETENTION_EXPIRING = "retention_expiring"  # open unknown attempt about to outlive the key
    RETRY = "retry"  # a person retries a FAILED invoice
    RESOLVE_CHARGED = "resolve_charged"  # a person confirms the provider charged it
    RESOLVE_NOT_CHARGED = "resolve_not_charged"  # a person confirms nothing moved
    VOID = "void"  # a person cancels it


S = InvoiceStatus
E = InvoiceEvent

#: (from status, event) -> to status. Anything absent is refused.
TRANSITIONS: Final[dict[tuple[InvoiceStatus, InvoiceEvent], InvoiceStatus]] = {
    (S.PENDING, E.CLAIM): S.PROCESSING,
    (S.PENDING, E.RETENTION_EXPIRING): S.REVIEW,
    (S.PENDING, E.VOID): S.VOID,  # guarded: no open attempt of unknown outcome
    (S.PROCESSING, E.RELEASE): S.PENDING,
    (S.PROCESSING, E.CHARGED): S.PAID,
    (S.PROCESSING, E.DECLINED): S.PENDING,
    (S.PROCESSING, E.FAILED_DEFINITELY): S.FAILED,
    (S.PROCESSING, E.OUTCOME_UNKNOWN): S.PENDING,
    (S.PROCESSING, E.NEEDS_REVIEW): S.REVIEW,
    (S.FAILED, E.RETRY): S.PENDING,
    (S.FAILED, E.VOID): S.VOID,
    (S.REVIEW, E.RESOLVE_CHARGED): S.PAID,
    (S.REVIEW, E.RESOLVE_NOT_CHARGED): S.PENDING,
}


class InvalidTransitionError(Exception):
    def __init__(self, status: InvoiceStatus, event: InvoiceEvent) -> None:
        super().__init__(f"an invoice in {status.value} cannot take {event.value}")
        self.status = status
        self.event = event


def transition(status: InvoiceStatus, event: InvoiceEvent) -> InvoiceStatus:
    """The status `event` leads to from `status`, or `InvalidTransitionError`."""
    try:
        return TRANSITIONS[(status, event)]
    except KeyError:
        raise InvalidTransitionError(status, event) from None


def sources_of(event: InvoiceEvent) -> frozenset[InvoiceStatus]:
    """Every status from which `event` is allowed (for conditional UPDATEs)."""
    return frozenset(src for (src, ev) in TRANSITIONS if ev is event)


@dataclass(frozen=True, slots=True)
class Invoice:
    id: int
    customer_id: int
    amount: Money
    status: InvoiceStatus
    due_at: datetime
    attempt_count: int = 0
    last_failure: FailureReason | None = None
    next_attempt_at: datetime | None = None


def attempt_key(installation_id: str, invoice_id: int, attempt: int) -> str:
    """The idempotency key of an invoice's attempt: `<installation>:<invoice>:<attempt>`."""
    return f"{installation_id}:{invoice_id}:{attempt}"
