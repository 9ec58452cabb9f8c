"""Billing calendar: when "the first of the month" happens for a customer."""

from __future__ import annotations

from datetime import UTC, datetime

from antaeus.domain.customer import zone


def first_of_month_utc(year: int, month: int, timezone: str) -> datetime:
    """Midnight on the first of `year`-`month` in `timezone`, as a UTC moment."""
    local = datetime(year, month, 1, tzinfo=zone(timezone))
    return local.astimezone(UTC)


def next_first_of_month(now: datetime, timezone: str) -> datetime:
    """The first midnight on a first of the month in `timezone` strictly after `now`."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(zone(timezone))
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return first_of_month_utc(year, month, timezone)


def current_first_of_month(now: datetime, timezone: str) -> datetime:
    """Midnight on the first of the month `now` falls in, in `timezone` (<= now)."""
    local = now.astimezone(zone(timezone))
    return first_of_month_utc(local.year, local.month, timezone)


def shift_months(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1
