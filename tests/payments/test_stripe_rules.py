"""What Stripe takes: currencies, API amounts (not always ISO's minor units) and minimums."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from antaeus.config import Settings, settings_error_message
from antaeus.payments.stripe_rules import (
    MINIMUM_AMOUNTS,
    PRESENTMENT_CURRENCIES,
    THREE_DECIMAL,
    ZERO_DECIMAL,
    NotChargeable,
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
    assert converted.amount <= 99_999_999
    if code in THREE_DECIMAL:
        assert converted.amount % 10 == 0
    if code == "ISK":
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
    assert {"JPY", "KRW", "VND", "CLP", "XOF"} <= ZERO_DECIMAL
    assert ZERO_DECIMAL <= PRESENTMENT_CURRENCIES


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
