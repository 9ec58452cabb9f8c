"""Billing periods: plan intervals, calendar and anniversary anchors, and when a date starts.

Pure date rules (issue 21), with no clock and no database: every argument is a
calendar date in the customer's time zone, and `first_instant` turns one into
the UTC moment it begins there.

- An interval is `day`, `week`, `month` or `year`, times an `intervalCount`
  (1-365 days, 1-52 weeks, 1-24 months, 1-5 years).
- A `Schedule` is the sequence of period boundaries of one plan from an
  `origin` date (the date billing starts: `startDate`, or `trialEndDate` with a
  trial; or the date an interval change took effect):
  - `anniversary`: boundary k is origin + k x interval, always computed from
    the origin, never from the previous boundary, clamped to the month's end
    (an origin on Jan 31 gives Feb 28/29, Mar 31, Apr 30; Feb 29 gives Feb 28 in
    other years and Feb 29 again in leap years);
  - `calendar`: boundary 0 is the origin, then the calendar's boundaries: every
    day (`day` x 1), every Monday (`week` x 1), the 1st of every month m with
    (m - 1) % N == 0 (`month` x 1, 2, 3, 4, 6, 12), January 1st (`year` x 1). An
    origin between two boundaries makes a first, shorter period (prorated).
- Period k runs from boundary k (included) to boundary k + 1 (excluded): the
  periods tile time with no gap and no overlap.
- `Schedule.whole_period_containing(d)` is the full interval period that
  proration divides by: the calendar month, quarter, year, week or day
  containing d (calendar), or the anniversary period containing d.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Final

from antaeus.domain.customer import zone


class Interval(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


class BillingAnchor(StrEnum):
    CALENDAR = "calendar"
    ANNIVERSARY = "anniversary"


#: The largest `intervalCount` of each interval (the smallest is 1).
MAX_INTERVAL_COUNT: Final[dict[Interval, int]] = {
    Interval.DAY: 365,
    Interval.WEEK: 52,
    Interval.MONTH: 24,
    Interval.YEAR: 5,
}
#: The (interval, intervalCount) pairs that have a calendar.
CALENDAR_COUNTS: Final[dict[Interval, frozenset[int]]] = {
    Interval.DAY: frozenset({1}),
    Interval.WEEK: frozenset({1}),
    Interval.MONTH: frozenset({1, 2, 3, 4, 6, 12}),
    Interval.YEAR: frozenset({1}),
}
MAX_TRIAL_DAYS: Final = 730


class PeriodRuleError(ValueError):
    """A plan or subscription term the date rules refuse; `field` names it (API spelling)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def check_interval(interval: object, count: object = 1) -> tuple[Interval, int]:
    """`interval` and `count` as a valid pair, or `PeriodRuleError` naming the field."""
    try:
        parsed = Interval(interval)  # type: ignore[arg-type]  # anything: refused below
    except ValueError:
        raise PeriodRuleError(
            "interval", f"interval must be one of day, week, month, year; got {interval!r:.40}"
        ) from None
    if not isinstance(count, int) or isinstance(count, bool):
        raise PeriodRuleError("intervalCount", "intervalCount must be an integer")
    top = MAX_INTERVAL_COUNT[parsed]
    if not 1 <= count <= top:
        raise PeriodRuleError(
            "intervalCount", f"intervalCount must be between 1 and {top} for {parsed}s; got {count}"
        )
    return parsed, count


def check_trial_days(days: object) -> int:
    if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= MAX_TRIAL_DAYS:
        raise PeriodRuleError(
            "trialDays", f"trialDays must be an integer from 0 to {MAX_TRIAL_DAYS}"
        )
    return days


def has_calendar(interval: Interval, count: int) -> bool:
    """Whether periods of `count` x `interval` can begin at calendar boundaries."""
    return count in CALENDAR_COUNTS[interval]


def default_anchor(interval: Interval, count: int) -> BillingAnchor:
    """`calendar` when the interval has a calendar, else `anniversary`."""
    return BillingAnchor.CALENDAR if has_calendar(interval, count) else BillingAnchor.ANNIVERSARY


def check_anchor(anchor: object, interval: Interval, count: int) -> BillingAnchor:
    """`anchor` (None: the default) valid for the interval, or `PeriodRuleError`."""
    if anchor is None:
        return default_anchor(interval, count)
    try:
        parsed = BillingAnchor(anchor)  # type: ignore[arg-type]  # anything: refused below
    except ValueError:
        raise PeriodRuleError(
            "billingAnchor", f"billingAnchor must be calendar or anniversary; got {anchor!r:.40}"
        ) from None
    if parsed is BillingAnchor.CALENDAR and not has_calendar(interval, count):
        raise PeriodRuleError(
            "billingAnchor",
            f"{count} x {interval} has no calendar (calendar periods exist for day x 1, "
            "week x 1, month x 1, 2, 3, 4, 6, 12 and year x 1); use anniversary",
        )
    return parsed


@lru_cache(maxsize=1024)
def _check_schedule(interval: Interval, count: int, anchor: BillingAnchor) -> None:
    check_interval(interval, count)
    check_anchor(anchor, interval, count)


# --- dates ----------------------------------------------------------------------------


def _month_index(d: date) -> int:
    return d.year * 12 + d.month - 1


def _days_in_month(year: int, month: int) -> int:
    if month == 12:
        return 31
    return (date(year, month + 1, 1) - date(year, month, 1)).days


def add_months(d: date, months: int) -> date:
    """`d` moved by `months` (any sign), its day clamped to the target month's last day."""
    year, m0 = divmod(_month_index(d) + months, 12)
    month = m0 + 1
    return date(year, month, min(d.day, _days_in_month(year, month)))


def billing_start(start_date: date, trial_days: int) -> date:
    """The first billed date: `startDate`, or `trialEndDate` = `startDate` + `trialDays`."""
    return start_date + timedelta(days=trial_days)


def trial_end_date(start_date: date, trial_days: int) -> date | None:
    """`trialEndDate`: None without a trial."""
    return billing_start(start_date, trial_days) if trial_days else None


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """The local dates `start` (included) to `end` (excluded)."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"a period ends after it starts: {self.start} - {self.end}")

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.start <= day < self.end


@dataclass(frozen=True, slots=True)
class Schedule:
    """The period boundaries of one plan interval from `origin` (see the module docstring)."""

    interval: Interval
    count: int
    anchor: BillingAnchor
    origin: date

    def __post_init__(self) -> None:
        _check_schedule(self.interval, self.count, self.anchor)

    # The calendar grid (calendar anchor only): boundaries that do not depend on origin.

    def _grid_floor(self, d: date) -> date:
        """The last calendar boundary on or before `d`."""
        if self.interval is Interval.DAY:
            return d
        if self.interval is Interval.WEEK:
            return d - timedelta(days=d.weekday())  # Monday
        if self.interval is Interval.MONTH:
            return date(d.year, d.month - (d.month - 1) % self.count, 1)
        return date(d.year, 1, 1)

    def _grid_step(self, floor: date, steps: int) -> date:
        if self.interval is Interval.DAY:
            return floor + timedelta(days=steps)
        if self.interval is Interval.WEEK:
            return floor + timedelta(days=7 * steps)
        if self.interval is Interval.MONTH:
            return add_months(floor, self.count * steps)
        return date(floor.year + steps, 1, 1)

    def _grid_steps_between(self, floor_a: date, floor_b: date) -> int:
        if self.interval is Interval.DAY:
            return (floor_b - floor_a).days
        if self.interval is Interval.WEEK:
            return (floor_b - floor_a).days // 7
        if self.interval is Interval.MONTH:
            return (_month_index(floor_b) - _month_index(floor_a)) // self.count
        return floor_b.year - floor_a.year

    def _anniversary(self, k: int) -> date:
        """origin + k x interval (k of any sign), from the origin, clamped to month ends."""
        if self.interval is Interval.DAY:
            return self.origin + timedelta(days=k * self.count)
        if self.interval is Interval.WEEK:
            return self.origin + timedelta(days=7 * k * self.count)
        months = k * self.count * (1 if self.interval is Interval.MONTH else 12)
        return add_months(self.origin, months)

    def _anniversary_index(self, d: date) -> int:
        """The k with boundary k <= d < boundary k + 1 (k of any sign)."""
        if self.interval is Interval.DAY:
            return (d - self.origin).days // self.count
        if self.interval is Interval.WEEK:
            return (d - self.origin).days // (7 * self.count)
        months = self.count * (1 if self.interval is Interval.MONTH else 12)
        k = (_month_index(d) - _month_index(self.origin)) // months
        while self._anniversary(k) > d:
            k -= 1
        while self._anniversary(k + 1) <= d:
            k += 1
        return k

    # Periods.

    def boundary(self, k: int) -> date:
        """The start of period k (k >= 0); boundary 0 is the origin."""
        if k < 0:
            raise ValueError("periods are numbered from 0")
        if self.anchor is BillingAnchor.ANNIVERSARY:
            return self._anniversary(k)
        if k == 0:
            return self.origin
        return self._grid_step(self._grid_floor(self.origin), k)

    def period(self, k: int) -> Period:
        """Period k: from boundary k to boundary k + 1."""
        return Period(self.boundary(k), self.boundary(k + 1))

    def index_of(self, d: date) -> int:
        """The number of the period containing `d` (on or after the origin)."""
        if d < self.origin:
            raise ValueError(f"{d} is before the schedule's first period ({self.origin})")
        if self.anchor is BillingAnchor.ANNIVERSARY:
            return self._anniversary_index(d)
        floor = self._grid_floor(self.origin)
        return self._grid_steps_between(floor, self._grid_floor(d))

    def period_containing(self, d: date) -> Period:
        return self.period(self.index_of(d))

    def periods(self, first: int = 0) -> Iterator[Period]:
        """Period `first`, then every later one, without end."""
        k = first
        while True:
            yield self.period(k)
            k += 1

    def is_boundary(self, d: date) -> bool:
        """Whether a period of this schedule starts on `d`."""
        return d >= self.origin and self.period_containing(d).start == d

    def whole_period_containing(self, d: date) -> Period:
        """The full interval period containing `d`, which proration divides by.

        Calendar: the calendar day, week (Monday to Monday), month, group of N
        months or year containing `d`, even when the schedule's own period there
        is a shorter first one. Anniversary: the anniversary period containing
        `d` (before the origin too, counted back from it).
        """
        if self.anchor is BillingAnchor.ANNIVERSARY:
            k = self._anniversary_index(d)
            return Period(self._anniversary(k), self._anniversary(k + 1))
        floor = self._grid_floor(d)
        return Period(floor, self._grid_step(floor, 1))

    def is_prorated(self, period: Period) -> bool:
        """Whether `period` is shorter than the whole period it is part of."""
        return period != self.whole_period_containing(period.start)


# --- local dates and instants ---------------------------------------------------------


def _wall(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None, fold=0)


@lru_cache(maxsize=65536)
def first_instant(day: date, timezone: str) -> datetime:
    """The first instant of local date `day` in `timezone`, as an aware UTC datetime.

    Midnight when it exists (the first of two when a clock set back repeats it).
    Where a clock change skips midnight, the moment of the change, which is the
    first instant whose local date is `day` (America/Havana, 2027-03-14: 01:00
    CDT, 05:00 UTC). Where a zone skips a whole date, the first instant after it.
    """
    tz = zone(timezone)
    midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
    readings = []
    for fold in (0, 1):
        moment = midnight.replace(fold=fold).astimezone(UTC)
        if _wall(moment.astimezone(tz)) == _wall(midnight):
            readings.append(moment)
    if readings:
        return min(readings)
    # Midnight is in a gap: its two readings bracket the change. `before` reads as
    # an earlier date there, `after` as `day` or later; search the second between.
    after = midnight.replace(fold=0).astimezone(UTC)
    before = midnight.replace(fold=1).astimezone(UTC)
    if before > after:
        before, after = after, before
    low, high = 0, int((after - before).total_seconds())
    while high - low > 1:
        middle = (low + high) // 2
        if (before + timedelta(seconds=middle)).astimezone(tz).date() >= day:
            high = middle
        else:
            low = middle
    return before + timedelta(seconds=high)


def local_date(moment: datetime, timezone: str) -> date:
    """The local date in `timezone` at the aware instant `moment`."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("moment must be timezone-aware")
    return moment.astimezone(zone(timezone)).date()


def period_instants(period: Period, timezone: str) -> tuple[datetime, datetime]:
    """The UTC instants a period runs between: the first instants of its start and end dates."""
    return first_instant(period.start, timezone), first_instant(period.end, timezone)


#: How far back a `startDate` may be: at most this many days and this many periods due.
MAX_START_DAYS_BACK: Final = 366
MAX_START_PERIODS_BACK: Final = 24
#: How far ahead a `startDate` may be, in years.
MAX_START_YEARS_AHEAD: Final = 5


def check_start_date(
    start_date: date,
    today: date,
    interval: Interval,
    count: int,
    anchor: BillingAnchor,
    trial_days: int = 0,
) -> date:
    """`startDate` if the issue's range allows it on the customer's local date `today`.

    At most 366 days back and at most 24 periods already due (their invoices are
    made at once, one each), at most 5 years ahead; else `PeriodRuleError`
    (field `startDate`).
    """
    if start_date < today - timedelta(days=MAX_START_DAYS_BACK):
        raise PeriodRuleError(
            "startDate", f"startDate may be at most {MAX_START_DAYS_BACK} days in the past"
        )
    if start_date > add_months(today, 12 * MAX_START_YEARS_AHEAD):
        raise PeriodRuleError(
            "startDate", f"startDate may be at most {MAX_START_YEARS_AHEAD} years ahead"
        )
    origin = billing_start(start_date, trial_days)
    if origin <= today:
        due = Schedule(interval, count, anchor, origin).index_of(today) + 1
        if due > MAX_START_PERIODS_BACK:
            raise PeriodRuleError(
                "startDate",
                f"startDate would bill {due} past periods at once; at most "
                f"{MAX_START_PERIODS_BACK} are allowed",
            )
    return start_date
