"""Billing periods (issue 21): intervals, calendar and anniversary anchors, first instants.

Properties over intervals, anchors and origins from 2024 to 2032, and the issue's
worked cases with their exact dates.
"""

from __future__ import annotations

import calendar as stdlib_calendar
import itertools
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from antaeus.domain.calendar import first_of_month_utc
from antaeus.domain.customer import UnknownTimezoneError, _known_timezones, zone
from antaeus.domain.periods import (
    CALENDAR_COUNTS,
    MAX_INTERVAL_COUNT,
    BillingAnchor,
    Interval,
    Period,
    PeriodRuleError,
    Schedule,
    add_months,
    billing_start,
    check_anchor,
    check_interval,
    check_start_date,
    check_trial_days,
    default_anchor,
    first_instant,
    has_calendar,
    local_date,
    trial_end_date,
)

ZONES = sorted(_known_timezones())
#: Zones with something to say: the extremes, a skipped midnight, a half-hour DST.
EDGE_ZONES = [
    "UTC",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "America/Havana",
    "America/Santiago",
    "Africa/Cairo",
    "Asia/Beirut",
    "Atlantic/Azores",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Europe/Copenhagen",
    "America/New_York",
]
zones = st.one_of(st.sampled_from(EDGE_ZONES), st.sampled_from(ZONES))
dates = st.dates(min_value=date(2024, 1, 1), max_value=date(2032, 12, 31))


@st.composite
def late_in_month(draw: st.DrawFn) -> date:
    """A date from 2024 to 2032 on the 29th, 30th or 31st."""
    year, month = draw(st.integers(2024, 2032)), draw(st.integers(1, 12))
    last = stdlib_calendar.monthrange(year, month)[1]
    if last < 29:  # February of a common year has no 29th: take March
        month, last = 3, 31
    return date(year, month, draw(st.integers(29, last)))


@st.composite
def schedules(draw: st.DrawFn, anchor: BillingAnchor | None = None) -> Schedule:
    interval = draw(st.sampled_from(list(Interval)))
    if anchor is BillingAnchor.CALENDAR:
        count = draw(st.sampled_from(sorted(CALENDAR_COUNTS[interval])))
    else:
        count = draw(st.integers(1, MAX_INTERVAL_COUNT[interval]))
    if anchor is None:
        choices = [BillingAnchor.ANNIVERSARY]
        if has_calendar(interval, count):
            choices.append(BillingAnchor.CALENDAR)
        anchor = draw(st.sampled_from(choices))
    return Schedule(interval, count, anchor, draw(dates))


def periods_up_to(schedule: Schedule, until: date) -> list[Period]:
    found = []
    for period in schedule.periods():
        found.append(period)
        if period.end > until:
            return found
    raise AssertionError("unreachable")  # pragma: no cover


# --- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "top"), [("day", 365), ("week", 52), ("month", 24), ("year", 5)]
)
def test_interval_count_ranges(interval: str, top: int) -> None:
    assert check_interval(interval, 1) == (Interval(interval), 1)
    assert check_interval(interval, top) == (Interval(interval), top)
    for bad in (0, -1, top + 1):
        with pytest.raises(PeriodRuleError) as refused:
            check_interval(interval, bad)
        assert refused.value.field == "intervalCount"


@pytest.mark.parametrize("bad", ["days", "Month", "", None, 3, "quarter"])
def test_unknown_interval_is_refused(bad: object) -> None:
    with pytest.raises(PeriodRuleError) as refused:
        check_interval(bad, 1)
    assert refused.value.field == "interval"


@pytest.mark.parametrize("bad", [True, 1.0, "1", None])
def test_interval_count_must_be_an_integer(bad: object) -> None:
    with pytest.raises(PeriodRuleError) as refused:
        check_interval("month", bad)
    assert refused.value.field == "intervalCount"


def test_trial_days_range() -> None:
    assert check_trial_days(0) == 0
    assert check_trial_days(730) == 730
    for bad in (-1, 731, True, "3", 1.5):
        with pytest.raises(PeriodRuleError) as refused:
            check_trial_days(bad)
        assert refused.value.field == "trialDays"


def test_which_intervals_have_a_calendar() -> None:
    with_calendar = {
        (interval, count)
        for interval in Interval
        for count in range(1, MAX_INTERVAL_COUNT[interval] + 1)
        if has_calendar(interval, count)
    }
    assert with_calendar == {
        (Interval.DAY, 1),
        (Interval.WEEK, 1),
        *((Interval.MONTH, n) for n in (1, 2, 3, 4, 6, 12)),
        (Interval.YEAR, 1),
    }


def test_default_anchor_and_calendar_refusal() -> None:
    assert default_anchor(Interval.MONTH, 3) is BillingAnchor.CALENDAR
    assert default_anchor(Interval.MONTH, 5) is BillingAnchor.ANNIVERSARY
    assert default_anchor(Interval.WEEK, 2) is BillingAnchor.ANNIVERSARY
    assert check_anchor(None, Interval.DAY, 7) is BillingAnchor.ANNIVERSARY
    assert check_anchor("anniversary", Interval.YEAR, 2) is BillingAnchor.ANNIVERSARY
    for interval, count in [(Interval.MONTH, 5), (Interval.YEAR, 2), (Interval.DAY, 2)]:
        with pytest.raises(PeriodRuleError) as refused:
            check_anchor("calendar", interval, count)
        assert refused.value.field == "billingAnchor"
    with pytest.raises(PeriodRuleError) as refused:
        check_anchor("monthly", Interval.MONTH, 1)
    assert refused.value.field == "billingAnchor"
    with pytest.raises(PeriodRuleError):
        Schedule(Interval.MONTH, 5, BillingAnchor.CALENDAR, date(2027, 1, 1))


def test_trial_moves_billing_start() -> None:
    assert billing_start(date(2027, 1, 25), 14) == date(2027, 2, 8)
    assert trial_end_date(date(2027, 1, 25), 14) == date(2027, 2, 8)
    assert trial_end_date(date(2027, 1, 25), 0) is None
    assert billing_start(date(2027, 1, 25), 0) == date(2027, 1, 25)


# --- properties -----------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(schedules(), st.integers(0, 40))
def test_periods_tile_time_without_gap_or_overlap(schedule: Schedule, n: int) -> None:
    periods = [schedule.period(k) for k in range(n + 2)]
    assert periods[0].start == schedule.origin
    for before, after in itertools.pairwise(periods):
        assert before.start < before.end == after.start
    # Each period is part of exactly one whole period, and only the first may be shorter.
    for k, period in enumerate(periods):
        whole = schedule.whole_period_containing(period.start)
        assert whole.start <= period.start < period.end <= whole.end
        assert period.end == whole.end
        if k > 0:
            assert period == whole
            assert not schedule.is_prorated(period)
    if schedule.anchor is BillingAnchor.ANNIVERSARY:
        assert not schedule.is_prorated(periods[0])


@settings(max_examples=150, deadline=None)
@given(schedules(), st.integers(0, 3000))
def test_the_period_containing_a_date_contains_it(schedule: Schedule, offset: int) -> None:
    day = schedule.origin + timedelta(days=offset)
    k = schedule.index_of(day)
    period = schedule.period(k)
    assert day in period
    assert schedule.period_containing(day) == period
    assert schedule.is_boundary(period.start)
    assert schedule.is_boundary(day) == (day == period.start)
    whole = schedule.whole_period_containing(day)
    assert day in whole
    with pytest.raises(ValueError, match="before"):
        schedule.index_of(schedule.origin - timedelta(days=1))


@settings(max_examples=150, deadline=None)
@given(schedules(BillingAnchor.CALENDAR), st.integers(1, 30))
def test_calendar_periods_start_on_the_calendars_boundaries(schedule: Schedule, k: int) -> None:
    start = schedule.boundary(k)
    if schedule.interval is Interval.DAY:
        assert start == schedule.origin + timedelta(days=k)
    elif schedule.interval is Interval.WEEK:
        assert start.weekday() == 0  # Monday
    elif schedule.interval is Interval.MONTH:
        assert start.day == 1
        assert (start.month - 1) % schedule.count == 0
    else:
        assert (start.month, start.day) == (1, 1)
    # No boundary is skipped: period k (k >= 1) is exactly one interval long.
    end = schedule.boundary(k + 1)
    if schedule.interval is Interval.DAY:
        assert (end - start).days == 1
    elif schedule.interval is Interval.WEEK:
        assert (end - start).days == 7
    elif schedule.interval is Interval.MONTH:
        months = (end.year - start.year) * 12 + end.month - start.month
        assert (end.day, months) == (1, schedule.count)
    else:
        assert (end.year - start.year, end.month, end.day) == (1, 1, 1)
    # Period 0 runs from the origin to the first boundary after it (none between).
    first = schedule.period(0)
    assert schedule.boundary(1) == schedule.whole_period_containing(schedule.origin).end
    assert (
        0
        < first.days
        <= {Interval.DAY: 1, Interval.WEEK: 7}.get(
            schedule.interval, 366 if schedule.interval is Interval.YEAR else 31 * schedule.count
        )
    )
    assert first.days <= schedule.whole_period_containing(schedule.origin).days


@settings(max_examples=200, deadline=None)
@given(
    late_in_month(),
    st.sampled_from([Interval.MONTH, Interval.YEAR]),
    st.integers(1, 5),
    st.integers(0, 60),
)
def test_anniversaries_on_the_29th_to_31st_never_drift(
    origin: date, interval: Interval, count: int, k: int
) -> None:
    schedule = Schedule(interval, count, BillingAnchor.ANNIVERSARY, origin)
    months = k * count * (12 if interval is Interval.YEAR else 1)
    year, month0 = divmod(origin.year * 12 + origin.month - 1 + months, 12)
    expected_day = min(origin.day, stdlib_calendar.monthrange(year, month0 + 1)[1])
    assert schedule.boundary(k) == date(year, month0 + 1, expected_day)
    assert schedule.boundary(k) == add_months(origin, months)


@settings(max_examples=150, deadline=None)
@given(dates, zones)
def test_first_instant_is_the_first_moment_of_the_local_date(day: date, timezone: str) -> None:
    moment = first_instant(day, timezone)
    assert moment.utcoffset() == timedelta(0)
    assert local_date(moment, timezone) == day
    assert local_date(moment - timedelta(microseconds=1), timezone) < day
    local = moment.astimezone(zone(timezone))
    assert local.time() == datetime.min.time() or local.hour == 1  # a skipped midnight


@settings(max_examples=100, deadline=None)
@given(schedules(), zones, st.integers(0, 20))
def test_period_instants_tile_in_every_zone(schedule: Schedule, timezone: str, k: int) -> None:
    this, following = schedule.period(k), schedule.period(k + 1)
    assert first_instant(this.end, timezone) == first_instant(following.start, timezone)
    assert first_instant(this.start, timezone) < first_instant(this.end, timezone)


# --- worked cases ---------------------------------------------------------------------


def test_calendar_monthly_from_january_14th() -> None:
    schedule = Schedule(Interval.MONTH, 1, BillingAnchor.CALENDAR, date(2027, 1, 14))
    assert schedule.period(0) == Period(date(2027, 1, 14), date(2027, 2, 1))
    assert schedule.period(0).days == 18
    assert schedule.whole_period_containing(date(2027, 1, 14)).days == 31
    assert schedule.is_prorated(schedule.period(0))
    assert schedule.period(1) == Period(date(2027, 2, 1), date(2027, 3, 1))
    assert schedule.period(12) == Period(date(2028, 1, 1), date(2028, 2, 1))


def test_anniversary_from_january_31st_through_a_year_and_february_2028() -> None:
    schedule = Schedule(Interval.MONTH, 1, BillingAnchor.ANNIVERSARY, date(2027, 1, 31))
    starts = [schedule.boundary(k) for k in range(15)]
    assert starts == [
        date(2027, 1, 31),
        date(2027, 2, 28),
        date(2027, 3, 31),
        date(2027, 4, 30),
        date(2027, 5, 31),
        date(2027, 6, 30),
        date(2027, 7, 31),
        date(2027, 8, 31),
        date(2027, 9, 30),
        date(2027, 10, 31),
        date(2027, 11, 30),
        date(2027, 12, 31),
        date(2028, 1, 31),
        date(2028, 2, 29),
        date(2028, 3, 31),
    ]
    assert schedule.period(13).days == 31  # Feb 29 - Mar 31 2028
    assert schedule.period_containing(date(2028, 3, 30)) == Period(
        date(2028, 2, 29), date(2028, 3, 31)
    )


def test_yearly_from_february_29th_2028() -> None:
    schedule = Schedule(Interval.YEAR, 1, BillingAnchor.ANNIVERSARY, date(2028, 2, 29))
    assert [schedule.boundary(k) for k in range(6)] == [
        date(2028, 2, 29),
        date(2029, 2, 28),
        date(2030, 2, 28),
        date(2031, 2, 28),
        date(2032, 2, 29),
        date(2033, 2, 28),
    ]
    assert schedule.period(0).days == 365
    assert schedule.period(3).days == 366  # 2031-02-28 - 2032-02-29


def test_quarters_begin_in_january_april_july_october() -> None:
    schedule = Schedule(Interval.MONTH, 3, BillingAnchor.CALENDAR, date(2027, 5, 20))
    assert schedule.period(0) == Period(date(2027, 5, 20), date(2027, 7, 1))
    assert schedule.whole_period_containing(date(2027, 5, 20)) == Period(
        date(2027, 4, 1), date(2027, 7, 1)
    )
    assert [schedule.boundary(k) for k in range(1, 5)] == [
        date(2027, 7, 1),
        date(2027, 10, 1),
        date(2028, 1, 1),
        date(2028, 4, 1),
    ]


def test_weekly_calendar_begins_on_mondays() -> None:
    wednesday = date(2027, 1, 13)
    schedule = Schedule(Interval.WEEK, 1, BillingAnchor.CALENDAR, wednesday)
    assert schedule.period(0) == Period(wednesday, date(2027, 1, 18))
    assert schedule.whole_period_containing(wednesday) == Period(
        date(2027, 1, 11), date(2027, 1, 18)
    )
    assert schedule.period(1) == Period(date(2027, 1, 18), date(2027, 1, 25))


def test_midnight_skipped_in_havana() -> None:
    moment = first_instant(date(2027, 3, 14), "America/Havana")
    assert moment == datetime(2027, 3, 14, 5, 0, tzinfo=UTC)
    local = moment.astimezone(zone("America/Havana"))
    assert (local.hour, local.minute, local.tzname()) == (1, 0, "CDT")
    # The day before ends there too: a period ending on the 14th ends at 01:00 CDT.
    assert first_instant(date(2027, 3, 13), "America/Havana") == datetime(
        2027, 3, 13, 5, 0, tzinfo=UTC
    )


def test_midnight_repeated_takes_the_first() -> None:
    # Havana sets its clocks back from 01:00 CDT to 00:00 CST on 2027-11-07.
    assert first_instant(date(2027, 11, 7), "America/Havana") == datetime(
        2027, 11, 7, 4, 0, tzinfo=UTC
    )


def test_first_instants_at_the_extremes_across_a_month_end() -> None:
    assert first_instant(date(2027, 2, 1), "Pacific/Kiritimati") == datetime(
        2027, 1, 31, 10, 0, tzinfo=UTC
    )
    assert first_instant(date(2027, 2, 1), "Pacific/Pago_Pago") == datetime(
        2027, 2, 1, 11, 0, tzinfo=UTC
    )


def test_unknown_zone_and_naive_moment_are_refused() -> None:
    with pytest.raises(UnknownTimezoneError):
        first_instant(date(2027, 1, 1), "Mars/Olympus_Mons")
    with pytest.raises(ValueError, match="aware"):
        local_date(datetime(2027, 1, 1), "UTC")


def test_period_must_end_after_it_starts() -> None:
    with pytest.raises(ValueError, match="ends after it starts"):
        Period(date(2027, 1, 2), date(2027, 1, 2))
    with pytest.raises(ValueError, match="numbered from 0"):
        Schedule(Interval.MONTH, 1, BillingAnchor.CALENDAR, date(2027, 1, 1)).boundary(-1)


def test_start_date_range() -> None:
    today = date(2027, 6, 15)
    month, cal = Interval.MONTH, BillingAnchor.CALENDAR
    assert check_start_date(today - timedelta(days=366), today, month, 1, cal) is not None
    assert check_start_date(date(2032, 6, 15), today, month, 1, cal) == date(2032, 6, 15)
    for start in (today - timedelta(days=367), date(2032, 6, 16)):
        with pytest.raises(PeriodRuleError) as refused:
            check_start_date(start, today, month, 1, cal)
        assert refused.value.field == "startDate"
    # Daily: 24 periods due at most (today's included), whatever the days allow.
    day, anniversary = Interval.DAY, BillingAnchor.ANNIVERSARY
    assert check_start_date(date(2027, 5, 23), today, day, 1, anniversary)
    with pytest.raises(PeriodRuleError, match="25 past periods"):
        check_start_date(date(2027, 5, 22), today, day, 1, anniversary)
    # A trial moves the first billed date: fewer periods are due.
    assert check_start_date(date(2027, 5, 22), today, day, 1, anniversary, trial_days=1)
    # A calendar month started mid-month: its first short period counts as one.
    assert check_start_date(date(2026, 6, 16), today, month, 1, cal)


@settings(max_examples=200, deadline=None)
@given(zones, st.integers(2024, 2032), st.integers(1, 12))
def test_the_first_of_the_month_is_the_first_instant_of_the_1st(
    timezone: str, year: int, month: int
) -> None:
    """The scheduler's "first of the month" (domain/calendar.py) and a period starting on
    the 1st are due at the same instant."""
    assert first_of_month_utc(year, month, timezone) == first_instant(
        date(year, month, 1), timezone
    )
