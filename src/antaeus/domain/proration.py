"""Subscription money rules: proration and monthly recurring revenue, exact to the minor unit.

Every computation is an exact fraction (`fractions.Fraction` of Decimals, never
a float, never a Decimal division that rounds at 28 digits), rounded **once**
at the end to the currency's minor unit, half away from zero (`ROUND_HALF_UP`
on the magnitude: 0.005 EUR -> 0.01, -0.005 EUR -> -0.01).

- `prorate`: `amount x quantity x days / whole_days`, one invoice line.
- `monthly_recurring_revenue`: a month x N counts 1/N of its price a month, a
  year x N 1/(12N), a week x N 52/(12N), a day x N 365/(12N), times quantity,
  summed exactly per currency and rounded once per currency.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from typing import Final

from antaeus.domain.money import Currency, Money
from antaeus.domain.periods import Interval

#: Months a single interval unit lasts, for MRR (a week is 52/12 of a month, a day 365/12).
_MONTHS_PER_UNIT: Final[dict[Interval, Fraction]] = {
    Interval.DAY: Fraction(12, 365),
    Interval.WEEK: Fraction(12, 52),
    Interval.MONTH: Fraction(1),
    Interval.YEAR: Fraction(12),
}


def round_half_away(value: Fraction, currency: Currency) -> Money:
    """`value` rounded to `currency`'s minor unit, half away from zero, as Money."""
    scaled = value * 10**currency.minor_units
    magnitude = abs(scaled)
    whole, rest = divmod(magnitude.numerator, magnitude.denominator)
    if 2 * rest >= magnitude.denominator:
        whole += 1
    minor = -whole if scaled < 0 else whole
    return Money.from_minor(minor, currency)


def prorate(amount: Money, quantity: int, days: int, whole_days: int) -> Money:
    """`amount x quantity x days / whole_days`, rounded half away from zero to the minor unit.

    `days` of a whole period of `whole_days` (0 <= days <= whole_days, whole local
    days); `days == whole_days` gives exactly `amount x quantity`.
    """
    if whole_days <= 0 or not 0 <= days <= whole_days:
        raise ValueError(f"cannot prorate {days} days of a period of {whole_days}")
    if quantity < 0:
        raise ValueError("quantity must not be negative")
    if days == whole_days:  # a whole period: exact, no fraction needed
        return Money(amount.value * quantity, amount.currency)
    exact = Fraction(amount.value) * quantity * days / whole_days
    return round_half_away(exact, amount.currency)


def monthly_fraction(interval: Interval, count: int) -> Fraction:
    """What share of one period's price a plan of `count` x `interval` earns per month."""
    return 1 / (_MONTHS_PER_UNIT[interval] * count)


def monthly_recurring_revenue(
    items: Iterable[tuple[Money, Interval, int, int]],
) -> dict[Currency, Money]:
    """MRR per currency of `(plan amount, interval, intervalCount, quantity)` items.

    Which subscriptions count (`active`, a pending cancel included, trials not)
    is the caller's choice. Sums are exact; each currency is rounded once.
    """
    sums: dict[Currency, Fraction] = {}
    for amount, interval, count, quantity in items:
        share = Fraction(amount.value) * quantity * monthly_fraction(interval, count)
        sums[amount.currency] = sums.get(amount.currency, Fraction(0)) + share
    return {currency: round_half_away(total, currency) for currency, total in sums.items()}
