"""The payment provider protocol.

    charge(request) -> Charged | Declined
        Charged     the customer's account was charged (with the provider's charge id)
        Declined    the balance did not allow it; nothing moved

    raises ProviderError, one of:
        CustomerNotFoundError   no such customer at the provider         (definite)
        CurrencyMismatchError   the amount's currency is not the account's (definite)
        RequestRejectedError    the provider refused the request as malformed (400)
        KeyReusedError          the key was used with another body (422)
        OutcomeUnknownError     network error, timeout, 5xx, unreadable answer:
                                the charge may have happened
        NotSentError            the request never left (connection refused, no
                                connection in time): nothing can have been charged
        RateLimitedError        429: nothing happened; retry after `retry_after`
        KeyInUseError           409: the key is being processed; retry after `retry_after`
        UnauthorizedError       401: the credential is refused; nothing happened
        CardDeclinedError       the card was declined for another reason than funds
                                (expired, generic decline, …): definite, with the
                                provider's decline code
        AuthenticationRequiredError  the customer must authenticate the payment
                                (3-D Secure, `requires_action`): definite

Before any call, `refusal(request)` says whether this provider cannot charge
the request at all (the customer lacks the payment method it needs, an amount
it refuses): such an invoice fails at once, without a call, and consumes no
attempt key.

Reconciliation (protocol 1.1): `find_charge(lookup)` asks the provider what
happened under an attempt's key: `ChargeFound` (it charged, with its charge
id), `NothingCharged` (the provider knows the key, or can prove no charge was
made under it), or `CannotTell` (it cannot say: unsupported, key beyond
retention, an error). Nothing is reconciled on a guess.

A provider declares whether it deduplicates idempotency keys and for how long;
one that cannot makes every unknown outcome go straight to REVIEW.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Protocol, TypeVar

from antaeus.domain.money import Money

#: A provider's charge id is 1 to 255 printable characters (no control characters):
#: anything else is not an answer of the protocol (an unknown outcome).
MAX_CHARGE_ID_LENGTH: Final = 255


def valid_charge_id(value: object) -> bool:
    """Whether `value` has the documented shape of a charge id."""
    return isinstance(value, str) and 0 < len(value) <= MAX_CHARGE_ID_LENGTH and value.isprintable()


_F = TypeVar("_F", bound=Callable[..., Any])


def refuses_nothing(method: _F) -> _F:
    """Marks a provider's `refusal` that answers None for every request, so that the
    worker need not ask it before each call (`never_refuses`)."""
    method.refuses_nothing = True  # type: ignore[attr-defined]
    return method


def never_refuses(provider: object) -> bool:
    """Whether `provider.refusal` is one marked `refuses_nothing` (a subclass that
    overrides it, or a `refusal` set on the object itself, is asked)."""
    method = getattr(type(provider), "refusal", None)
    own = getattr(provider, "__dict__", {})
    return getattr(method, "refuses_nothing", False) is True and "refusal" not in own


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    invoice_id: int
    customer_id: int
    amount: Money
    idempotency_key: str
    attempt: int = 1  # the attempt's number (Stripe's `antaeus_attempt` metadata)
    provider_customer_id: str | None = None  # e.g. Stripe's `cus_…`
    provider_payment_method_id: str | None = None  # e.g. Stripe's `pm_…`


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a provider will not be asked to charge a request (decided before any call)."""

    reason: str  # a FailureReason value: "payment_method_missing", "amount_not_chargeable"
    detail: str  # for a person: what is missing or refused


@dataclass(frozen=True, slots=True)
class Charged:
    charge_id: str
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Declined:
    replayed: bool = False


class ProviderError(Exception):
    """Base of every error a payment provider raises."""


class CustomerNotFoundError(ProviderError):
    pass


class CurrencyMismatchError(ProviderError):
    pass


class RequestRejectedError(ProviderError):
    pass


class KeyReusedError(ProviderError):
    pass


class OutcomeUnknownError(ProviderError):
    pass


class UnauthorizedError(ProviderError):
    pass


class NotSentError(ProviderError):
    """The request never reached the provider: nothing was sent, nothing charged."""


class CardDeclinedError(ProviderError):
    """A definite decline other than insufficient funds; `decline_code` is the provider's."""

    def __init__(self, decline_code: str, message: str = "") -> None:
        super().__init__(message or f"card declined: {decline_code}")
        self.decline_code = decline_code


class AuthenticationRequiredError(ProviderError):
    """The customer must act (authenticate the payment) before it can be charged."""


class _RetryAfterError(ProviderError):
    def __init__(self, retry_after: float, message: str = "") -> None:
        super().__init__(message or f"retry after {retry_after:g} s")
        self.retry_after = retry_after


class RateLimitedError(_RetryAfterError):
    pass


class KeyInUseError(_RetryAfterError):
    pass


@dataclass(frozen=True, slots=True)
class ChargeLookup:
    """What reconciliation asks a provider about one open attempt."""

    invoice_id: int
    customer_id: int
    amount: Money
    idempotency_key: str
    attempt: int
    attempt_open_since: datetime  # no charge under this key can be older
    provider_customer_id: str | None = None
    provider_payment_method_id: str | None = None


@dataclass(frozen=True, slots=True)
class ChargeFound:
    """The provider charged under the key."""

    charge_id: str
    detail: str = ""  # what was asked and answered, shown on the attempt


@dataclass(frozen=True, slots=True)
class NothingCharged:
    """The provider proves no charge was made under the key."""

    detail: str = ""


@dataclass(frozen=True, slots=True)
class CannotTell:
    """The provider cannot say; a person decides."""

    detail: str = ""


LookupResult = ChargeFound | NothingCharged | CannotTell


class PaymentProvider(Protocol):
    @property
    def deduplicates_keys(self) -> bool: ...

    @property
    def key_retention(self) -> timedelta: ...

    def refusal(self, request: ChargeRequest) -> Refusal | None: ...

    async def charge(self, request: ChargeRequest) -> Charged | Declined: ...

    async def find_charge(self, lookup: ChargeLookup) -> LookupResult: ...

    async def aclose(self) -> None: ...
