"""What Stripe takes: its presentment currencies, their API amounts, minimums and maximums.

ONE table, `RULES`, holds every currency rule the adapter applies. Its source is
Stripe's "Supported currencies" page, https://docs.stripe.com/currencies (the
copy read for this table: its Markdown export, docs.stripe.com/currencies.md,
as of 2026; quoted below where a row depends on a sentence):

* "All API requests expect `amount` values in the currency's minor unit ...
  `1000` to charge 10 USD (or any other two-decimal currency). `10` to charge
  10 JPY (or any other zero-decimal currency)." "Currencies are two-decimal
  currencies unless otherwise specified." So the default row is two decimals.
* Zero-decimal currencies ("the charge and the amount are the same, without
  requiring multiplication. For example, to charge 500 JPY, provide an
  `amount` value of `500`"): BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND
  VUV XAF XOF XPF. The Markdown export omits the list's codes; they are from
  the page's rendered copies (stripe.com/en-ca/docs/currencies and the
  2022-06 web.archive.org copy), which agree. MGA has two decimals in ISO 4217:
  Stripe takes whole ariary.
* Special cases ("conditions that you need to consider when creating payouts
  or charges"):
  - ISK: "ISK transitioned to a zero-decimal currency, but backward
    compatibility requires you to represent it as a two-decimal value, where
    the decimal amount is always `00`. For example, to charge 5 ISK, provide an
    `amount` value of `500`. You can't charge fractions of ISK."
  - UGX: the same sentence for UGX ("to charge 5 UGX, provide an `amount`
    value of `500`"). The page also lists UGX among the zero-decimal
    currencies; the special case is the specific rule and the one Stripe's API
    applies, so UGX is two decimals here, divisible by 100 (Antaeus sent UGX
    100 times too small before).
  - HUF and TWD: "Stripe treats HUF [TWD] as a zero-decimal currency for
    payouts, even though you can charge two-decimal amounts." Antaeus makes
    charges, never payouts: two decimals, no divisibility rule (the page's
    HUF 10.45 -> `1045` and TWD 800.45 -> `80045` are charges it may make; the
    "divisible by 100" examples are payouts).
* Three-decimal currencies BHD JOD KWD OMR TND: "these API calls require the
  least-significant (last) digit to be 0 ... For example, 5.124 KWD must be
  rounded to `5120` or `5130`." The current page no longer has this section
  (it was read from the 2022-12-31 web.archive.org copy of the page); the
  rule is kept because refusing an amount Stripe may take is safer than
  sending one it may refuse, and Antaeus never rounds an invoice's amount.
* Minimum charge amounts, the page's list ("Use these minimum amounts by
  currency"): 0.50 USD, 2.00 AED, 0.50 ARS, 0.50 AUD, 0.50 BRL, 0.50 CAD,
  0.50 CHF, 0.50 COP, 15.00 CZK, 2.50 DKK, 0.50 EUR, 0.30 GBP, 4.00 HKD,
  175.00 HUF, 0.50 IDR, 0.50 ILS, 0.50 INR, 50 JPY, 50 KRW, 10 MXN, 2.00 MYR,
  3.00 NOK, 0.50 NZD, 0.50 PHP, 2.00 PLN, 2.00 RON, 0.50 RUB, 3.00 SEK, 0.50
  SGD, 10 THB, 0.50 ZAR. Stripe's minimum depends on the account's settlement
  currency ("Charges requiring conversion into your account's default
  settlement currency must meet the equivalent minimum of the settlement
  currency"): the list is what an account settling in that currency gets, and
  what Antaeus refuses before a call; other currencies have no minimum here
  (Stripe answers for them). BGN (1.00 in an earlier Antaeus table) is not on
  the page and was dropped.
* Maximums: "12 digits for IDR, for a maximum charge of 9,999,999,999.99 IDR
  (`999999999999`); 10 digits for COP ... (`9999999999`); 9 digits for INR ...
  (`999999999`); 8 digits for all other currencies, for a maximum charge of
  999,999.99 (`99999999`)". The page gives these for non-card payment
  methods and says card payments take "up to ... 12 digits for most card
  payments ... 9 digits for American Express"; the PaymentIntent API
  reference still says "The amount value supports up to eight digits". Antaeus
  does not know a saved payment method's kind or card brand, so it keeps the
  per-currency digits (what every source agrees Stripe takes, Amex aside): an
  amount above them is refused before a call, and a person splits the invoice.
  Not from the page: nothing here about currencies it does not list.

The fake Stripe (`fake_stripe`) reads the same page with its own code and never
imports this module, so a wrong row here shows up as a wrong amount in the
fake's ledger in tests/payments/test_stripe_currencies.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import iso4217

from antaeus.payments.stripe_account import stripe_key_problem

#: Stripe's general maximum: eight digits in Stripe's smallest unit ("99999999").
MAXIMUM_AMOUNT: Final = 99_999_999


@dataclass(frozen=True, slots=True)
class StripeCurrency:
    """How Stripe takes amounts in one currency (amounts in Stripe's API units)."""

    code: str  # upper case
    decimals: int = 2  # the decimals of Stripe's `amount` (not always ISO 4217's)
    step: int = 1  # every amount is a multiple of this (100: whole ISK; 10: last digit 0)
    minimum: int | None = None  # the page's minimum charge; None: not listed
    maximum: int = MAXIMUM_AMOUNT
    why: str = ""  # the page's words behind a special case


#: Every currency Stripe presents charges in (card payments), upper case.
_PRESENTMENT: Final = (  # noqa: SIM905 (a list to check against the page)
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD "
    "BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CVE CZK DJF DKK DOP DZD EGP ETB EUR FJD FKP "
    "GBP GEL GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR ISK JMD JOD JPY KES KGS KHR "
    "KMF KRW KWD KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MUR MVR MWK MXN "
    "MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF "
    "SAR SBD SCR SEK SGD SHP SLE SOS SRD STD SZL THB TJS TND TOP TRY TTD TWD TZS UAH UGX "
    "USD UYU UZS VND VUV WST XAF XCD XOF XPF YER ZAR ZMW"
).split()

_WHOLE = "the decimal amount is always 00: to charge 5 {0}, provide an amount value of 500"
_PAYOUTS = "zero-decimal for payouts only; charges take two-decimal amounts"
_LAST_ZERO = "the least-significant (last) digit must be 0: 5.124 KWD is 5120 or 5130"

#: The special cases: every presentment currency not listed is two decimals, step 1, no
#: minimum, maximum 99,999,999 (`StripeCurrency(code)`).
_SPECIAL: Final = (
    # zero-decimal currencies ("to charge 500 JPY, provide an amount value of 500")
    StripeCurrency("BIF", decimals=0),
    StripeCurrency("CLP", decimals=0),
    StripeCurrency("DJF", decimals=0),
    StripeCurrency("GNF", decimals=0),
    StripeCurrency("JPY", decimals=0, minimum=50),
    StripeCurrency("KMF", decimals=0),
    StripeCurrency("KRW", decimals=0, minimum=50),
    StripeCurrency("MGA", decimals=0, why="zero-decimal at Stripe; two decimals in ISO 4217"),
    StripeCurrency("PYG", decimals=0),
    StripeCurrency("RWF", decimals=0),
    StripeCurrency("VND", decimals=0),
    StripeCurrency("VUV", decimals=0),
    StripeCurrency("XAF", decimals=0),
    StripeCurrency("XOF", decimals=0),
    StripeCurrency("XPF", decimals=0),
    # zero-decimal currencies Stripe keeps two-decimal, "for backward compatibility"
    StripeCurrency("ISK", step=100, why=_WHOLE.format("ISK")),
    StripeCurrency("UGX", step=100, why=_WHOLE.format("UGX")),
    # zero-decimal for payouts only
    StripeCurrency("HUF", minimum=17_500, why=_PAYOUTS),
    StripeCurrency("TWD", why=_PAYOUTS),
    # three-decimal currencies
    StripeCurrency("BHD", decimals=3, step=10, why=_LAST_ZERO),
    StripeCurrency("JOD", decimals=3, step=10, why=_LAST_ZERO),
    StripeCurrency("KWD", decimals=3, step=10, why=_LAST_ZERO),
    StripeCurrency("OMR", decimals=3, step=10, why=_LAST_ZERO),
    StripeCurrency("TND", decimals=3, step=10, why=_LAST_ZERO),
    # the minimum charge amounts (of the two-decimal ones; JPY, KRW and HUF are above)
    StripeCurrency("USD", minimum=50),
    StripeCurrency("AED", minimum=200),
    StripeCurrency("ARS", minimum=50),
    StripeCurrency("AUD", minimum=50),
    StripeCurrency("BRL", minimum=50),
    StripeCurrency("CAD", minimum=50),
    StripeCurrency("CHF", minimum=50),
    StripeCurrency("CZK", minimum=1_500),
    StripeCurrency("DKK", minimum=250),
    StripeCurrency("EUR", minimum=50),
    StripeCurrency("GBP", minimum=30),
    StripeCurrency("HKD", minimum=400),
    StripeCurrency("ILS", minimum=50),
    StripeCurrency("MXN", minimum=1_000),
    StripeCurrency("MYR", minimum=200),
    StripeCurrency("NOK", minimum=300),
    StripeCurrency("NZD", minimum=50),
    StripeCurrency("PHP", minimum=50),
    StripeCurrency("PLN", minimum=200),
    StripeCurrency("RON", minimum=200),
    StripeCurrency("RUB", minimum=50),
    StripeCurrency("SEK", minimum=300),
    StripeCurrency("SGD", minimum=50),
    StripeCurrency("THB", minimum=1_000),
    StripeCurrency("ZAR", minimum=50),
    # larger maximums (and their minimums)
    StripeCurrency("IDR", minimum=50, maximum=999_999_999_999, why="12 digits for IDR"),
    StripeCurrency("COP", minimum=50, maximum=9_999_999_999, why="10 digits for COP"),
    StripeCurrency("INR", minimum=50, maximum=999_999_999, why="9 digits for INR"),
)

#: THE table: every presentment currency, by upper-case code.
RULES: Final[Mapping[str, StripeCurrency]] = {
    code: next((row for row in _SPECIAL if row.code == code), StripeCurrency(code))
    for code in sorted(set(_PRESENTMENT))
}
assert {row.code for row in _SPECIAL} <= RULES.keys()
assert len({row.code for row in _SPECIAL}) == len(_SPECIAL)

# Views of the table, by the names Antaeus has used.
PRESENTMENT_CURRENCIES: Final = frozenset(RULES)
#: Currencies whose Stripe amounts have no decimals (UGX is not one: see ISK and UGX above).
ZERO_DECIMAL: Final = frozenset(c for c, r in RULES.items() if r.decimals == 0)
THREE_DECIMAL: Final = frozenset(c for c, r in RULES.items() if r.decimals == 3)
#: Two decimals at Stripe, but only whole units: the amount must be divisible by 100.
WHOLE_UNITS_IN_TWO_DECIMALS: Final = frozenset(
    c for c, r in RULES.items() if r.decimals == 2 and r.step == 100
)
#: Stripe's minimum charge amounts, in Stripe's smallest unit of each currency.
MINIMUM_AMOUNTS: Final[Mapping[str, int]] = {
    c: r.minimum for c, r in RULES.items() if r.minimum is not None
}


def stripe_decimals(code: str) -> int:
    """The decimals of Stripe's API amounts in `code` (not always ISO's)."""
    rule = RULES.get(code.upper())
    return rule.decimals if rule is not None else 2


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
        return f"{minor:,} {code}"
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**decimals)
    return f"{sign}{whole:,}.{frac:0{decimals}d} {code}"


def _rule(code: str) -> StripeCurrency:
    rule = RULES.get(code)
    if rule is None:
        raise NotChargeable(f"Stripe does not take charges in {code}")
    return rule


def api_amount(minor: int, code: str, decimals: int | None = None) -> int:
    """Stripe's `amount` for `minor` ISO minor units of `code`, exactly, or NotChargeable
    (a fraction Stripe cannot take); no minimum or maximum is checked here.

    `decimals` is the currency's ISO minor units (from Antaeus's Money); by
    default ISO 4217's, looked up.
    """
    code = code.upper()
    rule = _rule(code)
    iso = decimals if decimals is not None else iso_decimals(code)
    if iso is None:
        raise NotChargeable(f"{code} has no ISO 4217 minor unit")
    shown = _shown(minor, iso, code)
    if rule.decimals >= iso:
        amount: int = minor * 10 ** (rule.decimals - iso)
    else:
        factor = 10 ** (iso - rule.decimals)
        if minor % factor:
            raise NotChargeable(f"Stripe takes {code} in whole units, not {shown}")
        amount = minor // factor
    if amount % rule.step:
        if rule.decimals == 3:
            raise NotChargeable(
                f"Stripe takes {code} amounts whose last (third) decimal is 0, not {shown}"
            )
        raise NotChargeable(f"Stripe takes {code} in whole units, not {shown}")
    return amount


def to_stripe(minor: int, code: str, decimals: int | None = None) -> StripeAmount:
    """The Stripe amount of `minor` ISO minor units of `code`, or NotChargeable (why):
    not a currency Stripe takes, not positive, a fraction it cannot take, below its
    minimum or above its maximum."""
    code = code.upper()
    rule = _rule(code)
    iso = decimals if decimals is not None else iso_decimals(code)
    if iso is not None and minor <= 0:
        raise NotChargeable(f"{_shown(minor, iso, code)} is not a positive amount")
    amount = api_amount(minor, code, iso)
    assert iso is not None  # api_amount refused a currency without one
    shown = _shown(minor, iso, code)
    if rule.minimum is not None and amount < rule.minimum:
        raise NotChargeable(
            f"{shown} is below Stripe's minimum charge of "
            f"{_shown(rule.minimum, rule.decimals, code)}"
        )
    if amount > rule.maximum:
        raise NotChargeable(
            f"{shown} is above Stripe's largest charge of "
            f"{_shown(rule.maximum, rule.decimals, code)}"
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


__all__ = [
    "MAXIMUM_AMOUNT",
    "MINIMUM_AMOUNTS",
    "PRESENTMENT_CURRENCIES",
    "RULES",
    "THREE_DECIMAL",
    "WHOLE_UNITS_IN_TWO_DECIMALS",
    "ZERO_DECIMAL",
    "NotChargeable",
    "StripeAmount",
    "StripeCurrency",
    "api_amount",
    "from_stripe",
    "iso_decimals",
    "stripe_decimals",
    "stripe_key_problem",
    "to_stripe",
]
