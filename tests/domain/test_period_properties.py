"""The issue's date-rule properties (issue 21) that tests/domain/test_periods.py,
test_proration.py and test_subscription_lines.py leave open, over every zone, interval,
intervalCount, anchor, trial and start date from 2024 to 2032:

- the periods a subscription bills tile time (in local dates and in UTC instants) from
  the first instant of its billing start, after any trial, with no gap and no overlap;
- an anniversary on the 29th-31st (a trial's end included) never drifts, whatever the
  interval count;
- a period's due moment is local midnight when that exists, else the first instant of
  its date (and nothing of the day before is billed);
- proration over a whole period of any interval sums to the full price within one minor
  unit per line: any cut of the period; a prorated first period with the days before
  it; the two sides of a change `now`.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from antaeus.domain.customer import _known_timezones, zone
from antaeus.domain.money import Currency, Money
from antaeus.domain.periods import (
    CALENDAR_COUNTS,
    MAX_INTERVAL_COUNT,
    BillingAnchor,
    Interval,
    Schedule,
    first_instant,
)
from antaeus.domain.proration import prorate
from antaeus.domain.subscription import (
    PlanTerms,
    SubscriptionTerms,
    billing_periods,
    change_now_lines,
    due_invoices,
)

ALL_ZONES = sorted(_known_timezones())
EDGE_ZONES = [
    "UTC",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "America/Havana",
    "America/Santiago",
    "Asia/Beirut",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Pacific/Apia",  # skipped a whole date (2011-12-30)
]
zones = st.one_of(st.sampled_from(EDGE_ZONES), st.sampled_from(ALL_ZONES))
dates = st.dates(min_value=date(2024, 1, 1), max_value=date(2032, 12, 31))
currencies = st.sampled_from([Currency("EUR"), Currency("JPY"), Currency("KWD")])
trials = st.one_of(st.just(0), st.integers(1, 730))


@st.composite
def plans(draw: st.DrawFn, plan_id: int = 1) -> tuple[PlanTerms, BillingAnchor]:
    """A plan of any interval and count, its currency's price, and an anchor it allows."""
    interval = draw(st.sampled_from(list(Interval)))
    count = draw(st.integers(1, MAX_INTERVAL_COUNT[interval]))
    anchors = [BillingAnchor.ANNIVERSARY]
    if count in CALENDAR_COUNTS[interval]:
        anchors.append(BillingAnchor.CALENDAR)
    currency = draw(currencies)
    amount = Money.from_minor(draw(st.integers(0, 10**9)), currency)
    return PlanTerms(plan_id, "Plan", amount, interval, count), draw(st.sampled_from(anchors))


@st.composite
def subscriptions(draw: st.DrawFn) -> SubscriptionTerms:
    plan, anchor = draw(plans())
    start = draw(dates)
    trial = draw(trials)
    return SubscriptionTerms(
        id=1,
        plan=plan,
        quantity=draw(st.integers(1, 1000)),
        billing_anchor=anchor,
        start_date=start,
        trial_end_date=start + timedelta(days=trial) if trial else None,
    )


def within_a_unit_per_line(lines: list[Money], full: Money) -> bool:
    total = sum((line.value for line in lines), Decimal(0))
    return abs(total - full.value) <= full.currency.quantum * len(lines) / 2


@settings(max_examples=150, deadline=None)
@given(subscriptions(), zones, st.integers(2, 30))
def test_billed_periods_tile_time_from_the_billing_start_in_every_zone(
    subscription: SubscriptionTerms, timezone: str, n: int
) -> None:
    periods = [b.period for b in itertools.islice(billing_periods(subscription), n)]
    start = subscription.start_date
    if subscription.trial_end_date is not None:
        assert subscription.trial_end_date > start
    assert periods[0].start == subscription.billing_start  # nothing during a trial
    instants = [first_instant(periods[0].start, timezone)]
    for before, after in itertools.pairwise(periods):
        assert before.end == after.start  # no gap, no overlap
    for period in periods:
        instants.append(first_instant(period.end, timezone))
    assert all(a < b for a, b in itertools.pairwise(instants))  # each lasts a while
    # The trial's instants are never billed: billing begins where the trial ends.
    assert instants[0] == first_instant(subscription.billing_start, timezone)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(2024, 2032),
    st.integers(1, 12),
    st.integers(29, 31),
    trials,
    st.sampled_from([Interval.MONTH, Interval.YEAR]),
    st.data(),
)
def test_an_anniversary_on_the_29th_to_31st_never_drifts_after_a_trial(
    year: int, month: int, day: int, trial: int, interval: Interval, data: st.DataObject
) -> None:
    """The anchor is the trial's end; chosen so that it lands on the 29th-31st."""
    count = data.draw(st.integers(1, MAX_INTERVAL_COUNT[interval]))
    last = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    billing_start = date(year, month, min(day, last))
    start = billing_start - timedelta(days=trial)
    subscription = SubscriptionTerms(
        id=1,
        plan=PlanTerms(1, "Plan", Money.of("10.00", "EUR"), interval, count),
        quantity=1,
        billing_anchor=BillingAnchor.ANNIVERSARY,
        start_date=start,
        trial_end_date=billing_start if trial else None,
    )
    months = count * (12 if interval is Interval.YEAR else 1)
    for k, billed in enumerate(itertools.islice(billing_periods(subscription), 40)):
        y, m0 = divmod(billing_start.year * 12 + billing_start.month - 1 + k * months, 12)
        month_last = (date(y + (m0 + 1) // 12, (m0 + 1) % 12 + 1, 1) - timedelta(days=1)).day
        assert billed.period.start == date(y, m0 + 1, min(billing_start.day, month_last))
        assert not billed.prorated  # anniversary periods are whole


@settings(max_examples=150, deadline=None)
@given(subscriptions(), zones, st.integers(0, 3 * 366 * 24))
def test_every_due_moment_is_midnight_or_the_first_instant_after_it(
    subscription: SubscriptionTerms, timezone: str, hours: int
) -> None:
    begin = datetime.combine(subscription.start_date, time(), UTC) - timedelta(days=1)
    now = begin + timedelta(hours=hours)
    generated = due_invoices([subscription], now=now, timezone=timezone, limit=30)
    tz = zone(timezone)
    for invoice in generated.invoices:
        day = invoice.period_start
        due = invoice.due_at
        assert due <= now
        assert due.utcoffset() == timedelta(0)
        midnight = datetime.combine(day, time(), tz)
        exists = midnight.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == datetime.combine(
            day, time()
        )
        if exists:  # midnight (the first of two when the clock repeats it)
            assert due == min(
                midnight.replace(fold=0).astimezone(UTC), midnight.replace(fold=1).astimezone(UTC)
            )
        else:  # the first instant of the date, after the gap
            assert due.astimezone(tz).date() == day
            assert (due - timedelta(microseconds=1)).astimezone(tz).date() < day
        assert [line.period_start for line in invoice.lines] == [day]


@settings(max_examples=200, deadline=None)
@given(plans(), dates, st.integers(1, 1000), st.lists(st.integers(0, 2000), max_size=6))
def test_proration_over_a_whole_period_of_any_interval_sums_to_the_price(
    plan_anchor: tuple[PlanTerms, BillingAnchor], day: date, quantity: int, cuts: list[int]
) -> None:
    """Whole periods of every interval and count (quarters, 5 years, 365 days, 52 weeks):
    cut anywhere, the prorated pieces add up to the price within a unit per line."""
    plan, anchor = plan_anchor
    schedule = Schedule(plan.interval, plan.interval_count, anchor, day)
    whole = schedule.whole_period_containing(day + timedelta(days=cuts[0] if cuts else 0))
    points = sorted(
        {whole.start, whole.end} | {whole.start + timedelta(days=c % whole.days) for c in cuts}
    )
    lines = [prorate(plan.amount, quantity, (b - a).days, whole.days) for a, b in pairwise(points)]
    assert within_a_unit_per_line(lines, Money(plan.amount.value * quantity, plan.currency))


def pairwise(points: list[date]) -> list[tuple[date, date]]:
    return list(itertools.pairwise(points))


@settings(max_examples=200, deadline=None)
@given(subscriptions())
def test_a_prorated_first_period_and_the_days_before_it_sum_to_the_price(
    subscription: SubscriptionTerms,
) -> None:
    first = next(billing_periods(subscription))
    assert first.whole.end == first.period.end
    before = (first.period.start - first.whole.start).days
    assert before + first.period.days == first.whole.days
    plan = subscription.plan
    unbilled = prorate(plan.amount, subscription.quantity, before, first.whole.days)
    full = Money(plan.amount.value * subscription.quantity, plan.currency)
    assert within_a_unit_per_line([unbilled, first.amount], full)
    if subscription.billing_anchor is BillingAnchor.ANNIVERSARY:
        assert (before, first.amount) == (0, full)


@settings(max_examples=200, deadline=None)
@given(subscriptions(), st.integers(0, 10**9), st.integers(1, 1000), st.integers(0, 4000))
def test_the_two_sides_of_a_change_now_each_sum_to_their_price(
    subscription: SubscriptionTerms, new_minor: int, new_quantity: int, offset: int
) -> None:
    """Today through the period's end (credit at the old price, proration at the new), with
    the days of the whole period before today at the same price: each the full price."""
    old = subscription.plan
    new = PlanTerms(2, "New", Money.from_minor(new_minor, old.currency), old.interval,
                    old.interval_count)  # fmt: skip
    today = subscription.billing_start + timedelta(days=offset)
    credit, proration = change_now_lines(subscription, new, new_quantity, today)
    assert credit.period_start == today
    whole = subscription.schedule.whole_period_containing(today)
    assert credit.period_end == subscription.schedule.period_containing(today).end == whole.end
    used_days = (today - whole.start).days
    for plan, quantity, rest in ((old, subscription.quantity, -credit.amount),
                                 (new, new_quantity, proration.amount)):  # fmt: skip
        used = prorate(plan.amount, quantity, used_days, whole.days)
        full = Money(plan.amount.value * quantity, plan.currency)
        assert within_a_unit_per_line([used, rest], full)
