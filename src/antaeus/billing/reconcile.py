"""Reconciliation: settle invoices in REVIEW by asking the provider what their key did.

An invoice is in REVIEW when its open attempt may have charged and Antaeus
cannot know: an unknown outcome it could no longer repeat (the repeat deadline,
or the scheduler's sweep before the provider forgets the key), or a 400 after
an earlier send of unknown outcome. For each such invoice the reconciler asks
`provider.find_charge` (protocol 1.1) about the attempt's idempotency key:

    ChargeFound     -> PAID with the charge id: the action `resolved_charged` by the
                       actor `reconciler` (the same audit row, event, log line and
                       metric as a person's resolve)
    NothingCharged  -> `resolved_not_charged` by `reconciler`: the attempt closes,
                       the invoice is PENDING and due now, and its next charge is a
                       new attempt with a new key; but only once no send of the
                       attempt can still be on its way to the provider (`settle`
                       after the invoice went to REVIEW): until then it is
                       `deferred` and asked again at the next pass
    CannotTell      -> stays in REVIEW for a person

The provider is asked about the references (customer, payment method) the attempt
was sent with, as the attempt recorded them, never the customer's current ones: a
person may have changed them since, and the charge is where the attempt sent it.
An attempt recorded before references were kept is "cannot tell" without asking.

Every answer is recorded on the attempt (`reconciliations`, shown by
`GET /rest/v1/invoices/{id}/attempts`). The provider is called outside any
transaction; the change is then one conditional UPDATE (still REVIEW, still the
same attempt), so two reconcilers, or a person resolving at the same moment,
never both write: the one that comes second records `superseded`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final, Literal

import structlog

from antaeus.clock import Clock
from antaeus.config import Settings
from antaeus.domain.errors import InvoiceNotFoundError
from antaeus.domain.invoice import InvoiceStatus
from antaeus.observability import metrics
from antaeus.payments.provider import (
    CannotTell,
    ChargeFound,
    ChargeLookup,
    LookupResult,
    NothingCharged,
    PaymentProvider,
    valid_charge_id,
)
from antaeus.storage.database import Database
from antaeus.storage.repositories.actions import ActionRepository
from antaeus.storage.repositories.invoices import InvoiceRepository
from antaeus.storage.repositories.reconciliations import (
    RECONCILABLE,
    Candidate,
    ReconciliationRepository,
)

log = structlog.get_logger("antaeus.reconcile")

ACTOR: Final = "reconciler"
PAGE: Final = 200  # candidates read per query
CONCURRENCY: Final = 8  # lookups in flight

Result = Literal["charged", "not_charged", "cannot_tell"]
Outcome = Literal["paid", "pending", "review", "deferred", "superseded"]
OUTCOMES: Final[tuple[Outcome, ...]] = ("paid", "pending", "review", "deferred", "superseded")


class NotReconcilableError(Exception):
    """The invoice is not in REVIEW with an attempt a lookup can settle."""

    def __init__(self, invoice_id: int, status: InvoiceStatus, reason: str | None) -> None:
        why = f"it is {status.value}"
        if status is InvoiceStatus.REVIEW:
            why += f" with {reason or 'no reason'}, which a lookup of its key cannot settle"
        super().__init__(f"invoice {invoice_id} cannot be reconciled: {why}")
        self.invoice_id = invoice_id
        self.status = status


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What reconciling one invoice asked, heard and did."""

    invoice_id: int
    attempt: int
    idempotency_key: str
    result: Result  # what the provider said
    outcome: Outcome  # what it led to
    status: InvoiceStatus  # the invoice's status afterwards (as far as this pass knows)
    charge_id: str | None
    detail: str


@dataclass(slots=True)
class Summary:
    items: list[Reconciled] = field(default_factory=list)

    @property
    def counts(self) -> Counter[str]:
        return Counter(r.outcome for r in self.items)

    @property
    def still_in_review(self) -> int:
        """Invoices asked about that are still in REVIEW (cannot tell, deferred, superseded)."""
        return sum(1 for r in self.items if r.status is InvoiceStatus.REVIEW)


def _result(answer: LookupResult) -> tuple[Result, str | None]:
    if isinstance(answer, ChargeFound):
        return "charged", answer.charge_id
    if isinstance(answer, NothingCharged):
        return "not_charged", None
    return "cannot_tell", None


class Reconciler:
    """Asks the provider about every reconcilable invoice in REVIEW (see the module doc)."""

    def __init__(
        self,
        db: Database,
        provider: PaymentProvider,
        clock: Clock,
        *,
        settle: timedelta = timedelta(seconds=120),
        concurrency: int = CONCURRENCY,
    ) -> None:
        self.db = db
        self.provider = provider
        self.clock = clock
        self.settle = settle
        self.concurrency = concurrency

    @classmethod
    def from_settings(
        cls, db: Database, provider: PaymentProvider, clock: Clock, settings: Settings
    ) -> Reconciler:
        """`settle`: the longest a send can still take (a whole call), plus a lease."""
        settle = timedelta(seconds=settings.PAYMENT_PROVIDER_TIMEOUT + settings.LEASE_SECONDS)
        return cls(db, provider, clock, settle=settle)

    async def reconcile_all(self) -> Summary:
        """One pass over every reconcilable invoice in REVIEW, by id."""
        summary = Summary()
        gate = asyncio.Semaphore(self.concurrency)

        async def one(candidate: Candidate) -> Reconciled:
            async with gate:
                return await self._reconcile(candidate)

        after = 0
        while True:
            async with self.db.read() as conn:
                page = await ReconciliationRepository(conn).candidates(after=after, limit=PAGE)
            if not page:
                break
            summary.items.extend(await asyncio.gather(*(one(c) for c in page)))
            after = page[-1].invoice_id
            if len(page) < PAGE:
                break
        return summary

    async def reconcile_invoice(self, invoice_id: int) -> Reconciled:
        """Reconcile one invoice (InvoiceNotFoundError, NotReconcilableError)."""
        async with self.db.read() as conn:
            candidate = await ReconciliationRepository(conn).candidate(invoice_id)
            invoice = None if candidate else await InvoiceRepository(conn).get(invoice_id)
        if candidate is None:
            if invoice is None:
                raise InvoiceNotFoundError(invoice_id)
            reason = invoice.last_failure.value if invoice.last_failure else None
            raise NotReconcilableError(invoice_id, invoice.status, reason)
        return await self._reconcile(candidate)

    async def _ask(self, candidate: Candidate) -> LookupResult:
        if not candidate.references_recorded:
            # Written before attempts kept their references: the customer's current
            # ones may not be those it was sent with, and a lookup about others could
            # answer "nothing charged" for a charge that was made (then charged twice).
            return CannotTell(
                f"asked nothing: attempt {candidate.attempt} was recorded before attempts "
                "kept the provider references they were sent with, so which provider "
                "customer it charged is not known; a person checks with the provider"
            )
        lookup = ChargeLookup(
            invoice_id=candidate.invoice_id,
            customer_id=candidate.customer_id,
            amount=candidate.amount,
            idempotency_key=candidate.idempotency_key,
            attempt=candidate.attempt,
            attempt_open_since=candidate.attempt_started_at,
            provider_customer_id=candidate.provider_customer_id,
            provider_payment_method_id=candidate.provider_payment_method_id,
        )
        try:
            answer = await self.provider.find_charge(lookup)
        except Exception as exc:  # a provider adapter that raises: it could not tell
            log.exception("reconcile_lookup_failed", invoice_id=candidate.invoice_id)
            return CannotTell(f"the lookup failed: {type(exc).__name__}")
        if isinstance(answer, ChargeFound) and not valid_charge_id(answer.charge_id):
            return CannotTell(f"the provider found a charge without a well-formed id: {answer}")
        if not isinstance(answer, ChargeFound | NothingCharged | CannotTell):
            return CannotTell(f"the provider answered no lookup result: {type(answer).__name__}")
        return answer

    async def _reconcile(self, candidate: Candidate) -> Reconciled:
        answer = await self._ask(candidate)
        result, charge_id = _result(answer)
        detail = answer.detail or result
        now = self.clock.now()
        outcome: Outcome
        status = InvoiceStatus.REVIEW
        async with self.db.write() as conn:
            if result == "cannot_tell":
                outcome = "review"
            elif result == "not_charged" and now < candidate.in_review_since + self.settle:
                outcome = "deferred"
                detail = (
                    f"{detail} (not trusted yet: a send of the attempt may still be on its way "
                    f"until {(candidate.in_review_since + self.settle).isoformat()}; asked again "
                    "at the next pass)"
                )
            else:
                changed = await ActionRepository(conn).resolve(
                    candidate.invoice_id,
                    result == "charged",
                    charge_id,
                    ACTOR,
                    f"reconciled with the provider: {detail}"[:2000],
                    now,
                    attempt=candidate.attempt,
                )
                if changed.ok and changed.status is not None:
                    status = changed.status
                    outcome = "paid" if result == "charged" else "pending"
                else:
                    outcome = "superseded"
                    status = changed.status or InvoiceStatus.REVIEW
            await ReconciliationRepository(conn).record(
                candidate,
                result=result,
                charge_id=charge_id,
                detail=detail,
                outcome=outcome,
                now=now,
            )
        done = Reconciled(
            invoice_id=candidate.invoice_id,
            attempt=candidate.attempt,
            idempotency_key=candidate.idempotency_key,
            result=result,
            outcome=outcome,
            status=status,
            charge_id=charge_id,
            detail=detail,
        )
        _said(done)
        return done


def _said(done: Reconciled) -> None:
    """After the commit: the log line, the metric, and the person's action's line and metric."""
    metrics.RECONCILIATIONS.labels(done.outcome).inc()
    if done.outcome in ("paid", "pending"):
        action = "resolved_charged" if done.outcome == "paid" else "resolved_not_charged"
        metrics.INVOICE_ACTIONS.labels(action).inc()
        log.info(
            "invoice_action",
            invoice_id=done.invoice_id,
            action=action,
            actor=ACTOR,
            from_status=InvoiceStatus.REVIEW.value,
            status=done.status.value,
        )
    fields = {
        "invoice_id": done.invoice_id,
        "attempt": done.attempt,
        "idempotency_key": done.idempotency_key,
        "result": done.result,
        "outcome": done.outcome,
        "status": done.status.value,
        "charge_id": done.charge_id,
        "detail": done.detail,
    }
    if done.outcome == "review":
        log.warning("invoice_reconciled", **fields)
    else:
        log.info("invoice_reconciled", **fields)


__all__ = [
    "ACTOR",
    "OUTCOMES",
    "RECONCILABLE",
    "NotReconcilableError",
    "Reconciled",
    "Reconciler",
    "Summary",
]
