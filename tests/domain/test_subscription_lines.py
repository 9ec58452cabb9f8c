"""The invoice-lines builder (issue 21): what generation and the preview will both call.

Properties: generation run at any moments (on time, late, after downtime) bills every
period of every subscription exactly once, each due at the first instant of its local
start date, the same lines as one catch-up at the end; the preview is, line for line,
the invoice generated later. Worked cases with exact amounts.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from antaeus.domain.customer import zone
from antaeus.domain.money import Currency, CurrencyMismatchError, Money
from antaeus.domain.periods import (
    CALENDAR_COUNTS,
    MAX_INTERVAL_COUNT,
    BillingAnchor,
    Interval,
    Period,
    PeriodRuleError,
    first_instant,
    local_date,
)
from antaeus.domain.subscription import (
    DraftInvoice,
    InvoiceLine,
    LineKind,
    PendingChange,
    PlanTerms,
    SubscriptionStatus,
    SubscriptionTerms,
    after_billing,
    billing_periods,
    cancel_now_credit,
    change_now_lines,
    change_now_outcome,
    current_period,
    due_invoices,
    next_due_at,
    status_on,
    trial_will_end_date,
    upcoming_invoice,
)

EUR = Currency("EUR")
CPH = "Europe/Copenhagen"
ZONES = [
    "UTC",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "America/Havana",
    "America/Santiago",
    "Africa/Cairo",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Europe/Copenhagen",
    "America/New_York",
]


def eur(text: str) -> Money:
    return Money.of(text, EUR)


def plan(
    amount: str = "30.00",
    interval: Interval = Interval.MONTH,
    count: int = 1,
    *,
    plan_id: int = 1,
    name: str = "Pro",
    currency: str = "EUR",
) -> PlanTerms:
    return PlanTerms(plan_id, name, Money.of(amount, currency), interval, count)


def sub(
    terms: PlanTerms | None = None,
    start: date = date(2027, 1, 14),
    *,
    sub_id: int = 1,
    quantity: int = 1,
    anchor: BillingAnchor = BillingAnchor.CALENDAR,
    trial_days: int = 0,
    cancel_at: date | None = None,
    pending: PendingChange | None = None,
) -> SubscriptionTerms:
    return SubscriptionTerms(
        id=sub_id,
        plan=terms or plan(),
        quantity=quantity,
        billing_anchor=anchor,
        start_date=start,
        trial_end_date=start + timedelta(days=trial_days) if trial_days else None,
        cancel_at=cancel_at,
        pending_change=pending,
    )


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def generate(
    subscriptions: Sequence[SubscriptionTerms],
    moments: Sequence[datetime],
    timezone: str,
    credit: Money | None = None,
    limit: int | None = None,
) -> tuple[list[DraftInvoice], list[SubscriptionTerms], Money | None]:
    """Run generation at each moment, writing back what it billed, as the generator will."""
    current = list(subscriptions)
    made: list[DraftInvoice] = []
    for now in moments:
        while True:
            result = due_invoices(current, now=now, timezone=timezone, credit=credit, limit=limit)
            made.extend(result.invoices)
            credit = result.credit_left
            by_id = {s.id: s for s in current}
            for billed in result.billed:
                by_id[billed.subscription_id] = after_billing(by_id[billed.subscription_id], billed)
            current = [by_id[s.id] for s in current]
            if not result.invoices:
                break
    return made, current, credit


def lines_of(invoices: Sequence[DraftInvoice]) -> list[InvoiceLine]:
    return [line for invoice in invoices for line in invoice.lines]


# --- worked cases ---------------------------------------------------------------------


def test_calendar_monthly_from_january_14th() -> None:
    subscription = sub(quantity=2)
    invoices, _, _ = generate([subscription], [at(2027, 3, 15)], CPH)
    assert [(i.due_at, i.amount) for i in invoices] == [
        (at(2027, 1, 13, 23), eur("34.84")),  # 60 x 18/31 = 34.838...
        (at(2027, 1, 31, 23), eur("60.00")),
        (at(2027, 2, 28, 23), eur("60.00")),
    ]
    first = invoices[0].lines[0]
    assert first.kind == LineKind.SUBSCRIPTION
    assert (first.period_start, first.period_end) == (date(2027, 1, 14), date(2027, 2, 1))
    assert first.quantity == 2
    assert first.description == "Pro × 2, 2027-01-14 – 2027-02-01 (18 of 31 days)"
    assert invoices[1].lines[0].description == "Pro × 2, 2027-02-01 – 2027-03-01"


def test_anniversary_from_january_31st_through_february_2028() -> None:
    subscription = sub(start=date(2027, 1, 31), anchor=BillingAnchor.ANNIVERSARY)
    invoices, _, _ = generate([subscription], [at(2028, 3, 31)], "UTC")
    starts = [i.period_start for i in invoices]
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
    assert {i.amount for i in invoices} == {eur("30.00")}  # anniversary periods are whole
    assert invoices[13].lines[0].period_end == date(2028, 3, 31)


def test_yearly_from_february_29th_2028() -> None:
    subscription = sub(
        plan("365.00", Interval.YEAR), date(2028, 2, 29), anchor=BillingAnchor.ANNIVERSARY
    )
    invoices, _, _ = generate([subscription], [at(2032, 3, 1)], "UTC")
    assert [(i.lines[0].period_start, i.lines[0].period_end) for i in invoices] == [
        (date(2028, 2, 29), date(2029, 2, 28)),
        (date(2029, 2, 28), date(2030, 2, 28)),
        (date(2030, 2, 28), date(2031, 2, 28)),
        (date(2031, 2, 28), date(2032, 2, 29)),
        (date(2032, 2, 29), date(2033, 2, 28)),
    ]
    assert {i.amount for i in invoices} == {eur("365.00")}


def test_calendar_yearly_from_leap_day_is_prorated_over_the_leap_year() -> None:
    subscription = sub(plan("366.00", Interval.YEAR), date(2028, 2, 29))
    invoices, _, _ = generate([subscription], [at(2029, 1, 1)], "UTC")
    # Feb 29 - Jan 1 2029: 307 of 366 days.
    assert [i.amount for i in invoices] == [eur("307.00"), eur("366.00")]


def test_trial_crossing_a_month_end() -> None:
    subscription = sub(start=date(2027, 1, 25), trial_days=14)
    assert subscription.billing_start == date(2027, 2, 8)
    assert status_on(subscription, date(2027, 1, 31)) is SubscriptionStatus.TRIALING
    assert current_period(subscription, date(2027, 1, 31)) == Period(
        date(2027, 1, 25), date(2027, 2, 8)
    )
    assert trial_will_end_date(subscription) == date(2027, 2, 5)
    nothing, _, _ = generate([subscription], [at(2027, 2, 7, 22, 59)], CPH)
    assert nothing == []  # no invoice during the trial, not even on the 1st
    invoices, _, _ = generate([subscription], [at(2027, 2, 7, 23)], CPH)
    assert len(invoices) == 1
    line = invoices[0].lines[0]
    assert (line.period_start, line.period_end) == (date(2027, 2, 8), date(2027, 3, 1))
    assert line.amount == eur("22.50")  # 30 x 21/28
    assert status_on(subscription, date(2027, 2, 8)) is SubscriptionStatus.ACTIVE
    # Anniversary: the anchor is the trial's end.
    anniversary = sub(start=date(2027, 1, 25), trial_days=14, anchor=BillingAnchor.ANNIVERSARY)
    invoices, _, _ = generate([anniversary], [at(2027, 3, 9)], "UTC")
    assert [(i.period_start, i.amount) for i in invoices] == [
        (date(2027, 2, 8), eur("30.00")),
        (date(2027, 3, 8), eur("30.00")),
    ]


@pytest.mark.parametrize(
    ("timezone", "due"),
    [("Pacific/Kiritimati", at(2027, 1, 31, 10)), ("Pacific/Pago_Pago", at(2027, 2, 1, 11))],
)
def test_extreme_zones_across_a_month_end(timezone: str, due: datetime) -> None:
    subscription = sub(start=date(2027, 1, 1))
    hourly = [at(2027, 1, 30) + timedelta(hours=h) for h in range(72)]
    # One generation a minute around the due moment too.
    around = [due + timedelta(minutes=m) for m in range(-3, 4)]
    moments = sorted(set(hourly + around))
    invoices, _, _ = generate([subscription], moments, timezone)
    # January was due long before; then exactly one February invoice.
    assert [(i.period_start, i.due_at) for i in invoices] == [
        (date(2027, 1, 1), first_instant(date(2027, 1, 1), timezone)),
        (date(2027, 2, 1), due),
    ]
    not_yet, _, _ = generate([subscription], [due - timedelta(microseconds=1)], timezone)
    assert [i.period_start for i in not_yet] == [date(2027, 1, 1)]


def test_a_period_starting_on_a_skipped_midnight_is_due_at_the_first_instant() -> None:
    subscription = sub(start=date(2027, 2, 14), anchor=BillingAnchor.ANNIVERSARY)
    havana = "America/Havana"
    before, _, _ = generate([subscription], [at(2027, 3, 14, 4, 59)], havana)
    assert [i.period_start for i in before] == [date(2027, 2, 14)]
    after, _, _ = generate([subscription], [at(2027, 3, 14, 5)], havana)
    assert after[-1].period_start == date(2027, 3, 14)
    assert after[-1].due_at == at(2027, 3, 14, 5)  # 01:00 CDT
    assert after[-1].due_at.astimezone(zone(havana)).hour == 1


@pytest.mark.parametrize(
    ("amount", "currency", "first"),
    [("1000", "JPY", "581"), ("10.000", "KWD", "5.806"), ("0.01", "EUR", "0.01")],
)
def test_jpy_and_kwd_first_periods(amount: str, currency: str, first: str) -> None:
    subscription = sub(plan(amount, currency=currency))
    invoices, _, _ = generate([subscription], [at(2027, 2, 1)], "UTC")
    assert [i.amount for i in invoices] == [
        Money.of(first, currency),  # 18/31 of the month, half away from zero
        Money.of(amount, currency),
    ]


def test_upgrade_and_downgrade_now() -> None:
    subscription = sub(start=date(2027, 1, 1))
    today = date(2027, 2, 15)  # Feb 15 - Mar 1: 14 of 28 days unused
    credit, proration = change_now_lines(
        subscription, plan("60.00", plan_id=2, name="Max"), 1, today
    )
    assert credit.kind == LineKind.CREDIT
    assert credit.amount == eur("-15.00")
    assert proration.kind == LineKind.PRORATION
    assert proration.amount == eur("30.00")
    assert (credit.period_start, credit.period_end) == (today, date(2027, 3, 1))
    assert credit.plan_id == 1
    assert proration.plan_id == 2
    assert (
        proration.description
        == "Remaining time on Max × 1, 2027-02-15 – 2027-03-01 (14 of 28 days)"
    )
    upgraded = replace(subscription, plan=plan("60.00", plan_id=2))
    down = change_now_lines(upgraded, plan("30.00"), 1, today)
    assert [line.amount for line in down] == [eur("-30.00"), eur("15.00")]
    more = change_now_lines(subscription, plan(), 3, date(2027, 2, 20))  # 9 of 28 days
    assert [line.amount for line in more] == [eur("-9.64"), eur("28.93")]  # 9.642..., 28.928...


def test_change_now_during_a_prorated_first_period_divides_by_the_whole_month() -> None:
    subscription = sub(start=date(2027, 1, 14))
    lines = change_now_lines(subscription, plan("62.00", plan_id=2), 1, date(2027, 1, 21))
    # Jan 21 - Feb 1: 11 of 31 days of January.
    assert [line.amount for line in lines] == [eur("-10.65"), eur("22.00")]


def test_change_now_refuses_another_interval_and_does_nothing_in_a_trial() -> None:
    subscription = sub(start=date(2027, 1, 25), trial_days=14)
    with pytest.raises(PeriodRuleError) as refused:
        change_now_lines(subscription, plan("300.00", Interval.YEAR), 1, date(2027, 2, 10))
    assert refused.value.field == "effective"
    assert change_now_lines(subscription, plan("60.00"), 1, date(2027, 2, 1)) == ()
    with pytest.raises(CurrencyMismatchError):
        change_now_lines(subscription, plan("60.00", currency="USD"), 1, date(2027, 2, 10))


def test_cancel_now_with_prorate() -> None:
    subscription = sub(start=date(2027, 1, 31), anchor=BillingAnchor.ANNIVERSARY, quantity=2)
    line = cancel_now_credit(subscription, date(2027, 3, 10))
    assert line is not None
    # Feb 28 - Mar 31 (31 days); Mar 10 - Mar 31 unused: 60 x 21/31 = 40.645...
    assert line.amount == eur("-40.65")
    assert (line.period_start, line.period_end) == (date(2027, 3, 10), date(2027, 3, 31))
    assert cancel_now_credit(sub(start=date(2027, 3, 1), trial_days=30), date(2027, 3, 10)) is None
    canceled = replace(subscription, cancel_at=date(2027, 3, 10))
    assert status_on(canceled, date(2027, 3, 10)) is SubscriptionStatus.CANCELED
    invoices, _, _ = generate([canceled], [at(2027, 6, 1)], "UTC")
    assert [i.period_start for i in invoices] == [date(2027, 1, 31), date(2027, 2, 28)]


def test_a_pending_cancel_and_its_reactivation() -> None:
    subscription = sub(start=date(2027, 1, 1), cancel_at=date(2027, 3, 1))
    assert status_on(subscription, date(2027, 2, 28)) is SubscriptionStatus.ACTIVE
    assert status_on(subscription, date(2027, 3, 1)) is SubscriptionStatus.CANCELED
    assert current_period(subscription, date(2027, 3, 1)) is None
    invoices, _, _ = generate([subscription], [at(2027, 5, 1)], "UTC")
    assert [i.period_start for i in invoices] == [date(2027, 1, 1), date(2027, 2, 1)]
    reactivated = replace(subscription, cancel_at=None)
    invoices, _, _ = generate([reactivated], [at(2027, 5, 1)], "UTC")
    assert len(invoices) == 5


def test_statuses() -> None:
    subscription = sub(start=date(2027, 1, 14), trial_days=7)
    assert status_on(subscription, date(2027, 1, 13)) is SubscriptionStatus.SCHEDULED
    assert current_period(subscription, date(2027, 1, 13)) is None
    assert status_on(subscription, date(2027, 1, 14)) is SubscriptionStatus.TRIALING
    assert status_on(subscription, date(2027, 1, 21)) is SubscriptionStatus.ACTIVE
    assert current_period(subscription, date(2027, 1, 21)) == Period(
        date(2027, 1, 21), date(2027, 2, 1)
    )
    canceled_before_start = replace(subscription, cancel_at=date(2027, 1, 10))
    assert status_on(canceled_before_start, date(2027, 1, 10)) is SubscriptionStatus.CANCELED
    assert list(billing_periods(canceled_before_start)) == []


def test_pending_change_to_another_interval_at_period_end() -> None:
    quarterly = plan("90.00", Interval.MONTH, 3, plan_id=2, name="Pro quarterly")
    subscription = sub(pending=PendingChange(quarterly, 1, date(2027, 2, 1)))
    assert current_period(subscription, date(2027, 3, 1)) == Period(
        date(2027, 2, 1), date(2027, 4, 1)
    )
    invoices, after, _ = generate([subscription], [at(2027, 4, 1)], "UTC")
    assert [(i.period_start, i.lines[0].period_end, i.amount) for i in invoices] == [
        (date(2027, 1, 14), date(2027, 2, 1), eur("17.42")),
        (date(2027, 2, 1), date(2027, 4, 1), eur("59.00")),  # 90 x 59/90 of Q1
        (date(2027, 4, 1), date(2027, 7, 1), eur("90.00")),
    ]
    assert after[0].plan == quarterly
    assert after[0].pending_change is None
    assert after[0].periods_from == date(2027, 2, 1)
    yearly = plan("300.00", Interval.YEAR, plan_id=3)
    anniversary = sub(
        start=date(2027, 1, 14),
        anchor=BillingAnchor.ANNIVERSARY,
        pending=PendingChange(yearly, 2, date(2027, 2, 14)),
    )
    invoices, _, _ = generate([anniversary], [at(2028, 2, 14)], "UTC")
    assert [(i.period_start, i.lines[0].period_end, i.amount) for i in invoices] == [
        (date(2027, 1, 14), date(2027, 2, 14), eur("30.00")),
        (date(2027, 2, 14), date(2028, 2, 14), eur("600.00")),
        (date(2028, 2, 14), date(2029, 2, 14), eur("600.00")),
    ]


def test_a_change_must_take_effect_on_a_period_boundary() -> None:
    subscription = sub(pending=PendingChange(plan("60.00"), 1, date(2027, 2, 10)))
    with pytest.raises(ValueError, match="inside the period"):
        list(billing_periods(subscription))


def test_consolidated_split_and_credit() -> None:
    a = sub(plan("30.00"), date(2027, 1, 1), sub_id=1)
    b = sub(plan("10.00", plan_id=2, name="Seats"), date(2027, 1, 1), sub_id=2, quantity=3)
    c = sub(plan("5.00", plan_id=3), date(2027, 1, 10), sub_id=3)
    invoices, _, credit = generate([c, b, a], [at(2027, 2, 1)], "UTC", credit=eur("70.00"))
    assert [(i.period_start, [line.kind for line in i.lines], i.amount) for i in invoices] == [
        (date(2027, 1, 1), ["subscription", "subscription", "balance"], eur("0.00")),
        (date(2027, 1, 10), ["subscription", "balance"], eur("0.00")),  # 5 x 22/31 = 3.548...
        (
            date(2027, 2, 1),
            ["subscription", "subscription", "subscription", "balance"],
            eur("58.55"),  # 65.00 - the 6.45 left
        ),
    ]
    assert [line.subscription_id for line in invoices[0].lines[:2]] == [1, 2]
    assert invoices[1].lines[1].amount == eur("-3.55")
    assert invoices[2].lines[-1].amount == eur("-6.45")
    assert credit == eur("0.00")
    big = eur("600000000000.00")
    huge = [
        sub(PlanTerms(1, "Big", big, Interval.MONTH), date(2027, 1, 1), sub_id=n) for n in (1, 2)
    ]
    split, _, _ = generate(huge, [at(2027, 1, 1)], "UTC")
    assert [(i.period_start, i.amount) for i in split] == [(date(2027, 1, 1), big)] * 2


def test_one_currency_per_customer() -> None:
    with pytest.raises(CurrencyMismatchError):
        due_invoices(
            [sub(), sub(plan(currency="USD"), sub_id=2)], now=at(2027, 2, 1), timezone="UTC"
        )
    with pytest.raises(ValueError, match="aware"):
        due_invoices([sub()], now=datetime(2027, 2, 1), timezone="UTC")
    assert due_invoices([], now=at(2027, 2, 1), timezone="UTC").invoices == ()
    assert upcoming_invoice([], timezone="UTC") is None


# --- properties -----------------------------------------------------------------------


@st.composite
def plans(draw: st.DrawFn, plan_id: int, calendar: bool) -> PlanTerms:
    interval = draw(st.sampled_from(list(Interval)))
    if calendar:
        count = draw(st.sampled_from(sorted(CALENDAR_COUNTS[interval])))
    else:
        count = draw(st.integers(1, min(MAX_INTERVAL_COUNT[interval], 40)))
    minor = draw(st.integers(0, 10**7))
    return PlanTerms(plan_id, f"Plan {plan_id}", Money.from_minor(minor, EUR), interval, count)


@st.composite
def customers(draw: st.DrawFn) -> tuple[list[SubscriptionTerms], str]:
    timezone = draw(st.sampled_from(ZONES))
    subscriptions = []
    for sub_id in range(1, draw(st.integers(1, 3)) + 1):
        anchor = draw(st.sampled_from(list(BillingAnchor)))
        calendar = anchor is BillingAnchor.CALENDAR
        terms = draw(plans(sub_id, calendar))
        start = draw(st.dates(min_value=date(2024, 1, 1), max_value=date(2032, 6, 30)))
        trial = draw(st.sampled_from([0, 0, 3, 14, 30, 45]))
        subscription = sub(
            terms,
            start,
            sub_id=sub_id,
            quantity=draw(st.integers(1, 5)),
            anchor=anchor,
            trial_days=trial,
        )
        if draw(st.booleans()):
            new = draw(plans(100 + sub_id, calendar))
            k = draw(st.integers(1, 4))
            effective = subscription.schedule.boundary(k)
            subscription = replace(
                subscription, pending_change=PendingChange(new, draw(st.integers(1, 5)), effective)
            )
        if draw(st.booleans()):
            cancel_at = subscription.billing_start + timedelta(days=draw(st.integers(0, 400)))
            subscription = replace(subscription, cancel_at=cancel_at)
        subscriptions.append(subscription)
    return subscriptions, timezone


def horizon(subscriptions: Sequence[SubscriptionTerms], days: int) -> datetime:
    earliest = min(s.start_date for s in subscriptions)
    return at(earliest.year, earliest.month, earliest.day) + timedelta(days=days)


@settings(max_examples=60, deadline=None)
@given(
    customers(), st.lists(st.integers(0, 200 * 24), min_size=1, max_size=6), st.integers(0, 5000)
)
def test_generation_bills_every_period_once_whenever_it_runs(
    customer: tuple[list[SubscriptionTerms], str], hours: list[int], credit_minor: int
) -> None:
    subscriptions, timezone = customer
    end = horizon(subscriptions, 200)
    moments = sorted({end - timedelta(hours=h) for h in hours} | {end})
    credit = Money.from_minor(credit_minor, EUR)
    piecewise, _, left = generate(subscriptions, moments, timezone, credit, limit=2)
    at_once, _, left_at_once = generate(subscriptions, [end], timezone, credit)
    assert piecewise == at_once  # catch-up bills each period as it would have been on time
    assert left == left_at_once
    for invoice in at_once:
        assert invoice.due_at == first_instant(invoice.period_start, timezone) <= end
        assert invoice.amount.value >= 0
    for subscription in subscriptions:
        mine = [
            line
            for line in lines_of(at_once)
            if line.subscription_id == subscription.id and line.kind == LineKind.SUBSCRIPTION
        ]
        spans = [(line.period_start, line.period_end) for line in mine]
        assert len(set(spans)) == len(spans)  # once
        if not mine:
            continue
        assert spans[0][0] == subscription.billing_start
        for (_, end_before), (start_after, _) in itertools.pairwise(spans):
            assert end_before == start_after  # no gap, no overlap
        if subscription.cancel_at is not None:
            assert spans[-1][0] < subscription.cancel_at
        # Nothing left that was due: the next period starts after `end`'s local date.
        following = spans[-1][1]
        stopped = subscription.cancel_at is not None and following >= subscription.cancel_at
        assert stopped or first_instant(following, timezone) > end
        assert local_date(end, timezone) < following or stopped


@settings(max_examples=60, deadline=None)
@given(customers(), st.integers(0, 400 * 24), st.integers(0, 5000))
def test_the_preview_is_the_invoice_generated_later(
    customer: tuple[list[SubscriptionTerms], str], hours: int, credit_minor: int
) -> None:
    subscriptions, timezone = customer
    now = horizon(subscriptions, 0) + timedelta(hours=hours)
    credit = Money.from_minor(credit_minor, EUR)
    _, current, credit_now = generate(subscriptions, [now], timezone, credit)
    preview = upcoming_invoice(current, timezone=timezone, credit=credit_now)
    if preview is None:
        assert all(s.cancel_at is not None for s in subscriptions)
        return
    assert preview.due_at > now
    later = preview.due_at + timedelta(hours=hours % 50)
    generated = due_invoices(current, now=later, timezone=timezone, credit=credit_now)
    assert generated.invoices[0] == preview


def test_change_now_outcome_invoices_an_upgrade_and_credits_a_downgrade() -> None:
    subscription = sub(start=date(2027, 1, 1))
    now = at(2027, 2, 15, 9, 30)  # 10:30 in Copenhagen: today is Feb 15
    up = change_now_outcome(
        subscription, plan("60.00", plan_id=2), 1, now=now, timezone=CPH, credit=eur("4.00")
    )
    assert up.invoice is not None
    assert up.invoice.due_at == now
    assert [line.kind for line in up.invoice.lines] == ["credit", "proration", "balance"]
    assert up.invoice.amount == eur("11.00")  # -15.00 + 30.00 - 4.00
    assert (up.credit_added, up.credit_left) == (eur("0.00"), eur("0.00"))
    upgraded = replace(subscription, plan=plan("60.00", plan_id=2))
    down = change_now_outcome(upgraded, plan(), 1, now=now, timezone=CPH, credit=eur("4.00"))
    assert down.invoice is None
    assert [line.amount for line in down.lines] == [eur("-30.00"), eur("15.00")]
    assert (down.credit_added, down.credit_left) == (eur("15.00"), eur("19.00"))
    # Late on the 14th in UTC is already the 15th in Kiritimati: one day fewer.
    east = change_now_outcome(
        subscription,
        plan("60.00", plan_id=2),
        1,
        now=at(2027, 2, 14, 10),
        timezone="Pacific/Kiritimati",
        credit=eur("0.00"),
    )
    assert east.invoice is not None
    assert east.invoice.amount == eur("15.00")
    in_trial = sub(start=date(2027, 2, 10), trial_days=14)
    nothing = change_now_outcome(
        in_trial, plan("60.00"), 1, now=now, timezone=CPH, credit=eur("4.00")
    )
    assert (nothing.lines, nothing.invoice, nothing.credit_left) == ((), None, eur("4.00"))


def test_next_due_at_follows_billing() -> None:
    subscription = sub(start=date(2027, 1, 14), cancel_at=date(2027, 3, 1))
    assert next_due_at(subscription, CPH) == at(2027, 1, 13, 23)
    _, (billed,), _ = generate([subscription], [at(2027, 1, 14)], CPH)
    assert next_due_at(billed, CPH) == at(2027, 1, 31, 23)
    _, (done,), _ = generate([billed], [at(2027, 3, 1)], CPH)
    assert done.next_period_start == date(2027, 3, 1)
    assert next_due_at(done, CPH) is None  # canceled from March 1st


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2024, 2031),
    st.integers(1, 12),
    st.integers(29, 31),
    st.sampled_from(ZONES),
    st.lists(st.integers(0, 500 * 24), max_size=5),
)
def test_anniversaries_on_the_29th_to_31st_never_drift_through_generation(
    year: int, month: int, day: int, timezone: str, hours: list[int]
) -> None:
    last = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    origin = date(year, month, min(day, last))
    subscription = sub(start=origin, anchor=BillingAnchor.ANNIVERSARY)
    end = at(origin.year, origin.month, origin.day) + timedelta(days=500)
    moments = sorted({end - timedelta(hours=h) for h in hours} | {end})
    invoices, _, _ = generate([subscription], moments, timezone)
    for k, invoice in enumerate(invoices):
        index = origin.year * 12 + origin.month - 1 + k
        y, m = divmod(index, 12)
        month_days = (date(y + m // 11, (m + 1) % 12 + 1, 1) - timedelta(days=1)).day
        assert invoice.period_start == date(y, m + 1, min(origin.day, month_days))
