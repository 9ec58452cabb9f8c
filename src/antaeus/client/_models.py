"""Typed results: frozen dataclasses with snake_case names, built from the API's JSON.

Amounts are `Money` (an exact `Decimal` and a currency code), moments aware
`datetime`s in UTC, calendar dates `date`s. Status-like values are plain `str`
so that a value the server adds later does not break a client already
deployed; the `Literal` aliases below are what the server sends today and what
the arguments accept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

InvoiceStatus = Literal["PENDING", "PROCESSING", "PAID", "FAILED", "REVIEW", "VOID"]
FailureReason = Literal[
    "insufficient_funds",
    "customer_not_found",
    "currency_mismatch",
    "unknown_outcome",
    "provider_rejected",
    "idempotency_key_reused",
    "card_declined",
    "authentication_required",
    "payment_method_missing",
    "amount_not_chargeable",
]
Interval = Literal["day", "week", "month", "year"]
BillingAnchor = Literal["calendar", "anniversary"]
SubscriptionStatus = Literal["scheduled", "trialing", "active", "canceled"]
Effective = Literal["now", "period_end"]
RunStatus = Literal["running", "completed"]

JSON = Mapping[str, Any]


def _decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | str):
        return Decimal(value)
    raise TypeError(f"an amount must be a JSON number or a decimal string, not {value!r}")


def _moment(value: Any) -> datetime:
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no offset")
    return moment


def _moment_or_none(value: Any) -> datetime | None:
    return None if value is None else _moment(value)


def _date_or_none(value: Any) -> date | None:
    return None if value is None else date.fromisoformat(str(value))


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount in a currency (`value` has the currency's own decimals)."""

    value: Decimal
    currency: str

    @classmethod
    def from_json(cls, data: JSON) -> Money:
        return cls(_decimal(data["value"]), str(data["currency"]))

    def to_json(self) -> dict[str, str]:
        return {"value": str(self.value), "currency": self.currency}


def _money_or_none(value: Any) -> Money | None:
    return None if value is None else Money.from_json(value)


@dataclass(frozen=True, slots=True)
class Customer:
    id: int
    currency: str
    timezone: str
    provider_customer_id: str | None
    provider_payment_method_id: str | None
    #: the customer's credit (issue 21); None from a server that does not keep it yet
    credit_balance: Money | None = None

    @classmethod
    def from_json(cls, data: JSON) -> Customer:
        return cls(
            id=int(data["id"]),
            currency=str(data["currency"]),
            timezone=str(data["timezone"]),
            provider_customer_id=data.get("providerCustomerId"),
            provider_payment_method_id=data.get("providerPaymentMethodId"),
            credit_balance=_money_or_none(data.get("creditBalance")),
        )


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    """One line of an invoice: `kind` is `subscription`, `proration`, `credit`, `balance`,
    `manual`, or a kind added later."""

    id: int | None
    kind: str
    subscription_id: int | None
    plan_id: int | None
    description: str | None
    period_start: date | None
    period_end: date | None
    quantity: int | None
    amount: Money

    @classmethod
    def from_json(cls, data: JSON) -> InvoiceLine:
        return cls(
            id=_int_or_none(data.get("id")),
            kind=str(data["kind"]),
            subscription_id=_int_or_none(data.get("subscriptionId")),
            plan_id=_int_or_none(data.get("planId")),
            description=data.get("description"),
            period_start=_date_or_none(data.get("periodStart")),
            period_end=_date_or_none(data.get("periodEnd")),
            quantity=_int_or_none(data.get("quantity")),
            amount=Money.from_json(data["amount"]),
        )


def _lines(data: JSON) -> tuple[InvoiceLine, ...]:
    return tuple(InvoiceLine.from_json(line) for line in data.get("lines") or ())


@dataclass(frozen=True, slots=True)
class Invoice:
    id: int
    customer_id: int
    amount: Money
    status: str
    due_at: datetime
    attempt_count: int
    last_failure: str | None
    next_attempt_at: datetime | None
    #: its lines (issue 21); empty from a server that does not show them yet
    lines: tuple[InvoiceLine, ...] = ()

    @classmethod
    def from_json(cls, data: JSON) -> Invoice:
        return cls(
            id=int(data["id"]),
            customer_id=int(data["customerId"]),
            amount=Money.from_json(data["amount"]),
            status=str(data["status"]),
            due_at=_moment(data["dueAt"]),
            attempt_count=int(data["attemptCount"]),
            last_failure=data.get("lastFailure"),
            next_attempt_at=_moment_or_none(data.get("nextAttemptAt")),
            lines=_lines(data),
        )


@dataclass(frozen=True, slots=True)
class UpcomingInvoice:
    """A customer's next generated invoice as it will be; nothing is written."""

    customer_id: int | None
    due_at: datetime
    amount: Money
    lines: tuple[InvoiceLine, ...]

    @classmethod
    def from_json(cls, data: JSON) -> UpcomingInvoice:
        return cls(
            customer_id=_int_or_none(data.get("customerId")),
            due_at=_moment(data["dueAt"]),
            amount=Money.from_json(data["amount"]),
            lines=_lines(data),
        )


@dataclass(frozen=True, slots=True)
class CreditEntry:
    """One change of a customer's credit balance (the amount with its sign)."""

    id: int | None
    customer_id: int | None
    amount: Money
    #: the balance once this entry was applied
    balance_after: Money | None
    reason: str | None
    note: str | None
    #: what it came from: a subscription's change, a subscription, an invoice
    change_id: int | None
    subscription_id: int | None
    invoice_id: int | None
    actor: str | None
    created_at: datetime | None
    #: the entry as the server sent it
    raw: JSON = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: JSON) -> CreditEntry:
        return cls(
            id=_int_or_none(data.get("id")),
            customer_id=_int_or_none(data.get("customerId")),
            amount=Money.from_json(data["amount"]),
            balance_after=_money_or_none(data.get("balanceAfter")),
            reason=data.get("reason"),
            note=data.get("note"),
            change_id=_int_or_none(data.get("changeId")),
            subscription_id=_int_or_none(data.get("subscriptionId")),
            invoice_id=_int_or_none(data.get("invoiceId")),
            actor=data.get("actor"),
            created_at=_moment_or_none(data.get("createdAt")),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class AttemptAnswer:
    outcome: str
    charge_id: str | None
    run_id: int | None
    answered_at: datetime

    @classmethod
    def from_json(cls, data: JSON) -> AttemptAnswer:
        return cls(
            outcome=str(data["outcome"]),
            charge_id=data.get("chargeId"),
            run_id=_int_or_none(data.get("runId")),
            answered_at=_moment(data["answeredAt"]),
        )


@dataclass(frozen=True, slots=True)
class Reconciliation:
    asked_at: datetime
    last_asked_at: datetime
    asks: int
    result: str
    charge_id: str | None
    detail: str
    outcome: str

    @classmethod
    def from_json(cls, data: JSON) -> Reconciliation:
        return cls(
            asked_at=_moment(data["askedAt"]),
            last_asked_at=_moment(data["lastAskedAt"]),
            asks=int(data["asks"]),
            result=str(data["result"]),
            charge_id=data.get("chargeId"),
            detail=str(data["detail"]),
            outcome=str(data["outcome"]),
        )


@dataclass(frozen=True, slots=True)
class Attempt:
    """One charge attempt of an invoice, with every answer of the provider to it."""

    number: int
    idempotency_key: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None
    charge_id: str | None
    decline_code: str | None
    run_id: int | None
    sends: int
    provider_customer_id: str | None
    provider_payment_method_id: str | None
    references_recorded: bool
    answers: tuple[AttemptAnswer, ...]
    reconciliations: tuple[Reconciliation, ...]

    @classmethod
    def from_json(cls, data: JSON) -> Attempt:
        return cls(
            number=int(data["number"]),
            idempotency_key=str(data["idempotencyKey"]),
            started_at=_moment(data["startedAt"]),
            finished_at=_moment_or_none(data.get("finishedAt")),
            outcome=data.get("outcome"),
            charge_id=data.get("chargeId"),
            decline_code=data.get("declineCode"),
            run_id=_int_or_none(data.get("runId")),
            sends=int(data["sends"]),
            provider_customer_id=data.get("providerCustomerId"),
            provider_payment_method_id=data.get("providerPaymentMethodId"),
            references_recorded=bool(data.get("referencesRecorded")),
            answers=tuple(AttemptAnswer.from_json(a) for a in data.get("answers") or ()),
            reconciliations=tuple(
                Reconciliation.from_json(r) for r in data.get("reconciliations") or ()
            ),
        )


@dataclass(frozen=True, slots=True)
class InvoiceAction:
    """What a person did to an invoice (retry, resolve, void), as recorded."""

    id: int
    actor: str
    action: str
    from_status: str
    to_status: str
    note: str | None
    charge_id: str | None
    created_at: datetime

    @classmethod
    def from_json(cls, data: JSON) -> InvoiceAction:
        return cls(
            id=int(data["id"]),
            actor=str(data["actor"]),
            action=str(data["action"]),
            from_status=str(data["fromStatus"]),
            to_status=str(data["toStatus"]),
            note=data.get("note"),
            charge_id=data.get("chargeId"),
            created_at=_moment(data["createdAt"]),
        )


@dataclass(frozen=True, slots=True)
class BulkResult:
    """What a bulk action did: invoices matched, acted on, and skipped."""

    matched: int
    acted: int
    skipped: int

    @classmethod
    def from_json(cls, data: JSON) -> BulkResult:
        return cls(int(data["matched"]), int(data["acted"]), int(data["skipped"]))


@dataclass(frozen=True, slots=True)
class Plan:
    id: int
    code: str
    name: str
    amount: Money
    interval: str
    interval_count: int
    trial_days: int
    created_at: datetime
    archived_at: datetime | None

    @classmethod
    def from_json(cls, data: JSON) -> Plan:
        return cls(
            id=int(data["id"]),
            code=str(data["code"]),
            name=str(data["name"]),
            amount=Money.from_json(data["amount"]),
            interval=str(data["interval"]),
            interval_count=int(data["intervalCount"]),
            trial_days=int(data["trialDays"]),
            created_at=_moment(data["createdAt"]),
            archived_at=_moment_or_none(data.get("archivedAt")),
        )


@dataclass(frozen=True, slots=True)
class PendingChange:
    plan_id: int
    quantity: int
    effective_date: date

    @classmethod
    def from_json(cls, data: JSON) -> PendingChange:
        return cls(
            plan_id=int(data["planId"]),
            quantity=int(data["quantity"]),
            effective_date=date.fromisoformat(str(data["effectiveDate"])),
        )


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscription; its dates are calendar dates in the customer's time zone."""

    id: int
    customer_id: int
    plan_id: int
    quantity: int
    status: str
    billing_anchor: str
    start_date: date
    trial_end_date: date | None
    current_period_start: date | None
    current_period_end: date | None
    cancel_at: date | None
    canceled_at: datetime | None
    pending_change: PendingChange | None
    created_at: datetime

    @classmethod
    def from_json(cls, data: JSON) -> Subscription:
        pending = data.get("pendingChange")
        return cls(
            id=int(data["id"]),
            customer_id=int(data["customerId"]),
            plan_id=int(data["planId"]),
            quantity=int(data["quantity"]),
            status=str(data["status"]),
            billing_anchor=str(data["billingAnchor"]),
            start_date=date.fromisoformat(str(data["startDate"])),
            trial_end_date=_date_or_none(data.get("trialEndDate")),
            current_period_start=_date_or_none(data.get("currentPeriodStart")),
            current_period_end=_date_or_none(data.get("currentPeriodEnd")),
            cancel_at=_date_or_none(data.get("cancelAt")),
            canceled_at=_moment_or_none(data.get("canceledAt")),
            pending_change=None if pending is None else PendingChange.from_json(pending),
            created_at=_moment(data["createdAt"]),
        )


@dataclass(frozen=True, slots=True)
class RunCounts:
    due: int
    paid: int
    failed: int
    review: int
    rescheduled: int
    void: int

    @classmethod
    def from_json(cls, data: JSON) -> RunCounts:
        return cls(
            due=int(data["due"]),
            paid=int(data["paid"]),
            failed=int(data["failed"]),
            review=int(data["review"]),
            rescheduled=int(data["rescheduled"]),
            void=int(data["void"]),
        )


@dataclass(frozen=True, slots=True)
class Run:
    """A billing run: the invoices it took and what became of them so far."""

    id: int
    trigger: str
    status: str
    started_at: datetime
    completed_at: datetime | None
    paused_reason: str | None
    counts: RunCounts
    collected: tuple[Money, ...]

    @classmethod
    def from_json(cls, data: JSON) -> Run:
        return cls(
            id=int(data["id"]),
            trigger=str(data["trigger"]),
            status=str(data["status"]),
            started_at=_moment(data["startedAt"]),
            completed_at=_moment_or_none(data.get("completedAt")),
            paused_reason=data.get("pausedReason"),
            counts=RunCounts.from_json(data["counts"]),
            collected=tuple(Money.from_json(m) for m in data.get("collected") or ()),
        )


@dataclass(frozen=True, slots=True)
class Status:
    """`GET /rest/v1/status`: whether charging runs, open runs, the due backlog; `relay`
    and `outbox` as the server sent them."""

    charging: str
    paused_reason: str | None
    paused_since: datetime | None
    schedule: str
    open_runs: tuple[int, ...]
    due_backlog: int
    token_name: str
    token_scope: str
    relay: JSON | None
    outbox: JSON

    @classmethod
    def from_json(cls, data: JSON) -> Status:
        token = data.get("token") or {}
        return cls(
            charging=str(data["charging"]),
            paused_reason=data.get("pausedReason"),
            paused_since=_moment_or_none(data.get("pausedSince")),
            schedule=str(data["schedule"]),
            open_runs=tuple(int(i) for i in data.get("openRuns") or ()),
            due_backlog=int(data["dueBacklog"]),
            token_name=str(token.get("name", "")),
            token_scope=str(token.get("scope", "")),
            relay=data.get("relay"),
            outbox=data.get("outbox") or {},
        )


@dataclass(frozen=True, slots=True)
class Event:
    """One event (`GET /rest/v1/events`, a webhook delivery): `data` as sent, with
    `invoice`, `subscription` and `run_id` read from it where the type has them."""

    id: str
    type: str
    created_at: datetime
    data: JSON = field(repr=False)

    @classmethod
    def from_json(cls, data: JSON) -> Event:
        return cls(
            id=str(data["id"]),
            type=str(data["type"]),
            created_at=_moment(data["createdAt"]),
            data=data.get("data") or {},
        )

    @property
    def invoice(self) -> Invoice | None:
        found = self.data.get("invoice")
        return None if found is None else Invoice.from_json(found)

    @property
    def subscription(self) -> Subscription | None:
        found = self.data.get("subscription")
        return None if found is None else Subscription.from_json(found)

    @property
    def run_id(self) -> int | None:
        return _int_or_none(self.data.get("runId"))


@dataclass(frozen=True, slots=True)
class Webhook:
    id: int
    url: str
    events: tuple[str, ...]
    status: str
    created_at: datetime
    failing_since: datetime | None
    disabled_at: datetime | None

    @classmethod
    def from_json(cls, data: JSON) -> Webhook:
        return cls(
            id=int(data["id"]),
            url=str(data["url"]),
            events=tuple(str(e) for e in data.get("events") or ()),
            status=str(data["status"]),
            created_at=_moment(data["createdAt"]),
            failing_since=_moment_or_none(data.get("failingSince")),
            disabled_at=_moment_or_none(data.get("disabledAt")),
        )


@dataclass(frozen=True, slots=True)
class CreatedWebhook:
    """A webhook endpoint just added, with its signing secret (shown only then)."""

    webhook: Webhook
    secret: str = field(repr=False)

    @classmethod
    def from_json(cls, data: JSON) -> CreatedWebhook:
        return cls(Webhook.from_json(data), str(data["secret"]))

    @property
    def id(self) -> int:
        return self.webhook.id


@dataclass(frozen=True, slots=True)
class DeliveryTry:
    id: int
    event_id: str
    tried_at: datetime
    http_status: int | None
    error: str | None
    duration_ms: int
    delivered: bool

    @classmethod
    def from_json(cls, data: JSON) -> DeliveryTry:
        return cls(
            id=int(data["id"]),
            event_id=str(data["eventId"]),
            tried_at=_moment(data["triedAt"]),
            http_status=_int_or_none(data.get("httpStatus")),
            error=data.get("error"),
            duration_ms=int(data["durationMs"]),
            delivered=bool(data["delivered"]),
        )
