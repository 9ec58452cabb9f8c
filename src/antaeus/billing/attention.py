"""Outcomes that need a person: one log event and one metric, wherever they happen.

An invoice needs a person when it becomes FAILED (the cause must be fixed, then
it is retried or voided) or REVIEW (whether the provider charged it must be
checked, by its idempotency key, then it is resolved). The worker's `record` and
the scheduler's retention sweep both call `announce`, after their transaction
committed, so every warning names a change that is in the database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import structlog

from antaeus.domain.invoice import InvoiceStatus
from antaeus.observability import metrics

log = structlog.get_logger("antaeus.attention")

EVENT: Final = "invoice_needs_person"

#: the statuses that wait for a person, and what the person does
WAITING: Final[dict[str, str]] = {
    InvoiceStatus.FAILED.value: "fix the cause, then POST /rest/v1/invoices/{id}/retry, or void it",
    InvoiceStatus.REVIEW.value: "reconciliation asks the provider about the idempotency key "
    "(every ANTAEUS_RECONCILE_INTERVAL, or `antaeus reconcile --invoice {id}`); if it cannot "
    "tell, ask the provider yourself, then POST /rest/v1/invoices/{id}/resolve",
}


@dataclass(frozen=True, slots=True)
class NeedsPerson:
    invoice_id: int
    attempt: int
    idempotency_key: str
    status: str  # FAILED or REVIEW
    reason: str  # the invoice's last failure, e.g. customer_not_found, unknown_outcome


def announce(items: Iterable[NeedsPerson], **context: str) -> None:
    """Log one warning and count once per invoice that now waits for a person."""
    for item in items:
        metrics.INVOICES_NEED_PERSON.labels(item.reason).inc()
        log.warning(
            EVENT,
            invoice_id=item.invoice_id,
            attempt=item.attempt,
            idempotency_key=item.idempotency_key,
            status=item.status,
            reason=item.reason,
            action=WAITING.get(item.status, "").replace("{id}", str(item.invoice_id)),
            **context,
        )
