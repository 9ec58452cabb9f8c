"""Proration and MRR (issue 21): exact fractions, each line rounded once, half away from zero."""

from __future__ import annotations

import itertools
import math
from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from antaeus.domain.money import CURRENCIES, Currency, Money
from antaeus.domain.periods import BillingAnchor, Interval, Schedule
from antaeus.domain.proration import (
    monthly_fraction,
    monthly_recurring_revenue,
    prorate,
    round_half_away,
)

EUR, JPY, KWD = Currency("EUR"), Currency("JPY"), Currency("KWD")


def money(text: str, code: str) -> Money:
    return Money.of(text, code)


@st.composite
def prices(draw: st.DrawFn) -> tuple[Money, int]:
    """A plan amount and a quantity whose product stays within the currency's maximum."""
    currency = draw(st.sampled_from([EUR, JPY, KWD, *CURRENCIES]))
    quantity = draw(st.integers(1, 1_000_000))
    top = currency.max_amount / quantity
    minor = draw(st.integers(0, int(top.scaleb(currency.minor_units))))
    return Money.from_minor(minor, currency), quantity


# --- worked cases ---------------------------------------------------------------------


def test_calendar_month_from_january_14th_pays_18_of_31() -> None:
    assert prorate(money("30.00", "EUR"), 1, 18, 31) == money("17.42", "EUR")  # 17.419...
    assert prorate(money("30.00", "EUR"), 2, 18, 31) == money("34.84", "EUR")  # 34.838...


def test_jpy_and_kwd_prorations() -> None:
    assert prorate(money("1000", "JPY"), 1, 18, 31) == money("581", "JPY")  # 580.645...
    assert prorate(money("1000", "JPY"), 3, 10, 30) == money("1000", "JPY")
    assert prorate(money("10.000", "KWD"), 1, 18, 31) == money("5.806", "KWD")  # 5.80645...
    assert prorate(money("7.250", "KWD"), 3, 20, 28) == money("15.536", "KWD")  # 15.5357...


def test_half_a_minor_unit_rounds_away_from_zero() -> None:
    assert prorate(money("1", "JPY"), 1, 15, 30) == money("1", "JPY")  # 0.5
    assert prorate(money("0.01", "EUR"), 1, 15, 30) == money("0.01", "EUR")  # 0.005
    assert prorate(money("0.001", "KWD"), 1, 15, 30) == money("0.001", "KWD")  # 0.0005
    assert prorate(money("3", "JPY"), 1, 15, 30) == money("2", "JPY")  # 1.5
    assert round_half_away(Fraction(-1, 2), JPY) == money("-1", "JPY")
    assert round_half_away(Fraction(-3, 200), EUR) == money("-0.02", "EUR")
    assert round_half_away(Fraction(-1, 3), EUR) == money("-0.33", "EUR")


def test_a_whole_period_costs_exactly_the_price() -> None:
    assert prorate(money("30.00", "EUR"), 7, 31, 31) == money("210.00", "EUR")
    assert prorate(money("30.00", "EUR"), 7, 0, 31) == money("0.00", "EUR")


@pytest.mark.parametrize(("days", "whole"), [(-1, 30), (31, 30), (1, 0)])
def test_impossible_proration_is_refused(days: int, whole: int) -> None:
    with pytest.raises(ValueError, match="cannot prorate"):
        prorate(money("30.00", "EUR"), 1, days, whole)


def test_mrr_worked_example() -> None:
    items = [
        (money("30.00", "EUR"), Interval.MONTH, 1, 2),  # 60
        (money("120.00", "EUR"), Interval.YEAR, 1, 1),  # 10
        (money("90.00", "EUR"), Interval.MONTH, 3, 1),  # 30
        (money("12.00", "EUR"), Interval.WEEK, 1, 1),  # 52
        # three subscriptions of 30.41666... each: 91.25 rounded once (91.26 rounded each)
        *[(money("1.00", "EUR"), Interval.DAY, 1, 1)] * 3,
        (money("1000", "JPY"), Interval.YEAR, 2, 1),  # 41.666... -> 42
        (money("7.000", "KWD"), Interval.WEEK, 2, 1),  # 7 x 52 / 24 = 15.1666... -> 15.167
    ]
    assert monthly_recurring_revenue(items) == {
        EUR: money("243.25", "EUR"),
        JPY: money("42", "JPY"),
        KWD: money("15.167", "KWD"),
    }
    assert monthly_recurring_revenue([]) == {}


def test_mrr_shares() -> None:
    assert monthly_fraction(Interval.MONTH, 3) == Fraction(1, 3)
    assert monthly_fraction(Interval.YEAR, 2) == Fraction(1, 24)
    assert monthly_fraction(Interval.WEEK, 2) == Fraction(52, 24)
    assert monthly_fraction(Interval.DAY, 7) == Fraction(365, 84)


# --- properties -----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(prices(), st.integers(1, 366), st.data())
def test_prorate_is_the_exact_value_rounded_half_up(
    price: tuple[Money, int], whole: int, data: st.DataObject
) -> None:
    amount, quantity = price
    days = data.draw(st.integers(0, whole))
    line = prorate(amount, quantity, days, whole)
    exact = amount.value * quantity * days / Decimal(whole)  # 28 digits: enough to compare
    assert abs(line.value - exact) <= amount.currency.quantum / 2 + Decimal("1e-20")
    scaled = Fraction(amount.value) * quantity * days / whole * 10**amount.currency.minor_units
    assert line.minor == math.floor(scaled + Fraction(1, 2))  # half up; never negative here
    assert line.value.as_tuple().exponent == -amount.currency.minor_units


@settings(max_examples=150, deadline=None)
@given(
    prices(),
    st.sampled_from(list(Interval)),
    st.sampled_from(list(BillingAnchor)),
    st.dates(min_value=date(2024, 1, 1), max_value=date(2032, 12, 31)),
    st.lists(st.integers(1, 400), max_size=6),
)
def test_proration_over_a_whole_period_sums_to_the_price(
    price: tuple[Money, int],
    interval: Interval,
    anchor: BillingAnchor,
    day: date,
    cuts: list[int],
) -> None:
    """Cut a whole period anywhere: the prorated pieces add up to the full price, within
    one minor unit per line."""
    amount, quantity = price
    schedule = Schedule(interval, 1, anchor, day)
    whole = schedule.whole_period_containing(day)
    points = sorted(
        {whole.start, whole.end}
        | {whole.start.fromordinal(whole.start.toordinal() + c % whole.days) for c in cuts}
    )
    pieces = list(itertools.pairwise(points))
    lines = [prorate(amount, quantity, (b - a).days, whole.days) for a, b in pieces]
    total = sum((line.value for line in lines), Decimal(0))
    full = amount.value * quantity
    assert abs(total - full) <= amount.currency.quantum * len(lines) / 2
    assert sum((b - a).days for a, b in pieces) == whole.days
