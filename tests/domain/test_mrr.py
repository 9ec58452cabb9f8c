"""MRR (issue 21, the dashboard's overview): each plan's price brought to a month exactly,
times quantity, summed exactly per currency, rounded once, half away from zero.

The expected values are worked out here on their own (integer arithmetic on exact
fractions), not with the module's helpers.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from antaeus.domain.money import Currency, Money
from antaeus.domain.periods import MAX_INTERVAL_COUNT, Interval
from antaeus.domain.proration import monthly_recurring_revenue

EUR, JPY, KWD, USD = Currency("EUR"), Currency("JPY"), Currency("KWD"), Currency("USD")

#: a month x N is 1/N of its price a month; a year 1/(12N); a week 52/(12N); a day 365/(12N)
PER_MONTH = {
    Interval.MONTH: Fraction(1),
    Interval.YEAR: Fraction(1, 12),
    Interval.WEEK: Fraction(52, 12),
    Interval.DAY: Fraction(365, 12),
}

Item = tuple[Money, Interval, int, int]


def expected(items: list[Item]) -> dict[Currency, Money]:
    sums: dict[Currency, Fraction] = {}
    for amount, interval, count, quantity in items:
        share = Fraction(amount.minor) * quantity * PER_MONTH[interval] / count
        sums[amount.currency] = sums.get(amount.currency, Fraction(0)) + share
    # every amount is >= 0: half away from zero is floor(x + 1/2)
    return {c: Money.from_minor(math.floor(total + Fraction(1, 2)), c) for c, total in sums.items()}


def eur(text: str) -> Money:
    return Money.of(text, "EUR")


def test_worked_cases() -> None:
    assert monthly_recurring_revenue([(eur("30.00"), Interval.MONTH, 1, 2)]) == {EUR: eur("60.00")}
    assert monthly_recurring_revenue([(eur("100.00"), Interval.YEAR, 1, 1)]) == {
        EUR: eur("8.33")  # 8.333...
    }
    assert monthly_recurring_revenue([(eur("10.00"), Interval.WEEK, 2, 1)]) == {
        EUR: eur("21.67")  # 10 x 52 / 24 = 21.666...
    }
    assert monthly_recurring_revenue([(eur("1.00"), Interval.DAY, 1, 1)]) == {
        EUR: eur("30.42")  # 365 / 12 = 30.41666...
    }
    assert monthly_recurring_revenue([(Money.of("500", "JPY"), Interval.MONTH, 3, 1)]) == {
        JPY: Money.of("167", "JPY")  # 166.666...
    }


def test_one_rounding_per_currency_not_per_subscription() -> None:
    # 0.005 EUR a month each: three round to 0.02 together (0.015), not 0.03 each rounded
    tiny = (eur("0.06"), Interval.YEAR, 1, 1)
    assert monthly_recurring_revenue([tiny]) == {EUR: eur("0.01")}  # 0.005 -> 0.01
    assert monthly_recurring_revenue([tiny] * 3) == {EUR: eur("0.02")}  # 0.015 -> 0.02
    assert monthly_recurring_revenue([tiny] * 4) == {EUR: eur("0.02")}  # 0.02


def test_mixed_currencies_are_summed_apart() -> None:
    items = [
        (eur("30.00"), Interval.MONTH, 1, 2),
        (Money.of("1000", "JPY"), Interval.YEAR, 2, 1),
        (Money.of("7.000", "KWD"), Interval.WEEK, 2, 1),
        (eur("120.00"), Interval.YEAR, 1, 1),
    ]
    assert monthly_recurring_revenue(items) == {
        EUR: eur("70.00"),
        JPY: Money.of("42", "JPY"),  # 41.666...
        KWD: Money.of("15.167", "KWD"),  # 15.1666...
    }


@st.composite
def items(draw: st.DrawFn) -> Item:
    currency = draw(st.sampled_from([EUR, JPY, KWD, USD]))
    interval = draw(st.sampled_from(list(Interval)))
    count = draw(st.integers(1, MAX_INTERVAL_COUNT[interval]))
    quantity = draw(st.integers(1, 1000))
    minor = draw(st.integers(0, 10**9))
    return Money.from_minor(minor, currency), interval, count, quantity


@settings(max_examples=300, deadline=None)
@given(st.lists(items(), max_size=25))
def test_the_exact_sum_rounded_once(found: list[Item]) -> None:
    assert monthly_recurring_revenue(found) == expected(found)


@settings(max_examples=200, deadline=None)
@given(st.lists(items(), min_size=1, max_size=12), st.randoms(use_true_random=False))
def test_order_and_splitting_do_not_matter(found: list[Item], rnd: random.Random) -> None:
    """A subscription of quantity q counts as q subscriptions of quantity 1, in any order:
    true of an exact sum, false of a sum of rounded shares."""
    split = [(a, i, c, 1) for a, i, c, q in found for _ in range(min(q, 20))]
    capped = [(a, i, c, min(q, 20)) for a, i, c, q in found]
    shuffled = list(split)
    rnd.shuffle(shuffled)
    assert monthly_recurring_revenue(shuffled) == monthly_recurring_revenue(capped)


@settings(max_examples=200, deadline=None)
@given(st.lists(items(), max_size=25))
def test_within_half_a_minor_unit_of_the_exact_sum(found: list[Item]) -> None:
    got = monthly_recurring_revenue(found)
    for currency, total in got.items():
        exact = sum(
            (
                Fraction(a.value) * q * PER_MONTH[i] / c
                for a, i, c, q in found
                if a.currency is currency
            ),
            Fraction(0),
        )
        assert abs(Fraction(total.value) - exact) <= Fraction(currency.quantum) / 2
