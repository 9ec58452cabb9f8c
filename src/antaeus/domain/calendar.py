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
    _aware(now)
    local = now.astimezone(zone(timezone))
    year, month = shift_months(local.year, local.month, 1)
    moment = first_of_month_utc(year, month, timezone)
    while moment <= now:  # a clock set back across midnight on the first
        year, month = shift_months(year, month, 1)
        moment = first_of_month_utc(year, month, timezone)
    return moment


def current_first_of_month(now: datetime, timezone: str) -> datetime:
    """Midnight on the first of the month `now` falls in, in `timezone` (<= now)."""
    _aware(now)
    local = now.astimezone(zone(timezone))
    moment = first_of_month_utc(local.year, local.month, timezone)
    following = first_of_month_utc(*shift_months(local.year, local.month, 1), timezone)
    return following if following <= now else moment


def _aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")


def shift_months(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


def first_of_month_in_new_zone(due_at: datetime, old: str, new: str) -> datetime | None:
    """Where a due time set as "the first of the month" moves when its customer's zone
    changes from `old` to `new`: midnight on the same first of the month in `new`.

    None when `due_at` is not midnight on a first of the month in `old` (a moment
    given explicitly, which stays as it is).
    """
    _aware(due_at)
    local = due_at.astimezone(zone(old))
    if first_of_month_utc(local.year, local.month, old) != due_at:
        return None
    return first_of_month_utc(local.year, local.month, new)
