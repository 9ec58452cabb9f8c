"""Customers: one currency per account, and the time zone their month starts in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib.resources import files
from zoneinfo import ZoneInfo, available_timezones

from antaeus.domain.money import Currency, Money

DEFAULT_TIMEZONE = "UTC"


class UnknownTimezoneError(ValueError):
    pass


_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@lru_cache(maxsize=1)
def _known_timezones() -> frozenset[str]:
    """IANA zone names: the tz database's own list, not whatever files the host has."""
    try:
        listed = files("tzdata").joinpath("zones").read_text(encoding="utf-8").split()
    except (ModuleNotFoundError, FileNotFoundError):  # pragma: no cover - tzdata is a dependency
        listed = list(available_timezones())
    return (frozenset(listed) - _NOT_ZONES) | {"UTC"}


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The IANA zone called `name`, refusing anything the tz database does not know."""
    if name not in _known_timezones():
        raise UnknownTimezoneError(
            f"unknown time zone {name!r}; use an IANA name such as 'Europe/Copenhagen' or 'UTC'"
        )
    return ZoneInfo(name)


@dataclass(frozen=True, slots=True)
class Customer:
    id: int
    currency: Currency
    timezone: str = DEFAULT_TIMEZONE
    created_at: datetime | None = None
    provider_customer_id: str | None = None  # the customer at the provider (`cus_…`)
    provider_payment_method_id: str | None = None  # the payment method to charge (`pm_…`)
    credit_minor: int = 0  # the customer's credit (issue 21), minor units, >= 0

    @property
    def credit(self) -> Money:
        """The customer's credit balance, in its currency (`creditBalance`)."""
        return Money.from_minor(self.credit_minor, self.currency)
