"""The billing calendar: midnight on the first of the month in the customer's zone, in UTC."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from antaeus.domain.calendar import (
    current_first_of_month,
    first_of_month_utc,
    next_first_of_month,
    shift_months,
)
from antaeus.domain.customer import UnknownTimezoneError, zone

CPH = "Europe/Copenhagen"
NYC = "America/New_York"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def assert_utc(moment: datetime) -> None:
    assert moment.tzinfo is not None
    assert moment.utcoffset() == timedelta(0)


# --- zone ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["UTC", CPH, NYC])
def test_zone_accepts_iana_names(name: str) -> None:
    tz = zone(name)
    assert isinstance(tz, ZoneInfo)
    assert tz.key == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../etc/passwd",
        "/etc/passwd",
        "Europe/../../etc/passwd",
        "Mars/Olympus_Mons",
        "Europe/Nowhere",
        " Europe/Copenhagen",
        "Europe/Copenhagen ",
        "Europe/Copenhagen\n",
        "Copenhagen",
    ],
)
def test_zone_refuses_unknown_names(name: str) -> None:
    with pytest.raises(UnknownTimezoneError, match="unknown time zone"):
        zone(name)


def test_unknown_timezone_error_is_a_value_error() -> None:
    assert issubclass(UnknownTimezoneError, ValueError)


CALENDAR_FUNCTIONS: list[tuple[str, Callable[[str], datetime]]] = [
    ("first_of_month_utc", lambda tz: first_of_month_utc(2026, 12, tz)),
    ("next_first_of_month", lambda tz: next_first_of_month(utc(2026, 11, 22, 12), tz)),
    ("current_first_of_month", lambda tz: current_first_of_month(utc(2026, 11, 22, 12), tz)),
]


@pytest.mark.parametrize("name", ["", "../etc/passwd", "Europe/Nowhere"])
@pytest.mark.parametrize(
    "call", [f for _, f in CALENDAR_FUNCTIONS], ids=[n for n, _ in CALENDAR_FUNCTIONS]
)
def test_calendar_refuses_unknown_zones(name: str, call: Callable[[str], datetime]) -> None:
    with pytest.raises(UnknownTimezoneError):
        call(name)


# --- first_of_month_utc -------------------------------------------------------------


@pytest.mark.parametrize(
    ("year", "month", "tz", "expected"),
    [
        (2026, 12, "UTC", utc(2026, 12, 1)),
        (2026, 12, CPH, utc(2026, 11, 30, 23)),  # winter: CET, UTC+1
        (2026, 7, CPH, utc(2026, 6, 30, 22)),  # summer: CEST, UTC+2
        (2026, 12, NYC, utc(2026, 12, 1, 5)),  # winter: EST, UTC-5
        (2026, 7, NYC, utc(2026, 7, 1, 4)),  # summer: EDT, UTC-4
        (2026, 1, CPH, utc(2025, 12, 31, 23)),  # the local new year is still last year in UTC
        (2028, 3, "UTC", utc(2028, 3, 1)),
        (2026, 7, "Asia/Kolkata", utc(2026, 6, 30, 18, 30)),  # half-hour offset
        (2026, 7, "Pacific/Kiritimati", utc(2026, 6, 30, 10)),  # UTC+14
        (2026, 7, "Pacific/Pago_Pago", utc(2026, 7, 1, 11)),  # UTC-11
    ],
)
def test_first_of_month_utc(year: int, month: int, tz: str, expected: datetime) -> None:
    moment = first_of_month_utc(year, month, tz)
    assert moment == expected
    assert_utc(moment)
    local = moment.astimezone(zone(tz))
    assert (local.year, local.month, local.day, local.hour, local.minute) == (
        year,
        month,
        1,
        0,
        0,
    )


def test_first_of_month_where_local_midnight_does_not_exist() -> None:
    # Paraguay sprang forward at 00:00 on Sunday 1 October 2023: the day began at 01:00
    # (UTC-3). The first of the month is then the first moment of that day.
    moment = first_of_month_utc(2023, 10, "America/Asuncion")
    assert moment == utc(2023, 10, 1, 4)
    local = moment.astimezone(zone("America/Asuncion"))
    assert (local.day, local.hour) == (1, 1)
    assert current_first_of_month(utc(2023, 10, 1, 4, 30), "America/Asuncion") == moment
    assert next_first_of_month(utc(2023, 9, 30, 12), "America/Asuncion") == moment


def test_clock_change_back_across_midnight_on_the_first() -> None:
    tz = "America/St_Johns"
    first = first_of_month_utc(2009, 11, tz)
    assert first == utc(2009, 11, 1, 2, 30)  # 00:00 NDT, the first time midnight struck
    now = utc(2009, 11, 1, 3)  # 31 Oct 23:30 NST, after that midnight
    assert now.astimezone(zone(tz)).day == 31
    assert next_first_of_month(now, tz) > now
    assert current_first_of_month(now, tz) <= now < next_first_of_month(now, tz)


# --- next_first_of_month ------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "tz", "expected"),
    [
        # Copenhagen, winter: 1 Dec 00:00 local == 30 Nov 23:00 UTC
        (utc(2026, 11, 15, 12), CPH, utc(2026, 11, 30, 23)),
        # Copenhagen, summer: 1 Jul 00:00 local == 30 Jun 22:00 UTC
        (utc(2026, 6, 15, 12), CPH, utc(2026, 6, 30, 22)),
        # New York: 05:00 UTC in winter, 04:00 UTC in summer
        (utc(2026, 11, 15, 12), NYC, utc(2026, 12, 1, 5)),
        (utc(2026, 6, 15, 12), NYC, utc(2026, 7, 1, 4)),
        # 31 January -> 1 February
        (utc(2026, 1, 31, 12), "UTC", utc(2026, 2, 1)),
        (utc(2026, 1, 31, 23, 59, 59), "UTC", utc(2026, 2, 1)),
        (utc(2026, 1, 31, 12), CPH, utc(2026, 1, 31, 23)),
        # leap year 2028: 29 February is not a first
        (utc(2028, 2, 28, 12), "UTC", utc(2028, 3, 1)),
        (utc(2028, 2, 29), "UTC", utc(2028, 3, 1)),
        (utc(2028, 2, 29, 12), "UTC", utc(2028, 3, 1)),
        (utc(2028, 2, 29, 12), CPH, utc(2028, 2, 29, 23)),
        (utc(2027, 2, 28, 12), "UTC", utc(2027, 3, 1)),
        # December -> January of the next year
        (utc(2026, 12, 15), "UTC", utc(2027, 1, 1)),
        (utc(2026, 12, 31, 23, 59), "UTC", utc(2027, 1, 1)),
        (utc(2026, 12, 15), CPH, utc(2026, 12, 31, 23)),
        (utc(2026, 12, 15), NYC, utc(2027, 1, 1, 5)),
        # The UTC date is already the next month, the local one is not yet.
        (utc(2026, 12, 1, 3), NYC, utc(2026, 12, 1, 5)),
        # The UTC date is still last month, the local one is already the new month.
        (utc(2026, 11, 30, 23, 30), CPH, utc(2026, 12, 31, 23)),
        # Days on which the clocks change
        (utc(2026, 3, 29, 1, 30), CPH, utc(2026, 3, 31, 22)),
        (utc(2026, 10, 25, 1, 30), CPH, utc(2026, 10, 31, 23)),
        (utc(2026, 3, 8, 7), NYC, utc(2026, 4, 1, 4)),
        (utc(2026, 11, 1, 6), NYC, utc(2026, 12, 1, 5)),
    ],
)
def test_next_first_of_month(now: datetime, tz: str, expected: datetime) -> None:
    moment = next_first_of_month(now, tz)
    assert moment == expected
    assert_utc(moment)


@pytest.mark.parametrize(
    ("first", "tz", "following"),
    [
        (utc(2026, 11, 30, 23), CPH, utc(2026, 12, 31, 23)),
        (utc(2026, 6, 30, 22), CPH, utc(2026, 7, 31, 22)),
        (utc(2026, 12, 1, 5), NYC, utc(2027, 1, 1, 5)),
        (utc(2026, 2, 1), "UTC", utc(2026, 3, 1)),
        (utc(2028, 3, 1), "UTC", utc(2028, 4, 1)),
        (utc(2027, 1, 1), "UTC", utc(2027, 2, 1)),
    ],
)
def test_exactly_at_midnight_on_the_first_gives_the_next_months_first(
    first: datetime, tz: str, following: datetime
) -> None:
    assert next_first_of_month(first, tz) == following
    assert current_first_of_month(first, tz) == first
    # one microsecond earlier, the first is still ahead
    assert next_first_of_month(first - timedelta(microseconds=1), tz) == first


def test_next_first_of_month_does_not_depend_on_the_offset_now_is_written_in() -> None:
    instant = utc(2026, 11, 30, 22, 30)
    for offset in (-10, -5, 0, 1, 9, 14):
        written = instant.astimezone(timezone(timedelta(hours=offset)))
        assert next_first_of_month(written, CPH) == utc(2026, 11, 30, 23)
        assert current_first_of_month(written, CPH) == utc(2026, 10, 31, 23)


def test_next_first_of_month_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_first_of_month(datetime(2026, 11, 22, 12), "UTC")


# --- current_first_of_month ---------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "tz", "expected"),
    [
        (utc(2026, 11, 22, 12), "UTC", utc(2026, 11, 1)),
        (utc(2026, 11, 22, 12), CPH, utc(2026, 10, 31, 23)),
        (utc(2026, 7, 15), CPH, utc(2026, 6, 30, 22)),
        (utc(2026, 12, 15), NYC, utc(2026, 12, 1, 5)),
        (utc(2026, 7, 15), NYC, utc(2026, 7, 1, 4)),
        (utc(2026, 1, 31, 12), "UTC", utc(2026, 1, 1)),
        (utc(2028, 2, 29, 12), "UTC", utc(2028, 2, 1)),
        # UTC already in December, New York still in November
        (utc(2026, 12, 1, 3), NYC, utc(2026, 11, 1, 4)),
        # UTC still in November, Copenhagen already in December
        (utc(2026, 11, 30, 23, 30), CPH, utc(2026, 11, 30, 23)),
        # New year
        (utc(2026, 12, 31, 23, 30), CPH, utc(2026, 12, 31, 23)),
        (utc(2027, 1, 1, 3), NYC, utc(2026, 12, 1, 5)),
    ],
)
def test_current_first_of_month(now: datetime, tz: str, expected: datetime) -> None:
    moment = current_first_of_month(now, tz)
    assert moment == expected
    assert_utc(moment)


def test_current_first_of_month_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        current_first_of_month(datetime(2026, 11, 22, 12), "UTC")


# --- properties ---------------------------------------------------------------------

# Zones whose midnight on the first of the month happens exactly once from 2000 on
# (no clock change crosses it; see the St. John's case below for one that did).
ZONES = [
    "UTC",
    CPH,
    NYC,
    "Asia/Kolkata",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/Halifax",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
]

moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2090, 12, 31), timezones=st.just(UTC)
)


@given(moments, st.sampled_from(ZONES))
def test_now_lies_between_the_current_and_the_next_first(now: datetime, tz: str) -> None:
    current = current_first_of_month(now, tz)
    following = next_first_of_month(now, tz)
    assert current <= now < following
    assert_utc(current)
    assert_utc(following)
    for moment in (current, following):
        local = moment.astimezone(zone(tz))
        assert (local.day, local.hour, local.minute, local.second, local.microsecond) == (
            1,
            0,
            0,
            0,
            0,
        )
    # consecutive months, with no first in between
    cur_local = current.astimezone(zone(tz))
    next_local = following.astimezone(zone(tz))
    assert shift_months(cur_local.year, cur_local.month, 1) == (next_local.year, next_local.month)
    assert next_first_of_month(current, tz) == following
    assert current_first_of_month(following - timedelta(microseconds=1), tz) == current
    assert following - current <= timedelta(days=31, hours=2)


@given(moments, st.sampled_from(ZONES))
def test_next_first_is_strictly_after_now(now: datetime, tz: str) -> None:
    following = next_first_of_month(now, tz)
    assert following > now
    assert following - now <= timedelta(days=31, hours=2)
    assert next_first_of_month(following - timedelta(microseconds=1), tz) == following


# --- shift_months -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("year", "month", "delta", "expected"),
    [
        (2026, 12, 1, (2027, 1)),
        (2026, 1, -1, (2025, 12)),
        (2026, 3, -14, (2025, 1)),
        (2026, 5, 0, (2026, 5)),
        (2026, 11, 26, (2029, 1)),
    ],
)
def test_shift_months(year: int, month: int, delta: int, expected: tuple[int, int]) -> None:
    assert shift_months(year, month, delta) == expected


@given(
    st.integers(min_value=1900, max_value=2200),
    st.integers(min_value=1, max_value=12),
    st.integers(min_value=-600, max_value=600),
)
def test_shift_months_inverts_and_stays_in_range(year: int, month: int, delta: int) -> None:
    shifted = shift_months(year, month, delta)
    assert 1 <= shifted[1] <= 12
    assert shift_months(*shifted, -delta) == (year, month)
