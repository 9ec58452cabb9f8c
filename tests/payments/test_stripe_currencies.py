"""The adapter's currency table against the fake Stripe's own reading of the same page.

The adapter converts an invoice's ISO minor units to Stripe's `amount`
(`stripe_rules.RULES`); the fake Stripe converts Stripe's `amount` back with its
own code written from https://docs.stripe.com/currencies, and never imports the
adapter's table. Every special case of the page is charged through the adapter;
the fake's ledger must show the invoice's own amount. A wrong row in the
adapter's table (UGX zero-decimal, as it was) shows as a refusal or a wrong value.
"""

from __future__ import annotations

import dataclasses
import secrets
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from antaeus.domain.money import Currency, Money
from antaeus.payments import stripe_rules
from antaeus.payments.provider import Charged, ChargeRequest, RequestRejectedError
from antaeus.payments.stripe import StripePaymentProvider, StripeProviderSettings
from tests.payments.fake_stripe_server import RunningFake, running_fake_stripe
from tests.simulators.test_apart import imports_of

ROOT = Path(__file__).resolve().parents[2]

#: An invoice of each special case of the page (and ordinary ones): the amount as written
CHARGED = [
    ("10.99", "USD"),
    ("500", "JPY"),  # zero-decimal
    ("50", "KRW"),  # zero-decimal, at its minimum
    ("123", "MGA"),  # zero-decimal at Stripe, two decimals in ISO 4217
    ("5", "ISK"),  # two decimals in the API, always 00
    ("5", "UGX"),  # the same, although listed as zero-decimal too
    ("175.45", "HUF"),  # zero-decimal for payouts only: charges take two decimals
    ("800.45", "TWD"),
    ("5.120", "KWD"),  # three decimals, the last 0
    ("12.340", "BHD"),
    ("1500000.00", "IDR"),  # an ordinary IDR invoice: nine digits
    ("9999999999.99", "IDR"),  # twelve digits
    ("99999999.99", "COP"),  # ten digits
    ("9999999.99", "INR"),  # nine digits
    ("999999.99", "EUR"),  # eight digits
    ("0.30", "GBP"),  # minimums
    ("175.00", "HUF"),
]


@pytest.fixture(scope="module")
def fake() -> Iterator[RunningFake]:
    with running_fake_stripe() as running:
        yield running


def _request(fake: RunningFake, money: Money) -> ChargeRequest:
    customer = fake.app.add_customer()["id"]
    pm = fake.app.attach("pm_card_visa", customer)["id"]
    return ChargeRequest(
        invoice_id=1,
        customer_id=1,
        amount=money,
        idempotency_key=f"cur-{secrets.token_hex(8)}",
        attempt=1,
        provider_customer_id=customer,
        provider_payment_method_id=pm,
    )


async def _charged(fake: RunningFake, money: Money) -> tuple[Decimal, str] | str:
    """What the fake's ledger says the charge of `money` through the adapter was worth
    (or why nothing was charged)."""
    provider = StripePaymentProvider(StripeProviderSettings(fake.api_key, api_base=fake.url))
    request = _request(fake, money)
    try:
        refused = provider.refusal(request)
        if refused is not None:
            return f"refused by the adapter: {refused.detail}"
        try:
            outcome = await provider.charge(request)
        except RequestRejectedError as exc:
            return f"refused by the fake: {exc}"
    finally:
        await provider.aclose()
    assert isinstance(outcome, Charged)
    entry = next(e for e in fake.app.ledger() if e["id"] == outcome.charge_id)
    return Decimal(entry["value"]), entry["currency"].upper()


@pytest.mark.parametrize(("value", "code"), CHARGED)
async def test_the_fake_stripe_charged_the_invoices_own_amount(
    fake: RunningFake, value: str, code: str
) -> None:
    money = Money.of(Decimal(value), Currency(code))
    assert await _charged(fake, money) == (Decimal(value), code)
    async with httpx.AsyncClient() as http:
        shown = (await http.get(f"{fake.url}/_fake/ledger")).json()["charges"][-1]
    assert (shown["value"], shown["currency"]) == (str(fake_value(money)), code.lower())


def fake_value(money: Money) -> Decimal:
    """The invoice's amount as the fake writes it (its own decimals: 5 UGX is "5.00")."""
    from antaeus.simulators.fake_stripe import exponent

    return money.value.quantize(Decimal(1).scaleb(-exponent(money.currency.code.lower())))


async def test_a_wrong_row_in_the_adapters_table_fails(
    fake: RunningFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the test above would catch: UGX zero-decimal (sent 100 times too small), ISK
    without its step, IDR with the general maximum, KWD as two decimals."""
    table = dict(stripe_rules.RULES)
    monkeypatch.setattr(stripe_rules, "RULES", table)
    wrong = {
        "UGX": dataclasses.replace(table["UGX"], decimals=0, step=1),
        "JPY": dataclasses.replace(table["JPY"], decimals=2),
        "IDR": dataclasses.replace(table["IDR"], maximum=99_999_999),
        "KWD": dataclasses.replace(table["KWD"], decimals=2, step=1),
    }
    right = dict(table)
    for code, row in wrong.items():
        value = {"UGX": "5000", "JPY": "500", "IDR": "1500000.00", "KWD": "5.120"}[code]
        money = Money.of(Decimal(value), Currency(code))
        assert await _charged(fake, money) == (Decimal(value), code), code  # the right row
        table[code] = row
        assert await _charged(fake, money) != (Decimal(value), code), code
        table[code] = right[code]


def test_the_fake_refuses_what_the_page_says_stripe_refuses(fake: RunningFake) -> None:
    from antaeus.simulators.fake_stripe import amount_problem

    for amount, currency in [
        (5, "ugx"),  # "You can't charge fractions of UGX"
        (550, "isk"),
        (5124, "kwd"),  # "must be rounded to 5120 or 5130"
        (49, "usd"),
        (29, "gbp"),
        (49, "jpy"),
        (17_499, "huf"),
        (100_000_000, "eur"),
        (1_000_000_000_000, "idr"),
        (10_000_000_000, "cop"),
        (1_000_000_000, "inr"),
    ]:
        assert amount_problem(amount, currency) is not None, (amount, currency)
    assert amount_problem(1_000_000_000, "idr", "pm_card_amex") is not None  # 9 digits: Amex
    assert amount_problem(999_999_999_999, "idr") is None


#: The fake and what serves it must not import the adapter they check: neither its table
#: (`stripe_rules`) nor the adapter itself (`payments.stripe`).
FAKES = [
    "src/antaeus/simulators/fake_stripe.py",
    "src/antaeus/simulators/server.py",
    "tests/payments/fake_stripe_server.py",
]
#: `antaeus provider serve --stripe` and `stripe-link`: stripe-link talks to Stripe (or the
#: fake) through the adapter's transport, so only the table is off limits here.
FAKE_COMMANDS = ["src/antaeus/cli/stripe_fake.py"]


@pytest.mark.parametrize("path", FAKES + FAKE_COMMANDS)
def test_the_fake_never_imports_the_adapters_table(path: str) -> None:
    imported = imports_of(ROOT / path)
    assert not {m for m in imported if "stripe_rules" in m}, imported


@pytest.mark.parametrize("path", FAKES)
def test_the_fake_never_imports_the_adapter(path: str) -> None:
    imported = imports_of(ROOT / path)
    adapter = {"antaeus.payments.stripe", "antaeus.payments.stripe_rules"}
    assert not {m for m in imported if m in adapter or m.startswith("antaeus.payments.stripe.")}, (
        imported
    )


def test_serving_the_fake_loads_no_table_of_the_adapter() -> None:
    code = (
        "import sys, antaeus.simulators.fake_stripe, antaeus.simulators.server, "
        "tests.payments.fake_stripe_server; "
        "print(sorted(m for m in sys.modules if m.startswith('antaeus.payments.stripe'))); "
        "import antaeus.cli.stripe_fake; "
        "print(sorted(m for m in sys.modules if m.startswith('antaeus.payments.stripe')))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    fake, command = shown.stdout.splitlines()
    assert fake == "[]", shown.stdout  # neither the adapter nor its table
    assert "stripe_rules" not in command, shown.stdout
