"""Money, parse_amount and parse_currency: exact decimals, two minor units, one currency."""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from antaeus.domain.money import (
    MAX_AMOUNT,
    ORIGINAL_CURRENCIES,
    Currency,
    CurrencyMismatchError,
    Money,
    MoneyError,
    parse_amount,
    parse_currency,
)

TWO_DECIMALS = re.compile(r"-?[0-9]+\.[0-9]{2}")
MAX_MINOR = int(MAX_AMOUNT * 100)  # 99_999_999_999_999

currencies = st.sampled_from(ORIGINAL_CURRENCIES)
minor_units = st.integers(min_value=-MAX_MINOR, max_value=MAX_MINOR)
# Small enough that sums of three stay within MAX_AMOUNT.
summable_minor = st.integers(min_value=-(MAX_MINOR // 3), max_value=MAX_MINOR // 3)


def canonical(minor: int) -> str:
    """The two-decimal text of `minor` cents, written without Decimal."""
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    return f"{sign}{whole}.{cents:02d}"


@st.composite
def amount_texts(draw: st.DrawFn) -> tuple[str, str]:
    """A decimal string with 0, 1 or 2 decimals, and the two-decimal text it means."""
    whole = draw(st.integers(min_value=0, max_value=999_999_999_999))
    decimals = draw(st.sampled_from([0, 1, 2]))
    if decimals == 0:
        cents, fraction = 0, ""
    elif decimals == 1:
        tenth = draw(st.integers(min_value=0, max_value=9))
        cents, fraction = tenth * 10, f".{tenth}"
    else:
        cents = draw(st.integers(min_value=0, max_value=99))
        fraction = f".{cents:02d}"
    minor = whole * 100 + cents
    sign = "-" if minor and draw(st.booleans()) else ""  # never a negative zero
    return f"{sign}{whole}{fraction}", canonical(-minor if sign else minor)


def money_pairs(
    amounts: st.SearchStrategy[int] = summable_minor,
) -> st.SearchStrategy[tuple[Money, Money]]:
    return currencies.flatmap(
        lambda cur: st.tuples(
            amounts.map(lambda m: Money.from_minor(m, cur)),
            amounts.map(lambda m: Money.from_minor(m, cur)),
        )
    )


def money_triples() -> st.SearchStrategy[tuple[Money, Money, Money]]:
    return currencies.flatmap(
        lambda cur: st.tuples(
            *(summable_minor.map(lambda m: Money.from_minor(m, cur)) for _ in range(3))
        )
    )


distinct_currencies = st.tuples(currencies, currencies).filter(lambda p: p[0] is not p[1])


# --- parse_currency -----------------------------------------------------------------


@pytest.mark.parametrize("code", ["EUR", "USD", "DKK", "SEK", "GBP"])
def test_parse_currency_accepts_supported_codes(code: str) -> None:
    currency = parse_currency(code)
    assert currency is Currency(code)
    assert currency.value == code
    assert currency.minor_units == 2


@pytest.mark.parametrize("text", ["", "eur", "Eur", " EUR", "EUR ", "XXX", "EURO", "€", "XAU"])
def test_parse_currency_refuses_anything_else(text: str) -> None:
    with pytest.raises(MoneyError, match="unknown currency"):
        parse_currency(text)


# --- parse_amount: accepted ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "0.00"),
        ("5", "5.00"),
        ("5.5", "5.50"),
        ("123.4", "123.40"),
        ("123.45", "123.45"),
        ("0.01", "0.01"),
        ("-12.3", "-12.30"),
        ("007.10", "7.10"),
        ("999999999999.99", "999999999999.99"),
        ("-999999999999.99", "-999999999999.99"),
        (0, "0.00"),
        (42, "42.00"),
        (-7, "-7.00"),
        (999_999_999_999, "999999999999.00"),
        (Decimal("1.2"), "1.20"),
        (Decimal("1.20"), "1.20"),
        (Decimal("1E+2"), "100.00"),
        (Decimal("-0.5"), "-0.50"),
        (MAX_AMOUNT, "999999999999.99"),
    ],
)
def test_parse_amount_accepts_exact_values_with_two_decimals(value: object, expected: str) -> None:
    amount = parse_amount(value)
    assert isinstance(amount, Decimal)
    assert str(amount) == expected


@given(amount_texts())
def test_decimal_string_round_trips_through_money(case: tuple[str, str]) -> None:
    text, expected = case
    money = Money.of(text, Currency.EUR)
    assert str(money.value) == expected
    assert str(money) == f"{expected} EUR"
    # The two-decimal text parses back to the same money.
    assert Money.of(str(money.value), Currency.EUR) == money


@given(minor_units, currencies)
def test_minor_units_round_trip_through_money(minor: int, currency: Currency) -> None:
    money = Money.from_minor(minor, currency)
    assert money.minor == minor
    assert money.currency is currency
    assert str(money.value) == canonical(minor)
    assert Money.of(canonical(minor), currency) == money


@given(minor_units, currencies)
def test_value_always_has_exactly_two_decimals(minor: int, currency: Currency) -> None:
    money = Money.from_minor(minor, currency)
    assert TWO_DECIMALS.fullmatch(str(money.value))
    assert money.value.as_tuple().exponent == -2


@given(st.integers(min_value=-(10**12) + 1, max_value=10**12 - 1))
def test_integers_parse_to_whole_amounts(number: int) -> None:
    assert str(parse_amount(number)) == f"{number}.00"


# --- parse_amount: refused ----------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(1.5, id="float"),
        pytest.param(0.0, id="float-zero"),
        pytest.param(10.0, id="float-whole"),
        pytest.param(float("nan"), id="float-nan"),
        pytest.param(float("inf"), id="float-inf"),
        pytest.param(True, id="true"),
        pytest.param(False, id="false"),
        pytest.param(Decimal("NaN"), id="decimal-nan"),
        pytest.param(Decimal("sNaN"), id="decimal-snan"),
        pytest.param(Decimal("Infinity"), id="decimal-inf"),
        pytest.param(Decimal("-Infinity"), id="decimal-minus-inf"),
        pytest.param(Decimal("1.230"), id="decimal-three-decimals-trailing-zero"),
        pytest.param(Decimal("1.234"), id="decimal-three-decimals"),
        pytest.param(Decimal("0.001"), id="decimal-tenth-of-a-cent"),
        pytest.param(Decimal("1000000000000"), id="decimal-over-max"),
        pytest.param(-Decimal("1000000000000"), id="decimal-under-minus-max"),
        pytest.param(MAX_AMOUNT + Decimal("0.01"), id="decimal-max-plus-a-cent"),
        pytest.param(10**12, id="int-over-max"),
        pytest.param(-(10**12), id="int-under-minus-max"),
        pytest.param("NaN", id="str-nan"),
        pytest.param("nan", id="str-nan-lower"),
        pytest.param("Infinity", id="str-inf"),
        pytest.param("inf", id="str-inf-lower"),
        pytest.param("-Infinity", id="str-minus-inf"),
        pytest.param("1.230", id="str-three-decimals-trailing-zero"),
        pytest.param("1.234", id="str-three-decimals"),
        pytest.param("0.001", id="str-tenth-of-a-cent"),
        pytest.param("1000000000000", id="str-over-max"),
        pytest.param("1000000000000.00", id="str-over-max-with-decimals"),
        pytest.param("999999999999.999", id="str-max-with-third-decimal"),
        pytest.param("-1000000000000", id="str-under-minus-max"),
        pytest.param("9999999999999", id="str-thirteen-digits"),
        pytest.param("99999999999999", id="str-fourteen-digits"),
        pytest.param("+5", id="str-plus-sign"),
        pytest.param(" 5", id="str-leading-space"),
        pytest.param("5 ", id="str-trailing-space"),
        pytest.param("5\n", id="str-trailing-newline"),
        pytest.param("\t5", id="str-leading-tab"),
        pytest.param("1e5", id="str-exponent"),
        pytest.param("1E5", id="str-exponent-upper"),
        pytest.param("1e-2", id="str-negative-exponent"),
        pytest.param("", id="str-empty"),
        pytest.param("-", id="str-minus-only"),
        pytest.param(".5", id="str-no-whole-part"),
        pytest.param("5.", id="str-no-decimals"),
        pytest.param("1,00", id="str-comma"),
        pytest.param("1_000", id="str-underscore"),
        pytest.param("0x10", id="str-hex"),
        pytest.param("--5", id="str-double-minus"),
        pytest.param("5 EUR", id="str-with-currency"),
        pytest.param("\u0665", id="str-arabic-indic-digit"),
        pytest.param("\uff15", id="str-fullwidth-digit"),
        pytest.param(None, id="none"),
        pytest.param(b"5", id="bytes"),
        pytest.param([5], id="list"),
    ],
)
def test_parse_amount_refuses_inexact_or_out_of_range(value: object) -> None:
    with pytest.raises(MoneyError):
        parse_amount(value)


@pytest.mark.parametrize("value", ["1.230", 1.5, True, "NaN", "1000000000000"])
def test_money_of_refuses_what_parse_amount_refuses(value: object) -> None:
    with pytest.raises(MoneyError):
        Money.of(value, Currency.EUR)


@given(
    st.integers(min_value=1, max_value=10**20).map(lambda n: Decimal(n) + MAX_AMOUNT),
    st.booleans(),
)
def test_anything_beyond_max_amount_is_refused(over: Decimal, negative: bool) -> None:
    value = -over if negative else over
    with pytest.raises(MoneyError):
        parse_amount(value)
    with pytest.raises(MoneyError):
        parse_amount(str(value))


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_every_float_is_refused(value: float) -> None:
    with pytest.raises(MoneyError):
        parse_amount(value)


@given(
    st.integers(min_value=-(10**6), max_value=10**6),
    st.integers(min_value=1, max_value=9),
    st.integers(min_value=3, max_value=6),
)
def test_more_than_two_decimals_is_refused_even_with_trailing_zeros(
    whole: int, digit: int, decimals: int
) -> None:
    # e.g. "12.300", "12.3000", ...: a third decimal is refused even when it is zero
    text = f"{whole}.{digit}{'0' * (decimals - 1)}"
    with pytest.raises(MoneyError):
        parse_amount(text)
    with pytest.raises(MoneyError):
        parse_amount(Decimal(text))


def test_money_error_is_a_value_error() -> None:
    assert issubclass(MoneyError, ValueError)
    assert issubclass(CurrencyMismatchError, MoneyError)


# --- the Money value ----------------------------------------------------------------


def test_money_of_accepts_currency_code_text() -> None:
    money = Money.of("123.4", "USD")
    assert money.currency is Currency.USD
    assert str(money.value) == "123.40"
    assert str(money) == "123.40 USD"


def test_money_of_refuses_unknown_currency() -> None:
    with pytest.raises(MoneyError, match="unknown currency"):
        Money.of("1", "XXX")


@pytest.mark.parametrize("value", [1, 1.5, "1.00", None])
def test_money_holds_only_decimals(value: Any) -> None:
    with pytest.raises(MoneyError):
        Money(value, Currency.EUR)


def test_money_normalizes_to_two_decimals() -> None:
    assert str(Money(Decimal("1.2"), Currency.EUR).value) == "1.20"
    assert str(Money(Decimal("7"), Currency.EUR).value) == "7.00"


@pytest.mark.parametrize("value", ["1.234", "1.230", "NaN", "Infinity"])
def test_money_refuses_more_than_two_decimals_or_non_finite(value: str) -> None:
    with pytest.raises(MoneyError):
        Money(Decimal(value), Currency.EUR)


def test_zero() -> None:
    zero = Money.zero(Currency.SEK)
    assert str(zero.value) == "0.00"
    assert zero.minor == 0
    assert zero.currency is Currency.SEK
    assert not zero.is_positive


@pytest.mark.parametrize(
    ("text", "positive"), [("0.01", True), ("5", True), ("0", False), ("-0.01", False)]
)
def test_is_positive(text: str, positive: bool) -> None:
    assert Money.of(text, Currency.EUR).is_positive is positive


def test_money_is_immutable() -> None:
    money = Money.of("1", Currency.EUR)
    with pytest.raises(dataclasses.FrozenInstanceError):
        money.value = Decimal("2.00")  # type: ignore[misc]


def test_equal_amounts_in_different_currencies_are_not_equal() -> None:
    assert Money.of("1", Currency.EUR) != Money.of("1", Currency.USD)
    assert Money.of("1", Currency.EUR) == Money.of("1.00", Currency.EUR)


@pytest.mark.parametrize("text", ["-0", "-0.0", "-0.00"])
def test_negative_zero_is_written_as_zero(text: str) -> None:
    assert str(Money.of(text, Currency.EUR).value) == "0.00"


@pytest.mark.parametrize("minor", [MAX_MINOR + 1, -(MAX_MINOR + 1)])
def test_from_minor_allows_totals_beyond_the_input_limit(minor: int) -> None:
    # MAX_AMOUNT bounds what a client may invoice; a run's total may exceed it.
    assert Money.from_minor(minor, Currency.EUR).minor == minor


def test_from_minor_refuses_more_digits_than_decimal_holds_with_money_error() -> None:
    with pytest.raises(MoneyError):
        Money.from_minor(10**40, Currency.EUR)


# --- arithmetic within one currency -------------------------------------------------


def test_addition_and_subtraction_examples() -> None:
    a = Money.of("10.10", Currency.EUR)
    b = Money.of("0.95", Currency.EUR)
    assert str(a + b) == "11.05 EUR"
    assert str(a - b) == "9.15 EUR"
    assert str(b - a) == "-9.15 EUR"
    assert str(-a) == "-10.10 EUR"
    # the float classic: exact with Decimal
    assert Money.of("0.1", Currency.EUR) + Money.of("0.2", Currency.EUR) == Money.of(
        "0.3", Currency.EUR
    )


@given(money_pairs())
def test_addition_is_commutative(pair: tuple[Money, Money]) -> None:
    a, b = pair
    assert a + b == b + a


@given(money_triples())
def test_addition_is_associative(triple: tuple[Money, Money, Money]) -> None:
    a, b, c = triple
    assert (a + b) + c == a + (b + c)


@given(money_pairs())
def test_subtraction_is_the_inverse_of_addition(pair: tuple[Money, Money]) -> None:
    a, b = pair
    assert (a + b) - b == a
    assert (a - b) + b == a
    assert a - b == a + (-b)
    negated = -a
    assert -negated == a
    assert negated.minor == -a.minor


@given(money_pairs())
def test_arithmetic_matches_minor_units(pair: tuple[Money, Money]) -> None:
    a, b = pair
    total = a + b
    difference = a - b
    assert total.minor == a.minor + b.minor
    assert difference.minor == a.minor - b.minor
    assert total.currency is a.currency
    assert difference.currency is a.currency
    assert TWO_DECIMALS.fullmatch(str(total.value))
    assert TWO_DECIMALS.fullmatch(str(difference.value))


@given(summable_minor, currencies)
def test_zero_is_the_identity_and_self_subtraction_is_zero(minor: int, cur: Currency) -> None:
    a = Money.from_minor(minor, cur)
    zero = Money.zero(cur)
    assert a + zero == a
    assert a - zero == a
    assert a - a == zero
    assert str((a - a).value) == "0.00"


@given(money_pairs(minor_units))
def test_ordering_matches_minor_units(pair: tuple[Money, Money]) -> None:
    a, b = pair
    assert (a < b) is (a.minor < b.minor)
    assert (a <= b) is (a.minor <= b.minor)
    assert (a > b) is (a.minor > b.minor)
    assert (a >= b) is (a.minor >= b.minor)
    assert (a == b) is (a.minor == b.minor)


# --- mixed currencies ---------------------------------------------------------------

OPERATIONS: list[tuple[str, Callable[[Money, Money], object]]] = [
    ("+", operator.add),
    ("-", operator.sub),
    ("<", operator.lt),
    ("<=", operator.le),
    (">", operator.gt),
    (">=", operator.ge),
]


@pytest.mark.parametrize(("symbol", "op"), OPERATIONS, ids=[s for s, _ in OPERATIONS])
def test_mixed_currency_operation_raises(symbol: str, op: Callable[[Money, Money], object]) -> None:
    eur = Money.of("1", Currency.EUR)
    usd = Money.of("1", Currency.USD)
    with pytest.raises(CurrencyMismatchError, match="EUR with USD"):
        op(eur, usd)
    with pytest.raises(CurrencyMismatchError, match="USD with EUR"):
        op(usd, eur)


@given(
    distinct_currencies,
    minor_units,
    minor_units,
    st.sampled_from([op for _, op in OPERATIONS]),
)
def test_mixed_currency_arithmetic_and_comparison_always_raise(
    pair: tuple[Currency, Currency],
    left: int,
    right: int,
    op: Callable[[Money, Money], object],
) -> None:
    a = Money.from_minor(left, pair[0])
    b = Money.from_minor(right, pair[1])
    with pytest.raises(CurrencyMismatchError):
        op(a, b)
