"""What Stripe takes: its presentment currencies, their API amounts and minimum charges.

From Stripe's "Supported currencies" page (docs.stripe.com/currencies): amounts
are integers in the currency's smallest unit as *Stripe* counts it, which is
ISO 4217's minor unit except where Stripe documents otherwise:

    zero-decimal     BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF
                     (MGA has two ISO decimals: Stripe takes whole ariary)
    ISK              ISO has no decimals, but Stripe keeps it a two-decimal
                     currency whose amounts must be divisible by 100
                     (5 ISK is 500; `invalid_charge_amount_no_decimal_compatible`)
    three-decimal    BHD JOD KWD OMR TND: the last digit must be 0 (5.120 KWD is 5120)
    HUF, TWD         zero-decimal for payouts only: charges take two decimals

Minimum charge amounts are Stripe's table for the currencies it lists (USD 0.50,
GBP 0.30, ...). Stripe's actual minimum depends on the account's settlement
currency (about USD 0.50 converted); the table is what an account settling in
that currency gets, and what Antaeus refuses before a call. Shared by the
adapter (`refusal`) and the fake Stripe server, so both refuse the same amounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import iso4217

#: Every currency Stripe presents charges in (card payments), upper case.
PRESENTMENT_CURRENCIES: Final = frozenset(
    [
        "USD",
        "AED",
        "AFN",
        "ALL",
        "AMD",
        "ANG",
        "AOA",
        "ARS",
        "AUD",
        "AWG",
        "AZN",
        "BAM",
        "BBD",
        "BDT",
        "BGN",
        "BHD",
        "BIF",
        "BMD",
        "BND",
        "BOB",
        "BRL",
        "BSD",
        "BWP",
        "BYN",
        "BZD",
        "CAD",
        "CDF",
        "CHF",
        "CLP",
        "CNY",
        "COP",
        "CRC",
        "CVE",
        "CZK",
        "DJF",
        "DKK",
        "DOP",
        "DZD",
        "EGP",
        "ETB",
        "EUR",
        "FJD",
        "FKP",
        "GBP",
        "GEL",
        "GIP",
        "GMD",
        "GNF",
        "GTQ",
        "GYD",
        "HKD",
        "HNL",
        "HTG",
        "HUF",
        "IDR",
        "ILS",
        "INR",
        "ISK",
        "JMD",
        "JOD",
        "JPY",
        "KES",
        "KGS",
        "KHR",
        "KMF",
        "KRW",
        "KWD",
        "KYD",
        "KZT",
        "LAK",
        "LBP",
        "LKR",
        "LRD",
        "LSL",
        "MAD",
        "MDL",
        "MGA",
        "MKD",
        "MMK",
        "MNT",
        "MOP",
        "MUR",
        "MVR",
        "MWK",
        "MXN",
        "MYR",
        "MZN",
        "NAD",
        "NGN",
        "NIO",
        "NOK",
        "NPR",
        "NZD",
        "OMR",
        "PAB",
        "PEN",
        "PGK",
        "PHP",
        "PKR",
        "PLN",
        "PYG",
        "QAR",
        "RON",
        "RSD",
        "RUB",
        "RWF",
        "SAR",
        "SBD",
        "SCR",
        "SEK",
        "SGD",
        "SHP",
        "SLE",
        "SOS",
        "SRD",
        "STD",
        "SZL",
        "THB",
        "TJS",
        "TND",
        "TOP",
        "TRY",
        "TTD",
        "TWD",
        "TZS",
        "UAH",
        "UGX",
        "USD",
        "UYU",
        "UZS",
        "VND",
        "VUV",
        "WST",
        "XAF",
        "XCD",
        "XOF",
        "XPF",
        "YER",
        "ZAR",
        "ZMW",
    ]
)

ZERO_DECIMAL: Final = frozenset(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)
THREE_DECIMAL: Final = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])
#: Two decimals at Stripe, but only whole units: the amount must be divisible by 100.
WHOLE_UNITS_IN_TWO_DECIMALS: Final = frozenset({"ISK"})

#: Stripe's minimum charge amounts, in Stripe's smallest unit of each currency.
MINIMUM_AMOUNTS: Final[dict[str, int]] = {
    "USD": 50,
    "AED": 200,
    "AUD": 50,
    "BGN": 100,
    "BRL": 50,
    "CAD": 50,
    "CHF": 50,
    "CZK": 1500,
    "DKK": 250,
    "EUR": 50,
    "GBP": 30,
    "HKD": 400,
    "HUF": 17500,
    "INR": 50,
    "JPY": 50,
    "MXN": 1000,
    "MYR": 200,
    "NOK": 300,
    "NZD": 50,
    "PLN": 200,
    "RON": 200,
    "SEK": 300,
    "SGD": 50,
    "THB": 1000,
}

#: Stripe's largest amount for a charge: eight digits in Stripe's smallest unit.
MAXIMUM_AMOUNT: Final = 99_999_999


def stripe_decimals(code: str) -> int:
    """The decimals of Stripe's API amounts in `code` (not always ISO's)."""
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def iso_decimals(code: str) -> int | None:
    """ISO 4217's minor units of `code` (None: unknown, or no minor unit such as XAU)."""
    try:
        exponent = iso4217.Currency(code).exponent
    except (ValueError, KeyError):
        return None
    return exponent if isinstance(exponent, int) else None


@dataclass(frozen=True, slots=True)
class StripeAmount:
    amount: int  # what `amount` says to Stripe
    currency: str  # lower case, as Stripe wants it


class NotChargeable(ValueError):  # noqa: N818 (read as "an amount that is not chargeable")
    pass


def _shown(minor: int, decimals: int, code: str) -> str:
    if decimals == 0:
        return f"{minor} {code}"
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**decimals)
    return f"{sign}{whole}.{frac:0{decimals}d} {code}"


def to_stripe(minor: int, code: str, decimals: int | None = None) -> StripeAmount:
    """The Stripe amount of `minor` ISO minor units of `code`, or NotChargeable (why).

    `decimals` is the currency's ISO minor units (from Antaeus's Money); by
    default ISO 4217's, looked up.
    """
    code = code.upper()
    if code not in PRESENTMENT_CURRENCIES:
        raise NotChargeable(f"Stripe does not take charges in {code}")
    iso = decimals if decimals is not None else iso_decimals(code)
    if iso is None:
        raise NotChargeable(f"{code} has no ISO 4217 minor unit")
    theirs = stripe_decimals(code)
    shown = _shown(minor, iso, code)
    if minor <= 0:
        raise NotChargeable(f"{shown} is not a positive amount")
    if theirs >= iso:
        amount = minor * 10 ** (theirs - iso)
    else:
        factor = 10 ** (iso - theirs)
        if minor % factor:
            raise NotChargeable(f"Stripe takes {code} in whole units, not {shown}")
        amount = minor // factor
    if code in THREE_DECIMAL and amount % 10:
        raise NotChargeable(
            f"Stripe takes {code} amounts whose last (third) decimal is 0, not {shown}"
        )
    if code in WHOLE_UNITS_IN_TWO_DECIMALS and amount % 100:
        raise NotChargeable(f"Stripe takes {code} in whole units, not {shown}")
    minimum = MINIMUM_AMOUNTS.get(code)
    if minimum is not None and amount < minimum:
        raise NotChargeable(
            f"{shown} is below Stripe's minimum charge of {_shown(minimum, theirs, code)}"
        )
    if amount > MAXIMUM_AMOUNT:
        raise NotChargeable(
            f"{shown} is above Stripe's largest charge of {_shown(MAXIMUM_AMOUNT, theirs, code)}"
        )
    return StripeAmount(amount, code.lower())


def from_stripe(amount: int, currency: str) -> tuple[int, int]:
    """(minor units as ISO counts them, ISO decimals) of a Stripe amount; exact or ValueError."""
    code = currency.upper()
    iso = iso_decimals(code)
    if iso is None:
        raise ValueError(f"{code} has no ISO 4217 minor unit")
    theirs = stripe_decimals(code)
    if iso >= theirs:
        return amount * 10 ** (iso - theirs), iso
    factor = 10 ** (theirs - iso)
    if amount % factor:
        raise ValueError(f"{amount} {code} is not a whole number of ISO minor units")
    return amount // factor, iso


def stripe_key_problem(key: str) -> str | None:
    """Why `key` cannot charge through Stripe, or None (it looks like a secret key)."""
    if key.startswith(("sk_", "rk_")) and len(key) > 3 and key.isascii() and key.isprintable():
        if any(c.isspace() for c in key):
            return "a Stripe API key has no spaces"
        return None
    if key.startswith("pk_"):
        return (
            "a publishable key (pk_…) cannot charge: use a secret key (sk_…) "
            "or a restricted key (rk_…)"
        )
    return "must be a Stripe secret key (sk_…) or restricted key (rk_…)"
