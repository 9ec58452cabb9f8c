"""What Stripe takes: currencies, API amounts (not always ISO's minor units) and minimums."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from antaeus.config import Settings, settings_error_message
from antaeus.domain.money import Currency, Money
from antaeus.payments.stripe_rules import (
    MINIMUM_AMOUNTS,
    PRESENTMENT_CURRENCIES,
    RULES,
    THREE_DECIMAL,
    ZERO_DECIMAL,
    NotChargeable,
    api_amount,
    from_stripe,
    iso_decimals,
    to_stripe,
)

KEY = "sk_test_settings_0123456789abcdefghij"


@pytest.mark.parametrize(
    ("minor", "code", "amount"),
    [
        (1000, "USD", 1000),  # two decimals, as ISO
        (500, "JPY", 500),  # zero-decimal, as ISO
        (5120, "KWD", 5120),  # three decimals, last digit 0
        (5, "ISK", 500),  # ISO: no decimals; Stripe: two, divisible by 100
        (12300, "MGA", 123),  # ISO: two decimals; Stripe: whole ariary
        (17500, "HUF", 17500),  # two-decimal charges (zero-decimal only for payouts)
        (1050, "TWD", 1050),
        (5, "UGX", 500),  # ISO: no decimals; Stripe: two, divisible by 100
        (150_000_000, "IDR", 150_000_000),  # IDR 1,500,000.00: twelve digits at Stripe
    ],
)
def test_stripe_amounts(minor: int, code: str, amount: int) -> None:
    converted = to_stripe(minor, code)
    assert (converted.amount, converted.currency) == (amount, code.lower())
    assert from_stripe(converted.amount, converted.currency)[0] == minor


@pytest.mark.parametrize(
    ("minor", "code", "why"),
    [
        (5124, "KWD", "last"),
        (5125, "BHD", "last"),
        (12345, "MGA", "whole"),
        (49, "USD", "minimum"),
        (29, "GBP", "minimum"),
        (249, "DKK", "minimum"),
        (299, "SEK", "minimum"),
        (49, "JPY", "minimum"),
        (17499, "HUF", "minimum"),
        (100, "XAU", "does not take"),
        (100, "ZZZ", "does not take"),
        (0, "EUR", "positive"),
        (-100, "EUR", "positive"),
        (100_000_000, "EUR", "largest"),
        (1_000_000_000_000, "IDR", "largest"),
        (10_000_000_000, "COP", "largest"),
        (1_000_000_000, "INR", "largest"),
    ],
)
def test_amounts_stripe_refuses(minor: int, code: str, why: str) -> None:
    with pytest.raises(NotChargeable, match=why):
        to_stripe(minor, code)


@given(st.sampled_from(sorted(PRESENTMENT_CURRENCIES)), st.integers(1, 10**9))
def test_an_accepted_amount_is_exact_and_obeys_stripes_rules(code: str, minor: int) -> None:
    try:
        converted = to_stripe(minor, code)
    except NotChargeable:
        return
    assert converted.amount >= MINIMUM_AMOUNTS.get(code, 1)
    assert converted.amount <= {"IDR": 10**12, "COP": 10**10, "INR": 10**9}.get(code, 10**8) - 1
    if code in THREE_DECIMAL:
        assert converted.amount % 10 == 0
    if code in ("ISK", "UGX"):
        assert converted.amount % 100 == 0
    back, decimals = from_stripe(converted.amount, code)
    assert back == minor  # never rounded: what is charged is the invoice's amount
    assert decimals == iso_decimals(code)


@given(st.sampled_from(sorted(THREE_DECIMAL)), st.integers(1, 10**7))
def test_three_decimal_amounts_need_a_last_zero(code: str, minor: int) -> None:
    if minor % 10:
        with pytest.raises(NotChargeable):
            to_stripe(minor, code)
    else:
        assert to_stripe(minor, code).amount == minor


def test_the_zero_decimal_list_is_stripes() -> None:
    # the page's list, less UGX (its special case: two decimals in the API)
    page = "BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split()  # noqa: SIM905
    assert set(page) - {"UGX"} == ZERO_DECIMAL
    assert ZERO_DECIMAL <= PRESENTMENT_CURRENCIES
    assert {"BHD", "JOD", "KWD", "OMR", "TND"} == THREE_DECIMAL


# -- the page's own worked examples (https://docs.stripe.com/currencies) ----------------------

#: (the amount as the page writes it, currency, the `amount` value the page gives)
PAGE_EXAMPLES = [
    ("10", "USD", 1000),  # "1000 to charge 10 USD (or any other two-decimal currency)"
    ("10.99", "USD", 1099),  # "enter 1099 to charge 10.99 USD"
    ("10", "JPY", 10),  # "10 to charge 10 JPY (or any other zero-decimal currency)"
    ("500", "JPY", 500),  # "to charge 500 JPY, provide an amount value of 500"
    ("5", "ISK", 500),  # "to charge 5 ISK, provide an amount value of 500"
    ("5", "UGX", 500),  # "to charge 5 UGX, provide an amount value of 500"
    ("10.45", "HUF", 1045),  # "you can charge two-decimal amounts" (HUF 10.45 is 1045)
    ("10", "HUF", 1000),  # "you can pay out HUF 10 by submitting 1000"
    ("800.45", "TWD", 80045),  # TWD 800.45 is 80045
    ("800", "TWD", 80000),  # "you can pay out TWD 800 by submitting 80000"
    ("5.120", "KWD", 5120),  # "5.124 KWD must be rounded to 5120 or 5130"
    ("5.130", "KWD", 5130),
    ("9999999999.99", "IDR", 999_999_999_999),  # "9,999,999,999.99 IDR (999999999999)"
    ("99999999.99", "COP", 9_999_999_999),  # "99,999,999.99 COP (9999999999)"
    ("9999999.99", "INR", 999_999_999),  # "9,999,999.99 INR (999999999)"
    ("999999.99", "USD", 99_999_999),  # "a maximum charge of 999,999.99 (99999999)"
]


@pytest.mark.parametrize(("value", "code", "amount"), PAGE_EXAMPLES)
def test_the_pages_worked_examples(value: str, code: str, amount: int) -> None:
    money = Money.of(Decimal(value), Currency(code))
    assert api_amount(money.minor, code, money.currency.minor_units) == amount
    assert from_stripe(amount, code.lower()) == (money.minor, money.currency.minor_units)


@pytest.mark.parametrize(
    ("value", "code", "decimals", "why"),
    [
        ("5.124", "KWD", 3, "last"),  # "must be rounded": Antaeus never rounds an invoice
        ("5.50", "ISK", 2, "whole"),  # "You can't charge fractions of ISK" (ISO data with
        ("5.50", "UGX", 2, "whole"),  # decimals, as before 2013 for UGX)
        ("123.45", "MGA", 2, "whole"),  # zero-decimal at Stripe
    ],
)
def test_fractions_the_page_says_stripe_cannot_take(
    value: str, code: str, decimals: int, why: str
) -> None:
    minor = int(Decimal(value).scaleb(decimals))
    with pytest.raises(NotChargeable, match=why):
        api_amount(minor, code, decimals)


#: "Use these minimum amounts by currency" (the page's list, as it writes it)
PAGE_MINIMUMS = (  # noqa: SIM905 (the page's list, as it writes it)
    "0.50 USD, 2.00 AED, 0.50 ARS, 0.50 AUD, 0.50 BRL, 0.50 CAD, 0.50 CHF, 0.50 COP, "
    "15.00 CZK, 2.50 DKK, 0.50 EUR, 0.30 GBP, 4.00 HKD, 175.00 HUF, 0.50 IDR, 0.50 ILS, "
    "0.50 INR, 50 JPY, 50 KRW, 10 MXN, 2.00 MYR, 3.00 NOK, 0.50 NZD, 0.50 PHP, 2.00 PLN, "
    "2.00 RON, 0.50 RUB, 3.00 SEK, 0.50 SGD, 10 THB, 0.50 ZAR"
).split(", ")


@pytest.mark.parametrize("written", PAGE_MINIMUMS)
def test_each_minimum_of_the_page(written: str) -> None:
    value, code = written.split()
    money = Money.of(Decimal(value), Currency(code))
    assert to_stripe(money.minor, code).amount == api_amount(money.minor, code)
    with pytest.raises(NotChargeable, match="minimum"):
        to_stripe(money.minor - 1, code)


def test_minimums_are_the_pages_and_no_others() -> None:
    assert set(MINIMUM_AMOUNTS) == {w.split()[1] for w in PAGE_MINIMUMS}


@pytest.mark.parametrize(
    ("code", "largest"),
    [("IDR", 999_999_999_999), ("COP", 9_999_999_999), ("INR", 999_999_999)]
    + [(c, 99_999_999) for c in ("USD", "EUR", "JPY", "KWD", "ISK", "UGX", "HUF", "TWD")],
)
def test_each_maximum_of_the_page(code: str, largest: int) -> None:
    assert RULES[code].maximum == largest
    top_minor, _ = from_stripe(largest - largest % RULES[code].step, code)
    assert to_stripe(top_minor, code).amount <= largest
    over, _ = from_stripe(largest + RULES[code].step - largest % RULES[code].step, code)
    with pytest.raises(NotChargeable, match="largest"):
        to_stripe(over, code)


# -- settings ------------------------------------------------------------------------------


def test_stripe_settings() -> None:
    settings = Settings(PAYMENT_PROVIDER="stripe", STRIPE_API_KEY=KEY)
    assert settings.provider_kind == "stripe"
    assert settings.STRIPE_API_BASE == "https://api.stripe.com"
    assert KEY not in repr(settings)
    assert KEY not in str(settings.model_dump())
    assert KEY not in settings.model_dump_json()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs ANTAEUS_STRIPE_API_KEY"),
        ({"STRIPE_API_KEY": "pk_test_0123456789abcdefghij"}, "publishable"),
        ({"STRIPE_API_KEY": "whsec_0123456789abcdefghij"}, "secret key"),
        ({"STRIPE_API_KEY": KEY, "STRIPE_API_BASE": "ftp://x"}, "STRIPE_API_BASE"),
        ({"STRIPE_API_KEY": KEY, "PROVIDER_KEY_RETENTION": 90_000}, "24 h"),
    ],
)
def test_refused_stripe_settings_say_why_and_never_show_the_key(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        Settings(PAYMENT_PROVIDER="stripe", **options)  # type: ignore[arg-type]
    shown = settings_error_message(caught.value)  # type: ignore[arg-type]
    for secret in ("0123456789abcdefghij",):
        assert secret not in str(caught.value)
        assert secret not in shown


def test_the_factory_builds_the_stripe_adapter() -> None:
    from antaeus.payments.factory import build_provider
    from antaeus.payments.stripe import StripePaymentProvider

    provider = build_provider(
        Settings(
            PAYMENT_PROVIDER="stripe",
            STRIPE_API_KEY=KEY,
            STRIPE_API_BASE="http://127.0.0.1:1/",
            STRIPE_HTTP_CLIENT="aiohttp",
        ),
        concurrency=7,
    )
    assert isinstance(provider, StripePaymentProvider)
    assert provider.settings.api_base == "http://127.0.0.1:1"
    assert provider.settings.client == "aiohttp"
    assert provider.settings.max_connections == 7
    assert KEY not in provider.describe()
