"""Customers: one currency per account, and the time zone their month starts in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from antaeus.domain.money import Currency

DEFAULT_TIMEZONE = "UTC"


class UnknownTimezoneError(ValueError):
    pass


@lru_cache(maxsize=1)
def _known_timezones() -> frozenset[str]:
    return frozenset(available_timezones()) | {"UTC"}


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
