"""Money as an exact decimal with its currency's own minor units. Never a float.

Currencies are the active ISO 4217 codes that have minor units, read from the
`iso4217` package (the ISO maintenance agency's table): JPY and KRW have no
decimals, KWD and BHD three, CLF four, most two. A code ISO lists without minor
units (XAU, XDR, XTS, XXX, ...) is no currency Antaeus bills in, like an unknown
code. The five currencies of the original Antaeus (EUR, USD, DKK, SEK, GBP) are
`Currency.EUR` and so on, and behave exactly as they always have.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Final

import iso4217

#: The largest amount Antaeus accepts, in minor units: fourteen digits, whatever the
#: currency. 999999999999.99 in a two-decimal currency (one trillion minus a cent, as
#: always), 99999999999999 JPY, 99999999999.999 KWD. Bigger is a typo. Currencies
#: without decimals are the ones whose unit is worth little, and three decimals are
#: kept by the dinars worth most, so a limit in minor units scales the right way.
MAX_MINOR: Final = 99_999_999_999_999
MAX_DIGITS: Final = 14  # the digits of MAX_MINOR
#: The largest amount in a two-decimal currency (EUR, USD, DKK, SEK, GBP, ...).
MAX_AMOUNT: Final = Decimal("999999999999.99")
_NUMBER_WORDS: Final = ("no", "one", "two", "three", "four")


class MoneyError(ValueError):
    """An amount that cannot be money (bad text, wrong precision, out of range)."""


class CurrencyMismatchError(MoneyError):
    """Arithmetic or comparison across two currencies."""


class UnknownCurrencyError(MoneyError):
    """A code that is no currency Antaeus bills in (unknown, or without minor units)."""


class Currency(str):
    """An ISO 4217 currency with minor units; the code itself, as a `str`.

    There is one object per code: `Currency("JPY") is Currency("JPY")`, so `is`,
    `==` (with another currency or with its code text, like the enum it replaces)
    and hashing (the code's) are correct and cheap. `Currency(code)` looks the code
    up and raises `UnknownCurrencyError` (a `MoneyError`, so a `ValueError`) for
    anything else, including lower case and codes without minor units.
    """

    # str subclasses cannot have slots; the attributes live in the instance dict,
    # set once when the table is built.
    code: str  #: "KWD"
    minor_units: int  #: ISO 4217's exponent: 0 (JPY), 2 (EUR), 3 (KWD), 4 (CLF)
    name: str  #: "Kuwaiti Dinar"
    quantum: Decimal  #: one minor unit: Decimal("0.001") for KWD, Decimal("1") for JPY
    max_amount: Decimal  #: MAX_MINOR minor units: Decimal("99999999999.999") for KWD

    EUR: ClassVar[Currency]
    USD: ClassVar[Currency]
    DKK: ClassVar[Currency]
    SEK: ClassVar[Currency]
    GBP: ClassVar[Currency]

    def __new__(cls, code: str) -> Currency:
        try:
            return _BY_CODE[code]
        except (KeyError, TypeError):  # TypeError: an unhashable argument
            raise UnknownCurrencyError(_unknown(code)) from None

    @classmethod
    def _make(cls, code: str, minor_units: int, name: str) -> Currency:
        currency = str.__new__(cls, code)
        currency.code = code
        currency.minor_units = minor_units
        currency.name = name
        currency.quantum = Decimal(1).scaleb(-minor_units)
        currency.max_amount = Decimal(MAX_MINOR).scaleb(-minor_units)
        return currency

    @property
    def value(self) -> str:
        """The code, as the enum this class replaces called it (`Currency.EUR.value`)."""
        return self.code

    def __repr__(self) -> str:
        return f"Currency({self.code!r})"

    # One object per code, also through pickle and copy.
    def __reduce__(self) -> tuple[Any, ...]:
        return (Currency, (self.code,))

    def __copy__(self) -> Currency:
        return self

    def __deepcopy__(self, memo: object) -> Currency:
        return self


def _load() -> tuple[Mapping[str, Currency], dict[str, str]]:
    """Every active ISO 4217 currency with minor units; the codes without them, by name."""
    usable: dict[str, Currency] = {}
    without: dict[str, str] = {}
    for entry in sorted(iso4217.Currency, key=lambda c: c.code):
        if entry.exponent is None:
            without[entry.code] = entry.currency_name
        else:
            usable[entry.code] = Currency._make(entry.code, entry.exponent, entry.currency_name)
    return usable, without


_BY_CODE, _WITHOUT_MINOR_UNITS = _load()

Currency.EUR = _BY_CODE["EUR"]
Currency.USD = _BY_CODE["USD"]
Currency.DKK = _BY_CODE["DKK"]
Currency.SEK = _BY_CODE["SEK"]
Currency.GBP = _BY_CODE["GBP"]

#: Every currency Antaeus bills in, by code.
CURRENCIES: Final[tuple[Currency, ...]] = tuple(_BY_CODE.values())
#: The five currencies of the original Antaeus, in its order (what `antaeus seed` uses).
ORIGINAL_CURRENCIES: Final[tuple[Currency, ...]] = (
    Currency.EUR,
    Currency.USD,
    Currency.DKK,
    Currency.SEK,
    Currency.GBP,
)


def _unknown(code: object) -> str:
    if isinstance(code, str) and code in _WITHOUT_MINOR_UNITS:
        return (
            f"unknown currency {code!r}: ISO 4217 lists it ({_WITHOUT_MINOR_UNITS[code]}) "
            "without minor units, so nothing is billed in it; expected a currency such as "
            "EUR, USD, JPY or KWD"
        )
    shown = f"{code[:20]!r}" if isinstance(code, str) else f"{code!r:.40}"
    return (
        f"unknown currency {shown}; expected an ISO 4217 code with minor units "
        "in capitals, such as EUR, USD, JPY or KWD"
    )


def parse_currency(text: str) -> Currency:
    """The currency `text` names, or `UnknownCurrencyError` (a `MoneyError`) naming it."""
    return Currency(text)


def _decimals(n: int) -> str:
    return f"{_NUMBER_WORDS[n] if n < len(_NUMBER_WORDS) else n} decimal{'' if n == 1 else 's'}"


def _too_precise(minor_units: int, code: str | None) -> str:
    """What an amount with too many decimals breaks, naming the currency's own."""
    if code is None:
        return f"amount must have at most {_decimals(minor_units)}"
    if minor_units == 0:
        return f"amount must have no decimals: {code} has none"
    has = _NUMBER_WORDS[minor_units]
    return f"amount must have at most {_decimals(minor_units)}: {code} has {has}"


def _amount_text(minor_units: int) -> re.Pattern[str]:
    """A plain decimal string: at most the currency's decimals, a digit more than fits."""
    whole = f"-?[0-9]{{1,{MAX_DIGITS - minor_units + 1}}}"
    return re.compile(whole if minor_units == 0 else rf"{whole}(\.[0-9]{{1,{minor_units}}})?")


#: The most decimals a currency has (CLF and UYW: four).
MAX_MINOR_UNITS: Final = max(c.minor_units for c in CURRENCIES)
_AMOUNT_TEXT: Final = {n: _amount_text(n) for n in range(MAX_MINOR_UNITS + 1)}
_CENT: Final = Decimal("0.01")


def parse_amount(value: object, currency: Currency | None = None) -> Decimal:
    """Parse an amount in `currency` given as a decimal string, an int or a Decimal, exactly.

    The result has exactly the currency's decimals (`Decimal("12.30")` in EUR,
    `Decimal("1000")` in JPY, `Decimal("12.345")` in KWD). Without a currency the
    rule of the five original currencies applies: two decimals, `MAX_AMOUNT`.

    Refuses floats (they are not exact), booleans, NaN, infinities, more decimals
    than the currency has, written ones too (`1.230` in EUR, `1.0` in JPY; `1.230`
    is fine in KWD), and anything beyond the currency's `max_amount` either way.
    """
    if currency is None:
        return _parse(value, 2, _CENT, MAX_AMOUNT, None)
    return _parse(value, currency.minor_units, currency.quantum, currency.max_amount, currency.code)


def check_amount(value: object) -> Decimal:
    """`value` as an amount that some currency could accept, for when the currency is unknown.

    What `parse_amount` refuses whatever the currency (a float, text that is no
    number, more than four decimals, more than `MAX_MINOR`) is refused; the
    result is exact but not normalized to any currency's decimals.
    """
    return _parse(value, MAX_MINOR_UNITS, None, Decimal(MAX_MINOR), None)


def _parse(
    value: object, minor_units: int, quantum: Decimal | None, limit: Decimal, code: str | None
) -> Decimal:
    if isinstance(value, bool | float):
        raise MoneyError("amount must be a decimal string or an exact number, not a float")
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, str):
        if not _AMOUNT_TEXT[minor_units].fullmatch(value):
            if minor_units == 0:
                rule = "a whole number without a decimal point"
            else:
                rule = f"a decimal number with at most {_decimals(minor_units)}"
            also = "" if code is None else f" ({code} has {_decimals(minor_units)})"
            raise MoneyError(f"amount {value[:40]!r} is not {rule}{also}")
        number = Decimal(value)
    else:
        raise MoneyError("amount must be a decimal string or a number")
    if not number.is_finite():
        raise MoneyError("amount must be a finite number")
    if number.adjusted() >= MAX_DIGITS or number.copy_abs() > limit:
        raise MoneyError(f"amount must not exceed {limit}" + ("" if code is None else f" {code}"))
    if quantum is None:
        _check_precision(number, minor_units, None)
        return number
    return _normalize(number, minor_units, quantum, code)


def _check_precision(number: Decimal, minor_units: int, code: str | None) -> None:
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)  # finite numbers have an int exponent
    if exponent < -minor_units:
        raise MoneyError(_too_precise(minor_units, code))


def _normalize(number: Decimal, minor_units: int, quantum: Decimal, code: str | None) -> Decimal:
    """`number` with exactly `minor_units` decimals, refusing any digit beyond them."""
    if not number.is_finite():
        raise MoneyError("amount must be a finite number")
    _check_precision(number, minor_units, code)
    try:
        # `+ 0` turns a negative zero into zero, so "-0" never shows as "-0.00"
        return number.quantize(quantum) + 0
    except InvalidOperation:
        raise MoneyError("amount has too many digits") from None


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount in one currency, always held with exactly the currency's decimals."""

    value: Decimal
    currency: Currency

    def __post_init__(self) -> None:
        if not isinstance(self.value, Decimal):
            raise MoneyError("Money holds a Decimal; parse input with parse_amount")
        if not isinstance(self.currency, Currency):
            raise MoneyError("Money holds a Currency; look codes up with parse_currency")
        cur = self.currency
        value = _normalize(self.value, cur.minor_units, cur.quantum, cur.code)
        object.__setattr__(self, "value", value)

    @classmethod
    def of(cls, value: object, currency: Currency | str) -> Money:
        """`value` (as `parse_amount` reads it) in `currency` (a Currency or its code)."""
        cur = currency if isinstance(currency, Currency) else parse_currency(currency)
        return cls(parse_amount(value, cur), cur)

    @classmethod
    def from_minor(cls, minor: int, currency: Currency) -> Money:
        """From stored minor units (cents, yen, fils): exact by construction, not re-validated.

        Not bounded by `max_amount` (a run's total may exceed what one invoice may
        be), only by what a Decimal holds exactly (28 digits).
        """
        try:
            value = Decimal(minor).scaleb(-currency.minor_units)
        except InvalidOperation:
            raise MoneyError("amount has too many digits") from None
        if not value.is_finite() or value.adjusted() + currency.minor_units >= 28:
            raise MoneyError("amount has too many digits")
        money = object.__new__(cls)
        object.__setattr__(money, "value", value)
        object.__setattr__(money, "currency", currency)
        return money

    @classmethod
    def zero(cls, currency: Currency) -> Money:
        return cls.from_minor(0, currency)

    @property
    def minor(self) -> int:
        """The amount in minor units (cents, yen, fils), as stored."""
        return int(self.value.scaleb(self.currency.minor_units))

    def _same(self, other: Money) -> None:
        if self.currency is not other.currency:
            raise CurrencyMismatchError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.value + other.value, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.value - other.value, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.value, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.value < other.value

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.value <= other.value

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.value > other.value

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.value >= other.value

    @property
    def is_positive(self) -> bool:
        return self.value > 0

    def __str__(self) -> str:
        return f"{self.value} {self.currency.code}"
