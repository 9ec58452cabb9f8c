"""Wire shapes. Field names are camelCase; the original fields keep name, type and meaning.

Responses are rendered by the `*_json` functions (amounts as exact JSON numbers);
the pydantic `*Read` models describe the same shapes in OpenAPI.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, DecimalException
from enum import Enum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    StrictInt,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from antaeus.api.errors import error_codes
from antaeus.domain.customer import Customer, zone
from antaeus.domain.events import invoice_data
from antaeus.domain.invoice import FailureReason, Invoice, InvoiceStatus
from antaeus.domain.money import (
    MAX_DIGITS,
    MAX_MINOR,
    Currency,
    MoneyError,
    UnknownCurrencyError,
    check_amount,
    parse_amount,
)
from antaeus.domain.periods import PeriodRuleError, check_interval
from antaeus.exactjson import rfc3339
from antaeus.storage.repositories.actions import ActionRow
from antaeus.storage.repositories.credit import CreditEntry
from antaeus.storage.repositories.invoices import InvoiceFilter

MAX_ID: Final = 2**63 - 1
#: what some currency may accept: at most four decimals (CLF), fifteen whole digits (JPY:
#: the fifteenth is refused as too much, not as malformed)
AMOUNT_PATTERN: Final = r"^[0-9]{1,15}(\.[0-9]{1,4})?$"


def _currency(value: object) -> Currency:
    if not isinstance(value, str):
        raise PydanticCustomError(
            "string_type", "must be a string, an ISO 4217 code such as EUR, JPY or KWD"
        )
    try:
        return Currency(value)
    except UnknownCurrencyError as exc:
        # ctx, not the template, carries the text: a code may hold braces
        raise PydanticCustomError("unknown_currency", "{reason}", {"reason": str(exc)}) from None


#: An ISO 4217 code with minor units; errors with code `unknown_currency` name it.
CurrencyCode = Annotated[
    Currency,
    PlainValidator(_currency),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[A-Z]{3}$",
            "description": "an active ISO 4217 currency code that has minor units (EUR, USD, "
            "DKK, SEK, GBP, JPY, KWD, ...; not XAU, XDR or another without them). Amounts "
            "in it have its own decimals: 2 for most, 0 for JPY or KRW, 3 for KWD or BHD",
            "examples": ["DKK"],
        }
    ),
]


def _positive_amount(value: object, info: ValidationInfo) -> Decimal:
    """A positive amount with at most the decimals of the currency given beside it."""
    amount = _amount_in(value, info)
    if amount <= 0:
        raise ValueError("amount must be greater than zero")
    return amount


def _price(value: object, info: ValidationInfo) -> Decimal:
    """A plan's price: zero or more, with at most the currency's decimals."""
    amount = _amount_in(value, info)
    if amount < 0:
        raise ValueError("amount must not be negative (0 is a free plan)")
    return amount


def _amount_in(value: object, info: ValidationInfo) -> Decimal:
    """An amount with at most the decimals of the currency given beside it."""
    currency = info.data.get("currency")
    try:
        if isinstance(currency, Currency):
            amount = parse_amount(value, currency)
        else:  # the currency is wrong and says so (it is validated first)
            amount = check_amount(value)  # what no currency would accept
    except MoneyError as exc:
        raise ValueError(str(exc)) from None
    except DecimalException:
        raise ValueError("amount is not a usable decimal number") from None
    return amount


AmountIn = Annotated[
    Decimal,
    BeforeValidator(_positive_amount),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": AMOUNT_PATTERN},
                {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_MINOR},
            ],
            "description": 'a decimal string ("89.52") or a JSON number, with at most the '
            "currency's own decimals (ISO 4217 minor units: EUR 2, JPY 0, KWD 3; `1.230` is "
            "refused in EUR, `1.0` in JPY) and at most "
            f"{MAX_DIGITS} digits in all (999999999999.99 EUR, 99999999999999 JPY)",
            "examples": ["89.52"],
        }
    ),
]


# -- text ----------------------------------------------------------------------
#
# Every string a request body carries reaches the database, the logs or both, so
# each one is one of the two checked types below (a test holds every request
# model to it): PostgreSQL refuses NUL in text (a 500 if it got that far) and
# SQLite would store it; other control characters forge log lines and terminal
# output. Lengths are capped at the column's (storage/tables.py), so an over-long
# value is a 422 here, never an error of the database. Text that is not Unicode
# at all (a lone surrogate) is refused earlier, as malformed JSON (antaeus/exactjson.py).

#: control characters (C0, DEL, C1) and surrogates, but tab, line feed and carriage return
_CONTROL_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
#: every control character (C0, DEL, C1) and surrogates
_CONTROL_IN_LINE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _refuse(pattern: re.Pattern[str], value: str) -> str:
    if match := pattern.search(value):
        raise ValueError(
            f"must not contain control characters (U+{ord(match.group()):04X} "
            f"at position {match.start()})"
        )
    return value


def _free_text(value: str) -> str:
    """Text for people (a note): line breaks and tabs are fine, other control characters not."""
    return _refuse(_CONTROL_IN_TEXT, value)


def _single_line(value: str) -> str:
    """An identifier or a name: no control character at all, not even a line break."""
    return _refuse(_CONTROL_IN_LINE, value)


#: the checks every request string goes through (tests hold request models to them)
TEXT_CHECKS: Final = (_free_text, _single_line)

#: free text written by people: tabs and line breaks allowed, no other control characters
FreeText = Annotated[str, AfterValidator(_free_text)]
#: an identifier or a name from elsewhere (a charge id, a zone): one line, no control characters
SingleLine = Annotated[str, AfterValidator(_single_line)]


def _known_zone(name: str) -> str:
    zone(name)  # raises ValueError naming the problem
    return name


TimezoneName = Annotated[
    SingleLine,
    Field(min_length=1, max_length=64, examples=["Europe/Copenhagen"]),  # customers.timezone
    AfterValidator(_known_zone),
]


_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"(?P<offset>[Zz]|[+-][0-9]{2}:[0-9]{2})?"
)


def _rfc3339_text(value: object) -> object:
    if not isinstance(value, str) or not (match := _RFC3339.fullmatch(value)):
        raise ValueError("dueAt must be an RFC 3339 time such as 2026-12-01T00:00:00Z")
    if match["offset"] is None:
        raise ValueError("dueAt needs a time zone offset (such as Z or +01:00)")
    return value


def _aware_sane(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("dueAt needs a time zone offset (such as Z or +01:00)")
    if not 1971 <= moment.year <= 9997:  # checked before converting, which could overflow
        raise ValueError("dueAt must fall between 1971 and 9997")
    return moment.astimezone(UTC)


DueAt = Annotated[
    datetime,
    BeforeValidator(_rfc3339_text),
    AfterValidator(_aware_sane),
    WithJsonSchema({"type": "string", "format": "date-time", "examples": ["2026-12-01T00:00:00Z"]}),
]

_DIGITS = re.compile(r"0|[1-9][0-9]*")


def _digits_only(value: object) -> object:
    """Path and query integers are written in plain digits: no '1_0', '1.0', '+1' or '01'.

    Too many digits for any column is said as such (a number of up to 40 digits
    goes on to its bounds, which say how large it may be).
    """
    if isinstance(value, str):
        if not _DIGITS.fullmatch(value):
            raise ValueError("must be a whole number written in digits")
        if len(value) > 40:
            raise ValueError(f"is too large ({len(value)} digits; an id is at most {MAX_ID})")
    return value


#: an integer from a path or a query string
DigitsInt = Annotated[int, BeforeValidator(_digits_only)]

Id = Annotated[StrictInt, Field(ge=1, le=MAX_ID)]


class RequestBody(BaseModel):
    """A JSON object body: closed to unknown fields, and never anything but an object.

    FastAPI validates bodies with `from_attributes`, so without this a bare JSON
    number (parsed to a Decimal) would pass as an object with no fields.
    """

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _json_object(cls, data: object) -> object:
        if not isinstance(data, dict):
            raise ValueError("the request body must be a JSON object")
        return data


class MoneyIn(RequestBody):
    currency: CurrencyCode  # first: the value is validated against its decimals
    value: AmountIn


def _printable(value: str) -> str:
    """Printable characters only (no control, format or separator characters but space)."""
    for position, char in enumerate(value):
        if not char.isprintable():
            raise ValueError(
                f"must be printable characters (U+{ord(char):04X} at position {position})"
            )
    return value


#: a reference at the payment provider (customers.provider_*: 255): Stripe's `cus_…`, `pm_…`
ProviderReference = Annotated[
    SingleLine,
    Field(min_length=1, max_length=255),
    AfterValidator(_printable),
]
ProviderCustomerId = Annotated[
    ProviderReference,
    Field(
        description="the customer at the payment provider (Stripe: `cus_…`); null: none",
        examples=["cus_NffrFeUfNV2Hib"],
    ),
]
ProviderPaymentMethodId = Annotated[
    ProviderReference,
    Field(
        description="the payment method to charge (Stripe: `pm_…`); null: none",
        examples=["pm_1MqLiJLkdIwHu7ix"],
    ),
]


class CustomerCreate(RequestBody):
    currency: CurrencyCode
    timezone: TimezoneName = Field(
        default="UTC",
        description="an IANA zone: a new invoice's default due time is midnight there",
    )
    providerCustomerId: ProviderCustomerId | None = None  # noqa: N815
    providerPaymentMethodId: ProviderPaymentMethodId | None = None  # noqa: N815


#: the fields of a customer that `PATCH /rest/v1/customers/{id}` may change (wire: column)
CUSTOMER_CHANGEABLE: Final = {
    "providerCustomerId": "provider_customer_id",
    "providerPaymentMethodId": "provider_payment_method_id",
    "timezone": "timezone",
}


class CustomerPatch(RequestBody):
    """Only the fields present change; `null` clears a provider reference."""

    providerCustomerId: ProviderCustomerId | None = None  # noqa: N815
    providerPaymentMethodId: ProviderPaymentMethodId | None = None  # noqa: N815
    timezone: TimezoneName | None = Field(
        default=None,
        description="an IANA zone; invoices not yet due follow it (see the README)",
    )

    @model_validator(mode="before")
    @classmethod
    def _only_changeable(cls, data: object) -> object:
        if isinstance(data, dict):
            for name in data:
                if name not in CUSTOMER_CHANGEABLE:
                    raise PydanticCustomError(
                        "not_changeable",
                        "{field} cannot be changed; a PATCH changes only "
                        "providerCustomerId, providerPaymentMethodId and timezone",
                        {"field": str(name)[:100]},
                    )
            if "timezone" in data and data["timezone"] is None:
                raise PydanticCustomError(
                    "not_changeable",
                    "{field} cannot be null; give an IANA name such as 'UTC'",
                    {"field": "timezone"},
                )
        return data

    def changes(self) -> dict[str, str | None]:
        """The columns to set: only the fields the body named."""
        return {CUSTOMER_CHANGEABLE[f]: getattr(self, f) for f in sorted(self.model_fields_set)}


class InvoiceCreate(RequestBody):
    customerId: Id = Field(description="the customer to charge")  # noqa: N815 (camelCase wire)
    amount: MoneyIn = Field(description="in the customer's currency")
    dueAt: DueAt | None = Field(  # noqa: N815
        default=None,
        description="when it may be charged; default: the next first of the month at midnight "
        "in the customer's time zone",
    )


class MoneyRead(BaseModel):
    value: Annotated[
        Decimal,
        WithJsonSchema(
            {
                "type": "number",
                "description": "exact, with exactly the currency's decimals "
                "(89.52 EUR, 1000 JPY, 12.345 KWD); read it as a decimal, never a float",
                "examples": [89.52],
            }
        ),
    ]
    currency: CurrencyCode


class CustomerRead(BaseModel):
    id: int
    currency: CurrencyCode
    timezone: str
    providerCustomerId: str | None  # noqa: N815
    providerPaymentMethodId: str | None  # noqa: N815
    creditBalance: MoneyRead  # noqa: N815


class InvoiceLineRead(BaseModel):
    id: int
    kind: str = Field(
        description="`subscription` (a period), `proration` (days at a new plan), `credit` "
        "(unused days given back, negative), `balance` (the customer's credit used, negative), "
        "`manual` (an invoice made with POST /rest/v1/invoices); an open set"
    )
    subscriptionId: int | None  # noqa: N815
    planId: int | None  # noqa: N815
    description: str
    periodStart: date | None  # noqa: N815
    periodEnd: date | None  # noqa: N815
    quantity: int | None
    amount: MoneyRead


class InvoiceRead(BaseModel):
    id: int
    customerId: int  # noqa: N815
    amount: MoneyRead
    status: InvoiceStatus
    dueAt: datetime  # noqa: N815
    attemptCount: int  # noqa: N815
    lastFailure: FailureReason | None  # noqa: N815
    nextAttemptAt: datetime | None  # noqa: N815
    lines: list[InvoiceLineRead] = Field(
        description="What the invoice is made of; the amounts sum to the invoice's `amount`"
    )


class ErrorBody(BaseModel):
    error: str = Field(description="the error code, stable: what a program tests")
    message: str = Field(description="what went wrong, for people")
    field: str | None = Field(
        default=None, description="the field, parameter or header at fault, when one is"
    )


def customer_json(c: Customer) -> dict[str, Any]:
    return {
        "id": c.id,
        "currency": c.currency.value,
        "timezone": c.timezone,
        "providerCustomerId": c.provider_customer_id,
        "providerPaymentMethodId": c.provider_payment_method_id,
        "creditBalance": {"value": c.credit.value, "currency": c.currency.value},
    }


def invoice_json(i: Invoice, lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The invoice with its lines (`InvoiceRepository.lines_of`): one shape for the API
    and the events (domain/events.py)."""
    return {**invoice_data(i), "lines": lines}


def _error_answer(status: int, what: str) -> dict[str, Any]:
    """One error answer of the OpenAPI document, naming every code of its status."""
    codes = ", ".join(f"`{code}`" for code, (st, _d) in error_codes().items() if st == status)
    return {"model": ErrorBody, "description": f"{what}: {codes}"}


ERROR_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    400: _error_answer(400, "malformed JSON, a body over the limit or a malformed header"),
    401: _error_answer(401, "missing, malformed or unknown token"),
    403: _error_answer(403, "a read token asked to write"),
    404: _error_answer(404, "no such resource"),
    409: _error_answer(409, "the resource's state does not allow this, or a conflict"),
    422: _error_answer(422, "a field failed validation or names what does not exist"),
}


# -- billing ---------------------------------------------------------------------

Note = Annotated[FreeText, Field(max_length=2000, description="why, for the audit trail")]
#: the provider's charge id (invoice_actions.charge_id, charge_attempts.charge_id: 255)
ChargeId = Annotated[SingleLine, Field(min_length=1, max_length=255, examples=["ch_1a2b3c"])]


class BillingTrigger(RequestBody):
    trigger: Literal["api", "cli"] = Field(
        default="api", description="who opened the run, as the run and `run.opened` say it"
    )


class ActionBody(RequestBody):
    note: Note | None = None


#: the filter fields of a bulk action (wire name: InvoiceFilter field)
BULK_FILTER_FIELDS: Final = ("status", "lastFailure", "customerId")


class InvoiceFilterIn(RequestBody):
    """Which invoices a bulk action takes: every field given must match (at least one)."""

    status: InvoiceStatus | None = Field(default=None, description="only invoices of this status")
    lastFailure: FailureReason | None = Field(  # noqa: N815
        default=None, description="only invoices whose last failure is this"
    )
    customerId: Id | None = Field(  # noqa: N815
        default=None, description="only this customer's invoices"
    )


class BulkActionBody(RequestBody):
    """`{"filter": {"status", "lastFailure", "customerId"}, "note"}`; the filter's fields
    may also stand at the top level, beside `note`."""

    filter: InvoiceFilterIn | None = Field(
        default=None, description="which invoices; or give its fields at the top level"
    )
    status: InvoiceStatus | None = Field(default=None, description="as `filter.status`")
    lastFailure: FailureReason | None = Field(  # noqa: N815
        default=None, description="as `filter.lastFailure`"
    )
    customerId: Id | None = Field(  # noqa: N815
        default=None, description="as `filter.customerId`"
    )
    note: Note | None = None

    @model_validator(mode="after")
    def _one_filter(self) -> BulkActionBody:
        top = [f for f in BULK_FILTER_FIELDS if getattr(self, f) is not None]
        if self.filter is not None and top:
            raise PydanticCustomError(
                "not_changeable",
                "give the filter's fields either in filter or at the top level, not both",
                {"field": "filter"},
            )
        inner = self.filter or self
        if all(getattr(inner, f) is None for f in BULK_FILTER_FIELDS):
            raise PydanticCustomError(
                "not_changeable",
                "a bulk action needs at least one filter field: status, lastFailure or "
                "customerId (an action on every invoice is refused)",
                {"field": "filter"},
            )
        return self

    def wanted(self) -> InvoiceFilter:
        inner = self.filter or self
        return InvoiceFilter(inner.status, inner.lastFailure, inner.customerId)

    def normalized(self) -> dict[str, Any]:
        """The request as its Idempotency-Key's hash sees it (either shape alike)."""
        inner = self.filter or self
        values = {f: getattr(inner, f) for f in BULK_FILTER_FIELDS}
        return {
            "filter": {f: v.value if isinstance(v, Enum) else v for f, v in values.items()},
            "note": self.note,
        }


class BulkResultRead(BaseModel):
    matched: int = Field(description="invoices that matched the filter")
    acted: int = Field(description="of them, retried or voided (each in the actions)")
    skipped: int = Field(description="of them, whose status did not allow the action")


#: an attempt's number (charge_attempts.number, invoices.attempt_count: 32-bit)
AttemptNumber = Annotated[
    StrictInt,
    Field(
        ge=1,
        le=2**31 - 1,
        description="the attempt number the person decided about (GET .../attempts); "
        "refused with 409 invalid_state, naming the current attempt, unless it is still "
        "the invoice's open attempt in REVIEW",
    ),
]


class ResolveBody(RequestBody):
    charged: StrictBool = Field(
        description="what the provider says: true, it charged (the invoice becomes PAID); "
        "false, nothing was charged (PENDING, charged again under a new key)"
    )
    chargeId: ChargeId | None = Field(  # noqa: N815
        default=None, description="the provider's charge id; required when `charged` is true"
    )
    note: Note | None = None
    attempt: AttemptNumber | None = None

    @model_validator(mode="after")
    def _charge_id_when_charged(self) -> ResolveBody:
        if self.charged and not self.chargeId:
            raise ValueError("chargeId is required when charged is true")
        if not self.charged and self.chargeId:
            raise ValueError("chargeId only applies when charged is true")
        return self


class RunCounts(BaseModel):
    due: int
    paid: int
    failed: int
    review: int
    rescheduled: int
    void: int


class RunRead(BaseModel):
    id: int
    trigger: Literal["schedule", "api", "cli", "retry"]
    status: Literal["running", "completed"]
    startedAt: datetime  # noqa: N815
    completedAt: datetime | None  # noqa: N815
    pausedReason: str | None  # noqa: N815
    counts: RunCounts
    collected: list[MoneyRead]


class AnswerRead(BaseModel):
    """One answer of the provider to an attempt, in the order they came."""

    outcome: str
    chargeId: str | None  # noqa: N815
    runId: int | None  # noqa: N815
    answeredAt: datetime  # noqa: N815


class ReconciliationRead(BaseModel):
    """What reconciliation asked the provider about an attempt in REVIEW, and its answer."""

    askedAt: datetime  # noqa: N815
    lastAskedAt: datetime  # noqa: N815
    asks: int = Field(description="times this same answer was given")
    result: Literal["charged", "not_charged", "cannot_tell"] = Field(
        description="what the provider said"
    )
    chargeId: str | None  # noqa: N815
    detail: str = Field(description="what was asked and answered, in words")
    outcome: Literal["paid", "pending", "review", "deferred", "superseded"] = Field(
        description="what it led to: PAID, PENDING (a new attempt next), stays in REVIEW "
        "(for a person, or asked again later), or the invoice had changed meanwhile"
    )


class AttemptRead(BaseModel):
    number: int
    idempotencyKey: str  # noqa: N815
    startedAt: datetime  # noqa: N815
    finishedAt: datetime | None  # noqa: N815
    outcome: str | None
    chargeId: str | None  # noqa: N815
    declineCode: str | None = Field(  # noqa: N815
        description="the provider's decline code when the outcome is card_declined"
    )
    runId: int | None  # noqa: N815
    sends: int
    providerCustomerId: str | None = Field(  # noqa: N815
        description="the customer at the provider this attempt was sent to (Stripe's "
        "cus_…), as recorded at its first send; its repeats, reconciliation and the audit "
        "use it, not the customer's current one"
    )
    providerPaymentMethodId: str | None = Field(  # noqa: N815
        description="the payment method this attempt was sent with (Stripe's pm_…), as "
        "recorded at its first send"
    )
    referencesRecorded: bool = Field(  # noqa: N815
        description="false for an attempt written before attempts kept their references: "
        "what it was sent with is not known (reconciliation cannot tell; a person checks)"
    )
    answers: list[AnswerRead]
    reconciliations: list[ReconciliationRead]


class ActionRead(BaseModel):
    """One thing a person did to an invoice (retry, resolve, void), as recorded."""

    id: int
    actor: str = Field(description="the name of the API token that did it")
    action: Literal["retried", "resolved_charged", "resolved_not_charged", "voided"]
    fromStatus: InvoiceStatus  # noqa: N815
    toStatus: InvoiceStatus  # noqa: N815
    note: str | None
    chargeId: str | None  # noqa: N815
    createdAt: datetime  # noqa: N815


class CallerTokenRead(BaseModel):
    """The caller's own token: its name and scope (never the token itself)."""

    name: str
    scope: Literal["read", "write"]


class RelayHealthRead(BaseModel):
    """This process's outbox relay (null: it runs none, e.g. `serve --no-relay`)."""

    state: Literal["running", "failing"]
    failingSince: datetime | None  # noqa: N815
    lastError: str | None  # noqa: N815


class DestinationBacklogRead(BaseModel):
    id: int
    kind: Literal["webhook", "amqp"]
    origin: str
    status: Literal["enabled", "disabled", "retired", "deleted"]
    undelivered: int
    oldestUndeliveredEventId: str | None  # noqa: N815
    oldestUndeliveredAt: datetime | None  # noqa: N815


class OutboxRead(BaseModel):
    destinations: list[DestinationBacklogRead]
    notFannedOut: int  # noqa: N815
    oldestNotFannedOutAt: datetime | None  # noqa: N815


class StatusRead(BaseModel):
    charging: Literal["running", "paused"]
    pausedReason: str | None  # noqa: N815
    pausedSince: datetime | None  # noqa: N815
    schedule: Literal["automatic", "external"]
    openRuns: list[int]  # noqa: N815
    dueBacklog: int  # noqa: N815
    token: CallerTokenRead  # the caller's own token
    relay: RelayHealthRead | None
    outbox: OutboxRead


def reconciliation_json(row: Any) -> dict[str, Any]:
    """What reconciliation asked the provider about an attempt and what it answered."""
    return {
        "askedAt": rfc3339(row.asked_at),
        "lastAskedAt": rfc3339(row.last_asked_at),
        "asks": row.asks,
        "result": row.result,
        "chargeId": row.charge_id,
        "detail": row.detail,
        "outcome": row.outcome,
    }


def attempt_json(
    row: Any, answers: list[Any], reconciliations: Sequence[Any] = ()
) -> dict[str, Any]:
    return {
        "number": row.number,
        "idempotencyKey": row.idempotency_key,
        "startedAt": rfc3339(row.started_at),
        "finishedAt": rfc3339(row.finished_at) if row.finished_at else None,
        "outcome": row.outcome,
        "chargeId": row.charge_id,
        "declineCode": row.decline_code,
        "runId": row.run_id,
        "sends": row.sends,
        "providerCustomerId": row.provider_customer_id,
        "providerPaymentMethodId": row.provider_payment_method_id,
        "referencesRecorded": bool(row.references_recorded),
        "answers": [
            {
                "outcome": a.outcome,
                "chargeId": a.charge_id,
                "runId": a.run_id,
                "answeredAt": rfc3339(a.answered_at),
            }
            for a in answers
            if a.attempt == row.number
        ],
        "reconciliations": [
            reconciliation_json(r) for r in reconciliations if r.attempt == row.number
        ],
    }


def action_json(row: ActionRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "actor": row.actor,
        "action": row.action,
        "fromStatus": row.from_status,
        "toStatus": row.to_status,
        "note": row.note,
        "chargeId": row.charge_id,
        "createdAt": rfc3339(row.created_at),
    }


# -- plans and subscriptions (issue 21) -----------------------------------------------

PriceIn = Annotated[
    Decimal,
    BeforeValidator(_price),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": AMOUNT_PATTERN},
                {"type": "number", "minimum": 0, "maximum": MAX_MINOR},
            ],
            "description": "the price of one unit for one period: a decimal string or a JSON "
            "number, 0 or more, with at most the currency's own decimals (EUR 2, JPY 0, KWD 3)",
            "examples": ["30.00"],
        }
    ),
]


class PriceMoneyIn(RequestBody):
    currency: CurrencyCode  # first: the value is validated against its decimals
    value: PriceIn


_PLAN_CODE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _plan_code(value: str) -> str:
    if not _PLAN_CODE.fullmatch(value):
        raise ValueError(
            f"must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-' "
            f"(it has {len(value)} characters)"
        )
    return value


#: a plan's code (plans.code: 64), unique
PlanCode = Annotated[
    SingleLine,
    AfterValidator(_plan_code),
    WithJsonSchema(
        {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$", "examples": ["pro-monthly"]}
    ),
]
#: a plan's name for people (plans.name: 200)
PlanName = Annotated[SingleLine, Field(min_length=1, max_length=200, examples=["Pro"])]
IntervalName = Literal["day", "week", "month", "year"]
#: intervalCount, whose range depends on the interval (checked by the model)
IntervalCount = Annotated[
    StrictInt, Field(ge=1, le=365, description="1-365 days, 1-52 weeks, 1-24 months, 1-5 years")
]
TrialDays = Annotated[StrictInt, Field(ge=0, le=730, description="trial days, 0-730")]
#: the largest quantity of a subscription
MAX_QUANTITY: Final = 1_000_000
Quantity = Annotated[StrictInt, Field(ge=1, le=MAX_QUANTITY, description="1-1,000,000")]
AnchorName = Literal["calendar", "anniversary"]


def _field_error(field: str, message: str) -> PydanticCustomError:
    """A body-level check's error that names its own field (api/errors.py)."""
    return PydanticCustomError("not_changeable", "{message}", {"field": field, "message": message})


class PlanCreate(RequestBody):
    code: PlanCode = Field(description="a unique code for programs (409 already_exists if taken)")
    name: PlanName = Field(description="the plan's name, for people and invoice lines")
    amount: PriceMoneyIn = Field(description="the price of one period, for a quantity of 1")
    interval: IntervalName = Field(description="the unit of a billing period")
    intervalCount: IntervalCount = 1  # noqa: N815
    trialDays: TrialDays = 0  # noqa: N815

    @model_validator(mode="after")
    def _count_in_range(self) -> PlanCreate:
        try:
            check_interval(self.interval, self.intervalCount)
        except PeriodRuleError as exc:
            raise _field_error(exc.field, str(exc)) from None
        return self


_LOCAL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _local_date(value: object) -> object:
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _LOCAL_DATE.fullmatch(value):
        raise ValueError("must be a date written YYYY-MM-DD, such as 2027-01-14")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value} is no date of the calendar") from None


#: a calendar date in the customer's time zone
LocalDate = Annotated[
    date,
    PlainValidator(_local_date),
    PlainSerializer(lambda d: d.isoformat(), return_type=str),
    WithJsonSchema({"type": "string", "format": "date", "examples": ["2027-01-14"]}),
]


class SubscriptionCreate(RequestBody):
    customerId: Id = Field(description="the customer who subscribes")  # noqa: N815
    planId: Id = Field(  # noqa: N815
        description="the plan: not archived, priced in the customer's currency"
    )
    quantity: Quantity = 1
    startDate: LocalDate | None = Field(  # noqa: N815
        default=None,
        description="a date in the customer's time zone (default: today there); at most 366 "
        "days and 24 periods back, at most 5 years ahead",
    )
    billingAnchor: AnchorName | None = Field(  # noqa: N815
        default=None,
        description="default: calendar when the plan's interval has a calendar, else anniversary",
    )
    trialDays: TrialDays | None = Field(  # noqa: N815
        default=None, description="default: the plan's"
    )


class SubscriptionChange(RequestBody):
    planId: Id | None = Field(  # noqa: N815
        default=None, description="the new plan (same currency); default: the same plan"
    )
    quantity: Quantity | None = None
    effective: Literal["now", "period_end"] = Field(
        default="period_end",
        description="`period_end`: a pending change, applied when the current period ends; "
        "`now`: at once (after billing started, the unused days credited or invoiced)",
    )

    @model_validator(mode="after")
    def _something_to_change(self) -> SubscriptionChange:
        if self.planId is None and self.quantity is None:
            raise _field_error("planId", "a change needs planId, quantity or both")
        return self


class SubscriptionCancel(RequestBody):
    at: Literal["now", "period_end"] = Field(
        default="period_end",
        description="`period_end`: at the end of the current period (a pending cancel, which "
        "`reactivate` takes back); `now`: today",
    )
    prorate: StrictBool = Field(
        default=False,
        description="with `at: now`, the unused billed days (today through the period's end) "
        "go to the customer's credit",
    )


class PlanRead(BaseModel):
    id: int
    code: str
    name: str
    amount: MoneyRead
    interval: IntervalName
    intervalCount: int  # noqa: N815
    trialDays: int  # noqa: N815
    createdAt: datetime  # noqa: N815
    archivedAt: datetime | None  # noqa: N815


class PendingChangeRead(BaseModel):
    planId: int  # noqa: N815
    quantity: int
    effectiveDate: date  # noqa: N815


class SubscriptionRead(BaseModel):
    id: int
    customerId: int  # noqa: N815
    planId: int  # noqa: N815
    quantity: int
    status: Literal["scheduled", "trialing", "active", "canceled"]
    billingAnchor: AnchorName  # noqa: N815
    startDate: date  # noqa: N815
    trialEndDate: date | None  # noqa: N815
    currentPeriodStart: date | None  # noqa: N815
    currentPeriodEnd: date | None  # noqa: N815
    cancelAt: date | None  # noqa: N815
    canceledAt: datetime | None  # noqa: N815
    pendingChange: PendingChangeRead | None  # noqa: N815
    createdAt: datetime  # noqa: N815


# -- customer credit (issue 21) ---------------------------------------------------------


def _adjustment(value: object, info: ValidationInfo) -> Decimal:
    """A signed amount, not zero, with at most the decimals of the currency beside it."""
    amount = _amount_in(value, info)
    if amount == 0:
        raise ValueError("amount must not be zero (positive adds credit, negative takes it)")
    return amount


AdjustmentIn = Annotated[
    Decimal,
    BeforeValidator(_adjustment),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^-?[0-9]{1,15}(\.[0-9]{1,4})?$"},
                {"type": "number", "minimum": -MAX_MINOR, "maximum": MAX_MINOR},
            ],
            "description": "positive adds to the customer's credit, negative takes from it "
            "(never below zero); a decimal string or a JSON number with at most the "
            "currency's own decimals (EUR 2, JPY 0, KWD 3), not zero",
            "examples": ["-5.00"],
        }
    ),
]


class AdjustmentMoneyIn(RequestBody):
    currency: CurrencyCode  # first: the value is validated against its decimals
    value: AdjustmentIn


#: a credit entry's note (1-500 characters, one line)
CreditNote = Annotated[
    SingleLine,
    Field(min_length=1, max_length=500, examples=["goodwill for the outage of 2027-01-12"]),
]


class CreditAdjustmentCreate(RequestBody):
    amount: AdjustmentMoneyIn
    note: CreditNote


class CreditEntryRead(BaseModel):
    id: int
    customerId: int  # noqa: N815
    amount: MoneyRead
    balanceAfter: MoneyRead  # noqa: N815
    reason: str = Field(description="change, cancel, invoice or adjustment (an open set)")
    changeId: int | None  # noqa: N815
    subscriptionId: int | None  # noqa: N815
    invoiceId: int | None  # noqa: N815
    note: str | None
    actor: str
    createdAt: datetime  # noqa: N815


def credit_entry_json(e: CreditEntry) -> dict[str, Any]:
    code = e.currency.value
    return {
        "id": e.id,
        "customerId": e.customer_id,
        "amount": {"value": e.amount.value, "currency": code},
        "balanceAfter": {"value": e.balance.value, "currency": code},
        "reason": e.reason,
        "changeId": e.change_id,
        "subscriptionId": e.subscription_id,
        "invoiceId": e.invoice_id,
        "note": e.note,
        "actor": e.actor,
        "createdAt": rfc3339(e.created_at),
    }
