"""Reconciliation's SQL: the attempts in REVIEW to ask the provider about, and its answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic

from sqlalchemy import and_, insert, select, update

from antaeus.domain.invoice import FailureReason, InvoiceStatus
from antaeus.domain.money import Currency, Money
from antaeus.storage.database import Conn, WriteConnection
from antaeus.storage.tables import charge_attempts, invoices, reconciliations

#: REVIEW invoices whose open attempt may have charged and that a lookup of its key can
#: settle: an unknown outcome (repeat deadline, or the key-retention sweep), or a 400 after
#: an earlier send of unknown outcome. `idempotency_key_reused` is not among them: the key
#: was used with another request, so what was charged under it is not this invoice's.
RECONCILABLE: tuple[FailureReason, ...] = (
    FailureReason.UNKNOWN_OUTCOME,
    FailureReason.PROVIDER_REJECTED,
)
#: The longest `detail` kept (a provider's answer is quoted only in part).
MAX_DETAIL = 2000


@dataclass(frozen=True, slots=True)
class Candidate:
    """An invoice in REVIEW and its latest attempt, as reconciliation asks about it."""

    invoice_id: int
    customer_id: int
    amount: Money
    attempt: int
    idempotency_key: str
    attempt_started_at: datetime  # the attempt was written ahead of its first send
    in_review_since: datetime  # the invoice's last change: when it went to REVIEW
    last_failure: str | None
    # The references at the provider the attempt was sent with (Stripe's cus_…, pm_…),
    # as it recorded them: never the customer's current ones, which may have changed.
    provider_customer_id: str | None = None
    provider_payment_method_id: str | None = None
    references_recorded: bool = True  # False: written before they were kept (unknown)


@dataclass(frozen=True, slots=True)
class ReconciliationRow:
    id: int
    invoice_id: int
    attempt: int
    idempotency_key: str
    result: str
    charge_id: str | None
    detail: str
    outcome: str
    asked_at: datetime
    last_asked_at: datetime
    asks: int


def _candidates_query() -> Any:
    i, a = invoices.c, charge_attempts.c
    return (
        select(
            i.id,
            i.customer_id,
            i.amount_minor,
            i.currency,
            i.attempt_count,
            i.updated_at,
            i.last_failure,
            a.idempotency_key,
            a.started_at,
            a.provider_customer_id,
            a.provider_payment_method_id,
            a.references_recorded,
        )
        .select_from(
            invoices.join(
                charge_attempts,
                and_(a.invoice_id == i.id, a.number == i.attempt_count),
            )
        )
        .where(
            i.status == InvoiceStatus.REVIEW.value,
            i.last_failure.in_([r.value for r in RECONCILABLE]),
        )
    )


def _candidate(r: Any) -> Candidate:
    return Candidate(
        invoice_id=r.id,
        customer_id=r.customer_id,
        amount=Money.from_minor(r.amount_minor, Currency(r.currency)),
        attempt=r.attempt_count,
        idempotency_key=r.idempotency_key,
        attempt_started_at=r.started_at,
        in_review_since=r.updated_at,
        last_failure=r.last_failure,
        provider_customer_id=r.provider_customer_id,
        provider_payment_method_id=r.provider_payment_method_id,
        references_recorded=bool(r.references_recorded),
    )


class ReconciliationRepository(Generic[Conn]):
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def candidates(self, *, after: int, limit: int) -> list[Candidate]:
        """Reconcilable REVIEW invoices with ids greater than `after`, by id."""
        query = _candidates_query().where(invoices.c.id > after).order_by(invoices.c.id)
        return [_candidate(r) for r in await self.conn.execute(query.limit(limit))]

    async def candidate(self, invoice_id: int) -> Candidate | None:
        query = _candidates_query().where(invoices.c.id == invoice_id)
        row = (await self.conn.execute(query)).first()
        return _candidate(row) if row else None

    async def record(
        self: ReconciliationRepository[WriteConnection],
        candidate: Candidate,
        *,
        result: str,
        charge_id: str | None,
        detail: str,
        outcome: str,
        now: datetime,
    ) -> None:
        """Write what was asked and answered; the same answer as the last one is counted."""
        detail = detail[:MAX_DETAIL]
        r = reconciliations.c
        last = (
            await self.conn.execute(
                select(r.id, r.result, r.charge_id, r.detail, r.outcome)
                .where(r.invoice_id == candidate.invoice_id, r.attempt == candidate.attempt)
                .order_by(r.id.desc())
                .limit(1)
            )
        ).first()
        if last is not None and (last.result, last.charge_id, last.detail, last.outcome) == (
            result,
            charge_id,
            detail,
            outcome,
        ):
            await self.conn.execute(
                update(reconciliations)
                .where(r.id == last.id)
                .values(asks=r.asks + 1, last_asked_at=now)
            )
            return
        await self.conn.execute(
            insert(reconciliations).values(
                invoice_id=candidate.invoice_id,
                attempt=candidate.attempt,
                idempotency_key=candidate.idempotency_key,
                result=result,
                charge_id=charge_id,
                detail=detail,
                outcome=outcome,
                asked_at=now,
                last_asked_at=now,
                asks=1,
            )
        )

    async def of_invoice(self, invoice_id: int) -> list[ReconciliationRow]:
        """Every reconciliation of the invoice's attempts, oldest first."""
        r = reconciliations.c
        rows = await self.conn.execute(
            select(reconciliations).where(r.invoice_id == invoice_id).order_by(r.attempt, r.id)
        )
        return [_row(x) for x in rows]


def _row(r: Any) -> ReconciliationRow:
    return ReconciliationRow(
        id=r.id,
        invoice_id=r.invoice_id,
        attempt=r.attempt,
        idempotency_key=r.idempotency_key,
        result=r.result,
        charge_id=r.charge_id,
        detail=r.detail,
        outcome=r.outcome,
        asked_at=r.asked_at,
        last_asked_at=r.last_asked_at,
        asks=r.asks,
    )
