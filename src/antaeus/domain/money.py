"""Money as an exact decimal with its currency's two minor units. Never a float."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Final


class Currency(StrEnum):
    EUR = "EUR"
    USD = "USD"
    DKK = "DKK"
    SEK = "SEK"
    GBP = "GBP"

    @property
    def minor_units(self) -> int:
        return 2  # every supported currency has two decimals


#: The largest amount Antaeus accepts: one trillion minus a cent. Bigger is a typo.
MAX_AMOUNT: Final = Decimal("999999999999.99")
_CENT: Final = Decimal("0.01")
_AMOUNT_TEXT: Final = re.compile(r"-?[0-9]{1,13}(\.[0-9]{1,2})?")


class MoneyError(ValueError):
    """An amount that cannot be money (bad text, wrong precision, out of range)."""


class CurrencyMismatchError(MoneyError):
    """Arithmetic or comparison across two currencies."""


def parse_currency(text: str) -> Currency:
    try:
        return Currency(text)
    except ValueError:
        allowed = ", ".join(c.value for c in Currency)
        raise MoneyError(f"unknown currency {text!r}; expected one of {allowed}") from None


def parse_amount(value: object) -> Decimal:
    """Parse an amount given as a decimal string, an int or a Decimal, exactly.

    Refuses floats (they are not exact), booleans, NaN, infinities, more than
    two decimals (even `1.230`), and anything beyond `MAX_AMOUNT` either way.
    """
    if isinstance(value, bool | float):
        raise MoneyError("amount must be a decimal string or an exact number, not a float")
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, str):
        if not _AMOUNT_TEXT.fullmatch(value):
            raise MoneyError(
                f"amount {value[:40]!r} is not a decimal number with at most two decimals"
            )
        number = Decimal(value)
    else:
        raise MoneyError("amount must be a decimal string or a number")
    if not number.is_finite():
        raise MoneyError("amount must be a finite number")
    if number.adjusted() > 12 or number.copy_abs() > MAX_AMOUNT:
        raise MoneyError(f"amount must not exceed {MAX_AMOUNT}")
    return _normalize(number)


def _normalize(number: Decimal) -> Decimal:
    """`number` with exactly two decimals, refusing any digit beyond them."""
    if not number.is_finite():
        raise MoneyError("amount must be a finite number")
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)  # finite numbers have an int exponent
    if exponent < -2:
        raise MoneyError("amount must have at most two decimals")
    try:
        # `+ 0` turns a negative zero into zero, so "-0" never shows as "-0.00"
        return number.quantize(_CENT) + 0
    except InvalidOperation:
        raise MoneyError("amount has too many digits") from None


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount in one currency, always held with two decimals."""

    value: Decimal
    currency: Currency

    def __post_init__(self) -> None:
        if not isinstance(self.value, Decimal):
            raise MoneyError("Money holds a Decimal; parse input with parse_amount")
        object.__setattr__(self, "value", _normalize(self.value))

    @classmethod
    def of(cls, value: object, currency: Currency | str) -> Money:
        cur = currency if isinstance(currency, Currency) else parse_currency(currency)
        return cls(parse_amount(value), cur)

    @classmethod
    def from_minor(cls, minor: int, currency: Currency) -> Money:
        """From stored minor units (cents): exact by construction, so no re-validation."""
        try:
            value = Decimal(minor).scaleb(-2)
        except InvalidOperation:
            raise MoneyError("amount has too many digits") from None
        if not value.is_finite() or value.adjusted() >= 28 - 2:
            raise MoneyError("amount has too many digits")
        money = object.__new__(cls)
        object.__setattr__(money, "value", value)
        object.__setattr__(money, "currency", currency)
        return money

    @classmethod
    def zero(cls, currency: Currency) -> Money:
        return cls(Decimal("0.00"), currency)

    @property
    def minor(self) -> int:
        """The amount in minor units (cents), as stored."""
        return int(self.value.scaleb(2))

    def _same(self, other: Money) -> None:
        if self.currency is not other.currency:
            raise CurrencyMismatchError(
                f"cannot combine {self.currency.value} with {other.currency.value}"
            )

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
        return f"{self.value} {self.currency.value}"
