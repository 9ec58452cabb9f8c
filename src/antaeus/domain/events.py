"""The outbox events: every type, and the one place their stored payloads are built.

An event is written to the `events` table in the same transaction as its cause
(`storage/repositories/runs.py` `add_events`, which takes `row(event)`). Its
payload is the event's `data`, built here from typed values and serialised by
`antaeus.exactjson.dumps`, the encoder the API writes its bodies with: amounts
are exact JSON numbers (never floats), moments RFC 3339 in UTC (`Z`). An
invoice event's data holds `invoice` (as `GET /rest/v1/invoices/{id}` shows it
at that moment: `invoice_data`), `attempt` (number, idempotency key, outcome,
charge id, reason) and `runId` where they apply. The relay and the events API
wrap each stored row as `{"id", "type", "createdAt", "data"}`
(notify/envelope.py); `DESCRIPTIONS` says what each type means, and the
catalogue (docs/reference/events.md) is generated from both.

Pure: values in, text out; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar, Final, Protocol

from antaeus.domain.invoice import Invoice
from antaeus.domain.money import Money
from antaeus.exactjson import dumps, rfc3339, string


class EventType(StrEnum):
    INVOICE_PAID = "invoice.paid"
    INVOICE_PAYMENT_DECLINED = "invoice.payment_declined"
    INVOICE_FAILED = "invoice.failed"
    INVOICE_REVIEW = "invoice.review"
    INVOICE_PAYMENT_UNKNOWN = "invoice.payment_unknown"
    INVOICE_RESCHEDULED = "invoice.rescheduled"
    INVOICE_RETRIED = "invoice.retried"
    INVOICE_RESOLVED = "invoice.resolved"
    INVOICE_VOIDED = "invoice.voided"
    RUN_OPENED = "run.opened"
    RUN_COMPLETED = "run.completed"
    CHARGING_PAUSED = "charging.paused"
    CHARGING_RESUMED = "charging.resumed"
    SUBSCRIPTION_CREATED = "subscription.created"
    SUBSCRIPTION_UPDATED = "subscription.updated"
    SUBSCRIPTION_CANCELED = "subscription.canceled"
    SUBSCRIPTION_TRIAL_WILL_END = "subscription.trial_will_end"
    INVOICE_CREATED = "invoice.created"


#: What each event type says, for people (the events reference, docs/reference/events.md, is
#: generated from it). Keyed by the type's name, so that a type may be described here in the
#: same change that adds it to `EventType`; every member of `EventType` must have an entry.
DESCRIPTIONS: Final[dict[str, str]] = {
    "invoice.created": "An invoice was created, whatever made it (`POST /rest/v1/invoices`, "
    "or a subscription's period). `data.invoice` is the invoice as `GET "
    "/rest/v1/invoices/{id}` showed it then.",
    "invoice.paid": "The provider charged the invoice. `data`: `invoice` (`PAID`), `attempt` "
    "(outcome `charged`, with the provider's `chargeId`), `runId`.",
    "invoice.payment_declined": "The provider declined the charge for insufficient funds and "
    "dunning will try again at `invoice.nextAttemptAt`. `data`: `invoice` (`PENDING`), "
    "`attempt`, `runId`.",
    "invoice.failed": "The invoice was definitely not charged and needs a person "
    "(`invoice.lastFailure`: `customer_not_found`, `currency_mismatch`, `insufficient_funds` "
    "after the last dunning try, `card_declined` with `attempt.declineCode`, "
    "`authentication_required`, `provider_rejected`; or refused before any call: "
    "`payment_method_missing`, `amount_not_chargeable`, then `attempt` is null and `refusal` "
    "is `{reason, detail}`). `data`: `invoice` (`FAILED`), `attempt`, `runId`.",
    "invoice.review": "Money may have moved and nobody knows: the invoice waits in `REVIEW` "
    "for reconciliation or a person (`unknown_outcome`, `idempotency_key_reused`, or "
    "`provider_rejected` after an unknown outcome); written by the worker or by the "
    "scheduler's key-retention sweep. `data`: `invoice` (`REVIEW`), `attempt` (the open one, "
    "with its key), `runId`.",
    "invoice.payment_unknown": "The provider's answer said nothing (a timeout, a 5xx, a "
    "dropped connection); the attempt is repeated with the same key. `data`: `invoice`, "
    "`attempt` (outcome `unknown_outcome`), `runId`.",
    "invoice.rescheduled": "An unknown outcome was repeated for longer than "
    "`ANTAEUS_UNKNOWN_REPEAT_WINDOW`: the invoice leaves its run and is repeated with the "
    "same key at `invoice.nextAttemptAt`. `data`: `invoice` (`PENDING`), `attempt`, `runId`.",
    "invoice.retried": "A person retried a `FAILED` invoice (`POST "
    "/rest/v1/invoices/{id}/retry`, or the bulk retry). `data`: `invoice` (`PENDING`), "
    "`action` (`action`, `actor`, `note`, `chargeId`, `fromStatus`, `toStatus`).",
    "invoice.resolved": "A person, or reconciliation with the provider (`action.actor` "
    "`reconciler`), resolved a `REVIEW` invoice: `action.action` is `resolved_charged` (with "
    "`chargeId`) or `resolved_not_charged`. `data`: `invoice`, `action`.",
    "invoice.voided": "A person voided the invoice: it is never charged again. `data`: "
    "`invoice` (`VOID`), `action`.",
    "run.opened": "A billing run opened (`trigger`: `schedule`, `api`, `cli`, or `retry`: a "
    "person's retry of one invoice, a run of that invoice alone). `data`: `runId`, "
    "`trigger`, `invoices` (how many due invoices it took).",
    "run.completed": "Every invoice of the run has an outcome. `data`: `runId` (`GET "
    "/rest/v1/billing/runs/{id}` has its counts and amounts).",
    "charging.paused": "Charging paused everywhere because the provider refused Antaeus "
    "(`reason`: `provider_unauthorized` or `provider_unavailable`). `data`: `reason`, "
    "`detail`.",
    "charging.resumed": "Charging runs again after a pause. `data` is empty.",
    "subscription.created": "`POST /rest/v1/subscriptions` created a subscription. "
    "`data.subscription` is the subscription as `GET /rest/v1/subscriptions/{id}` showed it "
    "then.",
    "subscription.updated": "A change or cancel of a subscription was made, applied or taken "
    "back (`pendingChange` or `cancelAt` set or cleared, `reactivate`); not written at every "
    "new period, which `invoice.created` tells. `data`: `subscription`.",
    "subscription.canceled": "A cancel took effect: at once (`at: now`, or the cancel of a "
    "`scheduled` subscription), or at `cancelAt` for a cancel at the period's end (which "
    "writes `subscription.updated` when it is made). `data`: `subscription` (status "
    "`canceled`).",
    "subscription.trial_will_end": "A subscription's trial ends in 3 days: written once, at "
    "the first instant of `trialEndDate` minus 3 days in the customer's time zone (or at "
    "creation when that is past); after downtime only if the trial has not ended. `data`: "
    "`subscription`.",
}

#: the types an answer of the provider can lead to (domain/policy.py chooses)
ANSWER_TYPES: Final = frozenset(
    {
        EventType.INVOICE_PAID,
        EventType.INVOICE_PAYMENT_DECLINED,
        EventType.INVOICE_FAILED,
        EventType.INVOICE_REVIEW,
        EventType.INVOICE_PAYMENT_UNKNOWN,
        EventType.INVOICE_RESCHEDULED,
    }
)

#: the action recorded in `invoice_actions`, and the event it writes
ACTION_TYPES: Final[dict[str, EventType]] = {
    "retried": EventType.INVOICE_RETRIED,
    "resolved_charged": EventType.INVOICE_RESOLVED,
    "resolved_not_charged": EventType.INVOICE_RESOLVED,
    "voided": EventType.INVOICE_VOIDED,
}

#: one row of the outbox as `add_events` takes it: (type, invoice id, run id, payload)
Row = tuple[str, int | None, int | None, str]


def _moment(value: datetime | None) -> str | None:
    return rfc3339(value) if value is not None else None


def invoice_data(i: Invoice) -> dict[str, Any]:
    """An invoice as the API shows it (`GET /rest/v1/invoices/{id}`): one home for the shape."""
    return {
        "id": i.id,
        "customerId": i.customer_id,
        "amount": {"value": i.amount.value, "currency": i.amount.currency.value},
        "status": i.status.value,
        "dueAt": rfc3339(i.due_at),
        "attemptCount": i.attempt_count,
        "lastFailure": i.last_failure.value if i.last_failure else None,
        "nextAttemptAt": _moment(i.next_attempt_at),
    }


def attempt_data(
    number: int,
    idempotency_key: str,
    outcome: str | None,
    charge_id: str | None,
    reason: str | None,
    decline_code: str | None = None,
) -> dict[str, Any]:
    return {
        "number": number,
        "idempotencyKey": idempotency_key,
        "outcome": outcome,
        "chargeId": charge_id,
        "reason": reason,
        "declineCode": decline_code,  # the provider's, for reason card_declined
    }


class Event(Protocol):
    """An outbox event: its type, the invoice and the run it is about, and its data."""

    @property
    def type(self) -> EventType: ...

    @property
    def invoice_id(self) -> int | None: ...

    @property
    def run_id(self) -> int | None: ...

    def data(self) -> dict[str, Any]: ...


def payload(event: Event) -> str:
    """The stored payload: the event's data as JSON text, by the API's encoder."""
    if type(event) is ChargeAnswered:
        fast = answered_payload(event)
        if fast is not None:
            return fast
    return dumps(event.data())


def row(event: Event) -> Row:
    """The event as one row of the outbox (`add_events`)."""
    return (event.type.value, event.invoice_id, event.run_id, payload(event))


def _text(value: str | None) -> str:
    return "null" if value is None else string(value)


def answered_payload(e: ChargeAnswered) -> str | None:
    """`dumps(e.data())`, the same text, written from a template (one per answer, the
    worker's hot path); None for a field of a type the template does not write."""
    return AnsweredTemplate(e.status, e.outcome, e.reason, e.next_attempt_at).text(
        e.invoice_id,
        e.customer_id,
        e.amount,
        e.due_at,
        e.attempt,
        e.idempotency_key,
        e.charge_id,
        e.run_id,
        e.decline_code,
    )


class AnsweredTemplate:
    """The text of `ChargeAnswered` payloads that share a status, an outcome, a reason
    and a next attempt (one decision of a batch of answers): those parts are written
    once, here; `text` fills in one invoice's own (`answered_payload` is the same
    template, for one event)."""

    __slots__ = ("_due", "_middle", "_outcome", "_status", "_tail")

    def __init__(
        self, status: str, outcome: str, reason: str | None, next_attempt_at: datetime | None
    ) -> None:
        why = _text(reason)
        nxt = "null" if next_attempt_at is None else string(rfc3339(next_attempt_at))
        self._status = f'"status":{string(status)},"dueAt":"'
        self._middle = f',"lastFailure":{why},"nextAttemptAt":{nxt}}},"attempt":{{"number":'
        self._outcome = f',"outcome":{string(outcome)},"chargeId":'
        self._tail = f',"reason":{why},"declineCode":'
        self._due: dict[datetime, str] = {}  # due moments written (a batch shares a few)

    def text(
        self,
        invoice_id: int,
        customer_id: int,
        amount: Money,
        due_at: datetime,
        attempt: int,
        idempotency_key: str,
        charge_id: str | None,
        run_id: int,
        decline_code: str | None,
    ) -> str | None:
        """One invoice's payload; None for a field of a type the template does not write."""
        value = amount.value
        if not (
            type(invoice_id) is int
            and type(customer_id) is int
            and type(attempt) is int
            and type(run_id) is int
            and type(value) is Decimal
            and value.is_finite()
        ):
            return None
        due = self._due.get(due_at)
        if due is None:
            due = rfc3339(due_at)
            if len(self._due) < 64:
                self._due[due_at] = due
        return (
            f'{{"invoice":{{"id":{invoice_id},"customerId":{customer_id},'
            f'"amount":{{"value":{value},"currency":{string(amount.currency.code)}}},'
            f'{self._status}{due}","attemptCount":{attempt}{self._middle}{attempt},'
            f'"idempotencyKey":{string(idempotency_key)}{self._outcome}{_text(charge_id)}'
            f'{self._tail}{_text(decline_code)}}},"runId":{run_id}}}'
        )


@dataclass(slots=True)  # not frozen: the worker builds one per answer, on its hot path
class ChargeAnswered:
    """The provider answered an attempt and the worker recorded it (a type of ANSWER_TYPES)."""

    type: EventType
    invoice_id: int
    customer_id: int
    amount: Money
    due_at: datetime
    status: str  # the invoice's status now
    outcome: str  # ChargeOutcome value
    attempt: int
    idempotency_key: str
    charge_id: str | None
    reason: str | None  # the invoice's last failure, if any
    run_id: int
    next_attempt_at: datetime | None
    decline_code: str | None = None  # the provider's, for outcome card_declined

    def data(self) -> dict[str, Any]:
        return {
            "invoice": {
                "id": self.invoice_id,
                "customerId": self.customer_id,
                "amount": {"value": self.amount.value, "currency": self.amount.currency.value},
                "status": self.status,
                "dueAt": rfc3339(self.due_at),
                "attemptCount": self.attempt,
                "lastFailure": self.reason,
                "nextAttemptAt": _moment(self.next_attempt_at),
            },
            "attempt": attempt_data(
                self.attempt,
                self.idempotency_key,
                self.outcome,
                self.charge_id,
                self.reason,
                self.decline_code,
            ),
            "runId": self.run_id,
        }


@dataclass(slots=True)  # not frozen: built by the worker, like ChargeAnswered
class ChargeRefused:
    """The provider refused before any call (`provider.refusal`); no call was made.

    `invoice.failed` when the attempt claimed ahead was taken back (`attempt` is
    then null: no key was consumed, `attemptCount` is as before the claim), or
    `invoice.review` when an open attempt with an earlier send could not be
    repeated (`attempt` is that open attempt, with its key). `refusal` says why.
    """

    type: EventType
    invoice_id: int
    customer_id: int
    amount: Money
    due_at: datetime
    status: str  # the invoice's status now
    attempt_count: int  # the invoice's attempts now
    reason: str  # the invoice's last failure
    refusal_reason: str  # what the provider said (payment_method_missing, …)
    detail: str
    run_id: int
    open_attempt: int | None  # the open attempt kept (REVIEW); None: taken back
    idempotency_key: str | None

    def data(self) -> dict[str, Any]:
        attempt = None
        if self.open_attempt is not None and self.idempotency_key is not None:
            attempt = attempt_data(self.open_attempt, self.idempotency_key, None, None, self.reason)
        return {
            "invoice": {
                "id": self.invoice_id,
                "customerId": self.customer_id,
                "amount": {"value": self.amount.value, "currency": self.amount.currency.value},
                "status": self.status,
                "dueAt": rfc3339(self.due_at),
                "attemptCount": self.attempt_count,
                "lastFailure": self.reason,
                "nextAttemptAt": None,
            },
            "attempt": attempt,
            "refusal": {"reason": self.refusal_reason, "detail": self.detail},
            "runId": self.run_id,
        }


@dataclass(frozen=True, slots=True)
class SentToReview:
    """The scheduler moved an open attempt to REVIEW before its key's retention ends."""

    invoice: Invoice  # as it is now, in REVIEW
    run_id: int | None  # the open run it was in, if any
    attempt: int
    idempotency_key: str
    reason: str  # unknown_outcome
    type: ClassVar[EventType] = EventType.INVOICE_REVIEW

    @property
    def invoice_id(self) -> int:
        return self.invoice.id

    def data(self) -> dict[str, Any]:
        return {
            "invoice": invoice_data(self.invoice),
            "attempt": attempt_data(self.attempt, self.idempotency_key, None, None, self.reason),
            "runId": self.run_id,
        }


@dataclass(frozen=True, slots=True)
class ActionTaken:
    """A person retried, resolved or voided an invoice (`actor`: the API token's name)."""

    invoice: Invoice  # as it is after the action
    action: str  # a key of ACTION_TYPES
    actor: str
    note: str | None
    charge_id: str | None  # resolved_charged: the provider's charge id
    from_status: str
    to_status: str
    run_id: ClassVar[None] = None

    @property
    def invoice_id(self) -> int:
        return self.invoice.id

    @property
    def type(self) -> EventType:
        return ACTION_TYPES[self.action]

    def data(self) -> dict[str, Any]:
        return {
            "invoice": invoice_data(self.invoice),
            "action": {
                "action": self.action,
                "actor": self.actor,
                "note": self.note,
                "chargeId": self.charge_id,
                "fromStatus": self.from_status,
                "toStatus": self.to_status,
            },
        }


@dataclass(frozen=True, slots=True)
class RunOpened:
    invoice_id: ClassVar[None] = None
    run_id: int
    trigger: str  # schedule, api, cli, retry
    invoices: int  # due invoices it took
    type: ClassVar[EventType] = EventType.RUN_OPENED

    def data(self) -> dict[str, Any]:
        return {"runId": self.run_id, "trigger": self.trigger, "invoices": self.invoices}


@dataclass(frozen=True, slots=True)
class RunCompleted:
    invoice_id: ClassVar[None] = None
    run_id: int
    type: ClassVar[EventType] = EventType.RUN_COMPLETED

    def data(self) -> dict[str, Any]:
        return {"runId": self.run_id}


@dataclass(frozen=True, slots=True)
class ChargingPaused:
    invoice_id: ClassVar[None] = None
    run_id: ClassVar[None] = None
    reason: str  # provider_unauthorized, provider_unavailable
    detail: str
    type: ClassVar[EventType] = EventType.CHARGING_PAUSED

    def data(self) -> dict[str, Any]:
        return {"reason": self.reason, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class ChargingResumed:
    invoice_id: ClassVar[None] = None
    run_id: ClassVar[None] = None
    type: ClassVar[EventType] = EventType.CHARGING_RESUMED

    def data(self) -> dict[str, Any]:
        return {}


#: the subscription events (issue 21)
SUBSCRIPTION_TYPES: Final = frozenset(
    {
        EventType.SUBSCRIPTION_CREATED,
        EventType.SUBSCRIPTION_UPDATED,
        EventType.SUBSCRIPTION_CANCELED,
        EventType.SUBSCRIPTION_TRIAL_WILL_END,
    }
)


@dataclass(frozen=True, slots=True)
class SubscriptionEvent:
    """A subscription was created, changed (a change or cancel made or taken back) or
    canceled. `subscription` is the subscription as `GET /rest/v1/subscriptions/{id}`
    shows it at that moment (built by the API, which owns that shape)."""

    type: EventType  # one of SUBSCRIPTION_TYPES
    subscription: dict[str, Any]
    invoice_id: ClassVar[None] = None
    run_id: ClassVar[None] = None

    def __post_init__(self) -> None:
        if self.type not in SUBSCRIPTION_TYPES:
            raise ValueError(f"{self.type} is not a subscription event")

    def data(self) -> dict[str, Any]:
        return {"subscription": self.subscription}


def line_data(
    line_id: int,
    kind: str,
    description: str,
    amount: Money,
    subscription_id: int | None,
    plan_id: int | None,
    period_start: date | None,
    period_end: date | None,
    quantity: int | None,
) -> dict[str, Any]:
    """An invoice line as the API shows it (an element of an invoice's `lines`)."""
    return {
        "id": line_id,
        "kind": kind,
        "subscriptionId": subscription_id,
        "planId": plan_id,
        "description": description,
        "periodStart": period_start.isoformat() if period_start is not None else None,
        "periodEnd": period_end.isoformat() if period_end is not None else None,
        "quantity": quantity,
        "amount": {"value": amount.value, "currency": amount.currency.value},
    }


@dataclass(frozen=True, slots=True)
class InvoiceCreated:
    """An invoice was created, whatever made it (the API, generation, a change `now`):
    the invoice as `GET /rest/v1/invoices/{id}` shows it, with its lines."""

    invoice: Invoice
    lines: tuple[dict[str, Any], ...]
    type: ClassVar[EventType] = EventType.INVOICE_CREATED
    run_id: ClassVar[None] = None

    @property
    def invoice_id(self) -> int:
        return self.invoice.id

    def data(self) -> dict[str, Any]:
        return {"invoice": {**invoice_data(self.invoice), "lines": list(self.lines)}}
