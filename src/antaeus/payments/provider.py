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

A provider declares whether it deduplicates idempotency keys and for how long;
one that cannot makes every unknown outcome go straight to REVIEW.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final, Protocol

from antaeus.domain.money import Money

#: A provider's charge id is 1 to 255 printable characters (no control characters):
#: anything else is not an answer of the protocol (an unknown outcome).
MAX_CHARGE_ID_LENGTH: Final = 255


def valid_charge_id(value: object) -> bool:
    """Whether `value` has the documented shape of a charge id."""
    return isinstance(value, str) and 0 < len(value) <= MAX_CHARGE_ID_LENGTH and value.isprintable()


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    invoice_id: int
    customer_id: int
    amount: Money
    idempotency_key: str


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


class _RetryAfterError(ProviderError):
    def __init__(self, retry_after: float, message: str = "") -> None:
        super().__init__(message or f"retry after {retry_after:g} s")
        self.retry_after = retry_after


class RateLimitedError(_RetryAfterError):
    pass


class KeyInUseError(_RetryAfterError):
    pass


class PaymentProvider(Protocol):
    @property
    def deduplicates_keys(self) -> bool: ...

    @property
    def key_retention(self) -> timedelta: ...

    async def charge(self, request: ChargeRequest) -> Charged | Declined: ...

    async def aclose(self) -> None: ...
