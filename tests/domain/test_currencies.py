"""Every ISO 4217 currency with minor units: its decimals, exact round trips, exact JSON."""

from __future__ import annotations

import copy
import pickle
import re
from decimal import Decimal

import iso4217
import pytest
from hypothesis import given
from hypothesis import strategies as st

from antaeus import exactjson
from antaeus.domain.money import (
    CURRENCIES,
    MAX_AMOUNT,
    MAX_MINOR,
    MAX_MINOR_UNITS,
    ORIGINAL_CURRENCIES,
    Currency,
    CurrencyMismatchError,
    Money,
    MoneyError,
    UnknownCurrencyError,
    check_amount,
    parse_amount,
    parse_currency,
)

currencies = st.sampled_from(CURRENCIES)
minor_amounts = st.integers(min_value=-MAX_MINOR, max_value=MAX_MINOR)


def text_of(minor: int, decimals: int) -> str:
    """`minor` minor units written with `decimals` decimals, without Decimal."""
    sign = "-" if minor < 0 else ""
    if decimals == 0:
        return f"{sign}{abs(minor)}"
    whole, fraction = divmod(abs(minor), 10**decimals)
    return f"{sign}{whole}.{fraction:0{decimals}d}"


def json_number(decimals: int) -> re.Pattern[str]:
    return re.compile(r"-?[0-9]+" if decimals == 0 else rf"-?[0-9]+\.[0-9]{{{decimals}}}")


# --- the table ------------------------------------------------------------------------


def test_every_active_iso_currency_with_minor_units_is_a_currency() -> None:
    expected = {c.code: c.exponent for c in iso4217.Currency if c.exponent is not None}
    assert {c.code: c.minor_units for c in CURRENCIES} == expected
    assert len(CURRENCIES) > 150
    assert [c.code for c in CURRENCIES] == sorted(expected)


@pytest.mark.parametrize(
    ("code", "decimals"),
    [
        ("JPY", 0),
        ("KRW", 0),
        ("ISK", 0),
        ("VND", 0),
        ("KWD", 3),
        ("BHD", 3),
        ("OMR", 3),
        ("TND", 3),
        ("CLF", 4),
        ("HUF", 2),  # ISO 4217 (CLDR, and so babel, says 0)
        ("CHF", 2),
        ("EUR", 2),
    ],
)
def test_minor_units_follow_iso_4217(code: str, decimals: int) -> None:
    currency = parse_currency(code)
    assert currency.minor_units == decimals
    assert currency.quantum == Decimal(1).scaleb(-decimals)
    assert currency.max_amount == Decimal(MAX_MINOR).scaleb(-decimals)
    assert MAX_MINOR_UNITS == 4


@pytest.mark.parametrize("code", ["XAU", "XAG", "XPT", "XPD", "XDR", "XSU", "XUA", "XTS", "XXX"])
def test_codes_without_minor_units_are_refused_like_unknown_ones(code: str) -> None:
    with pytest.raises(UnknownCurrencyError, match=rf"unknown currency '{code}'.*minor units"):
        Currency(code)
    with pytest.raises(MoneyError):
        Money.of("1", code)


@pytest.mark.parametrize("code", ["", "jpy", "JP", "JPYY", " JPY", "ABC", 1, None, ["EUR"]])
def test_anything_else_is_refused(code: object) -> None:
    with pytest.raises(UnknownCurrencyError, match="unknown currency"):
        Currency(code)  # type: ignore[arg-type]


def test_one_object_per_code_equal_to_its_code_and_hashed_as_it() -> None:
    jpy = Currency("JPY")
    assert jpy is parse_currency("JPY")
    assert jpy == "JPY"
    assert jpy != Currency("KWD")
    assert hash(jpy) == hash("JPY")
    assert {jpy: 1}["JPY"] == 1
    assert str(jpy) == f"{jpy}" == jpy.code == jpy.value == "JPY"
    assert repr(jpy) == "Currency('JPY')"
    assert jpy.name == "Yen"
    for made in (pickle.loads(pickle.dumps(jpy)), copy.copy(jpy), copy.deepcopy(jpy)):
        assert made is jpy


def test_the_five_originals_are_as_they_were() -> None:
    assert [c.code for c in ORIGINAL_CURRENCIES] == ["EUR", "USD", "DKK", "SEK", "GBP"]
    assert ORIGINAL_CURRENCIES == (
        Currency.EUR,
        Currency.USD,
        Currency.DKK,
        Currency.SEK,
        Currency.GBP,
    )
    for currency in ORIGINAL_CURRENCIES:
        assert currency.minor_units == 2
        assert currency.max_amount == MAX_AMOUNT
        assert currency.value == currency.code
    assert Currency.EUR is Currency("EUR")


# --- round trips, for every currency ----------------------------------------------------


@given(minor_amounts, currencies)
def test_minor_units_and_value_round_trip_exactly(minor: int, currency: Currency) -> None:
    money = Money.from_minor(minor, currency)
    assert money.minor == minor
    assert money.currency is currency
    assert money.value.as_tuple().exponent == -currency.minor_units
    assert str(money.value) == text_of(minor, currency.minor_units)
    assert Money.of(str(money.value), currency) == money
    assert Money.of(money.value, currency) == money
    assert Money.of(text_of(minor, currency.minor_units), currency.code).minor == minor


@given(minor_amounts, currencies)
def test_json_text_has_exactly_the_currency_decimals(minor: int, currency: Currency) -> None:
    money = Money.from_minor(minor, currency)
    text = exactjson.dumps({"value": money.value, "currency": money.currency})
    value = re.fullmatch(r'\{"value":(.+),"currency":"([A-Z]{3})"\}', text)
    assert value is not None, text
    assert json_number(currency.minor_units).fullmatch(value[1]), text
    assert value[1] == text_of(minor, currency.minor_units)
    assert value[2] == currency.code
    assert exactjson.loads(text)["value"] == money.value  # read back exactly, never a float


@given(
    currencies,
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=1, max_value=3),
)
def test_more_decimals_than_the_currency_has_is_refused(
    currency: Currency, whole: int, extra: int
) -> None:
    # even when the digits beyond are zeros: "1.0" in JPY, "1.2300" in KWD
    decimals = currency.minor_units + extra
    for text in (f"{whole}.{'0' * decimals}", f"{whole}.{'1' * decimals}"):
        with pytest.raises(MoneyError, match=currency.code):
            parse_amount(text, currency)
        with pytest.raises(MoneyError, match=currency.code):
            parse_amount(Decimal(text), currency)


@given(currencies, st.integers(min_value=0, max_value=MAX_MINOR), st.booleans())
def test_fewer_decimals_are_padded_to_the_currency(
    currency: Currency, minor: int, drop_one: bool
) -> None:
    text = text_of(minor, currency.minor_units)
    if drop_one and currency.minor_units > 0 and text.endswith("0"):
        text = text[:-1]  # "12.30" -> "12.3": the same amount
    assert str(parse_amount(text, currency)) == text_of(minor, currency.minor_units)


@given(currencies, st.integers(min_value=1, max_value=10**20))
def test_beyond_the_largest_amount_is_refused(currency: Currency, over: int) -> None:
    too_much = currency.max_amount + Decimal(over).scaleb(-currency.minor_units)
    for value in (too_much, -too_much):
        with pytest.raises(MoneyError, match="must not exceed"):
            parse_amount(value, currency)
        with pytest.raises(MoneyError):
            parse_amount(f"{value:f}", currency)
    assert parse_amount(currency.max_amount, currency) == currency.max_amount


@given(st.tuples(currencies, currencies).filter(lambda p: p[0] is not p[1]))
def test_currencies_never_mix(pair: tuple[Currency, Currency]) -> None:
    a, b = (Money.from_minor(1, c) for c in pair)
    with pytest.raises(CurrencyMismatchError, match=f"{pair[0]} with {pair[1]}"):
        a + b
    assert a != b


def test_arithmetic_keeps_the_currency_decimals() -> None:
    jpy = Money.of("1000", "JPY") + Money.of("1", "JPY")
    assert (str(jpy), jpy.minor) == ("1001 JPY", 1001)
    kwd = Money.of("12.345", "KWD") - Money.of("0.345", "KWD")
    assert (str(kwd), kwd.minor) == ("12.000 KWD", 12000)
    assert str(Money.zero(Currency("JPY"))) == "0 JPY"
    assert str(Money.zero(Currency("KWD"))) == "0.000 KWD"
    assert str(-Money.of("0", "JPY")) == "0 JPY"  # never "-0"


def test_money_refuses_a_code_where_a_currency_belongs() -> None:
    with pytest.raises(MoneyError, match="Currency"):
        Money(Decimal("1"), "EUR")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1.5", "amount '1.5' is not a whole number without a decimal point (JPY has no decimals)"),
        (Decimal("1.5"), "amount must have no decimals: JPY has none"),
        (1.5, "not a float"),
    ],
)
def test_messages_name_the_currency_and_its_decimals(value: object, message: str) -> None:
    with pytest.raises(MoneyError) as refused:
        parse_amount(value, Currency("JPY"))
    assert message in str(refused.value)


def test_check_amount_refuses_only_what_no_currency_accepts() -> None:
    assert check_amount("1.2345") == Decimal("1.2345")
    assert check_amount(1000) == Decimal(1000)
    for bad in ("1.23456", 1.5, "abc", "1e5", True, "100000000000000.0"):
        with pytest.raises(MoneyError):
            check_amount(bad)
