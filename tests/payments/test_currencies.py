"""The simulated provider and `antaeus provider serve` in any currency, with its own decimals.

The HTTP adapter sends `amount.value` with exactly the currency's decimals; the
server reads exactly those (JPY `"1000"`, KWD `"12.345"`), keeps balances in
the currency's minor units and writes them back with its decimals.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer

from antaeus.cli.provider import _accounts_from_db
from antaeus.domain.money import Currency, Money
from antaeus.payments.http import HttpPaymentProvider, HttpProviderSettings, encode_request
from antaeus.payments.provider import Charged, ChargeRequest, Declined
from antaeus.simulators.simulated import Account, SimulatedPaymentProvider
from antaeus.storage.database import Database
from antaeus.storage.repositories.customers import CustomerRepository
from tests.payments.simulator import running_simulator
from tests.simulators.test_simulator_server import body, charge, client_for, key, ledger_of

ACCOUNTS = [
    {"customerId": 1, "currency": "JPY", "balance": "5000"},
    {"customerId": 2, "currency": "KWD", "balance": "20.000"},
    {"customerId": 3, "currency": "BHD", "balance": 1},
    {"customerId": 4, "currency": "CLF", "balance": "0.5"},
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("accounts") / "accounts.json"
    path.write_text(json.dumps(ACCOUNTS))
    with running_simulator("--accounts", str(path)) as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[httpx.Client]:
    yield from client_for(server)


@pytest.mark.parametrize(
    ("code", "minor", "text"),
    [("JPY", 1000, "1000"), ("KWD", 12345, "12.345"), ("CLF", 5, "0.0005"), ("EUR", 5, "0.05")],
)
def test_the_adapter_sends_the_currency_decimals(code: str, minor: int, text: str) -> None:
    money = Money.from_minor(minor, Currency(code))
    sent = json.loads(encode_request(ChargeRequest(1, 2, money, "k")))
    assert sent["amount"] == {"value": text, "currency": code}


def test_accounts_are_loaded_and_shown_with_their_decimals(client: httpx.Client) -> None:
    shown = {
        a["customerId"]: a for a in (client.get(f"/admin/accounts/{i}").json() for i in range(1, 5))
    }
    assert shown[1] == {"customerId": 1, "currency": "JPY", "balance": "5000"}
    assert shown[2] == {"customerId": 2, "currency": "KWD", "balance": "20.000"}
    assert shown[3] == {"customerId": 3, "currency": "BHD", "balance": "1.000"}
    assert shown[4] == {"customerId": 4, "currency": "CLF", "balance": "0.5000"}


def test_charges_in_jpy_and_kwd_spend_their_minor_units(client: httpx.Client) -> None:
    jpy = key()
    answer = charge(client, body(10, 1, {"value": "1000", "currency": "JPY"}), jpy)
    assert answer.status_code == 200, answer.text
    assert [c["value"] for c in ledger_of(client, jpy)] == ["1000"]
    assert client.get("/admin/accounts/1").json()["balance"] == "4000"
    kwd = key()
    answer = charge(client, body(11, 2, {"value": "12.345", "currency": "KWD"}), kwd)
    assert answer.status_code == 200, answer.text
    assert [(c["value"], c["currency"]) for c in ledger_of(client, kwd)] == [("12.345", "KWD")]
    assert client.get("/admin/accounts/2").json()["balance"] == "7.655"
    low = charge(client, body(12, 2, {"value": "7.656", "currency": "KWD"}), key())
    assert low.status_code == 402, low.text


@pytest.mark.parametrize(
    ("customer", "amount"),
    [
        (1, {"value": "1000.00", "currency": "JPY"}),  # JPY has no decimals
        (1, {"value": "1000.", "currency": "JPY"}),
        (1, {"value": "1000.5", "currency": "JPY"}),
        (2, {"value": "12.34", "currency": "KWD"}),  # exactly three, as the protocol says
        (2, {"value": "12.3450", "currency": "KWD"}),
        (3, {"value": "1.00", "currency": "BHD"}),
        (1, {"value": "1", "currency": "XAU"}),  # no minor units: no currency
    ],
)
def test_a_charge_not_in_the_currency_decimals_is_400_and_moves_nothing(
    client: httpx.Client, customer: int, amount: dict[str, Any]
) -> None:
    before = client.get(f"/admin/accounts/{customer}").json()
    k = key()
    answer = charge(client, body(20, customer, amount), k)
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"].startswith("amount.")
    assert amount["currency"] in answer.json()["message"]
    assert ledger_of(client, k) == []
    assert client.get(f"/admin/accounts/{customer}").json() == before


@pytest.mark.parametrize(
    ("path", "sent", "field"),
    [
        ("/admin/accounts/900", {"currency": "JPY", "balance": "1.5"}, "balance"),
        ("/admin/accounts/900", {"currency": "JPY", "balance": "100.00"}, "balance"),
        ("/admin/accounts/900", {"currency": "KWD", "balance": "1.0001"}, "balance"),
        ("/admin/accounts/900", {"currency": "XDR", "balance": "1"}, "currency"),
        ("/admin/accounts/1/fund", {"amount": "0.5"}, "amount"),  # customer 1 is in JPY
    ],
)
def test_balances_and_funding_follow_the_currency_decimals(
    client: httpx.Client, path: str, sent: dict[str, Any], field: str
) -> None:
    before = client.get("/admin/accounts/1").json()
    answer = client.post(path, json=sent)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
    assert client.get("/admin/accounts/900").status_code == 404
    assert client.get("/admin/accounts/1").json() == before


def test_funding_a_jpy_account(client: httpx.Client) -> None:
    made = client.post("/admin/accounts/901", json={"currency": "JPY", "balance": 300})
    assert made.status_code == 201, made.text
    funded = client.post("/admin/accounts/901/fund", json={"amount": "700"})
    assert funded.json() == {"customerId": 901, "currency": "JPY", "balance": "1000"}


async def test_the_http_adapter_charges_jpy_and_kwd_through_the_server(server: str) -> None:
    provider = HttpPaymentProvider(
        HttpProviderSettings(base_url=server, connect_timeout=2, read_timeout=5, timeout=10)
    )
    try:
        client = httpx.AsyncClient(base_url=server)
        async with client:
            for cid, code in [(30, "JPY"), (31, "KWD")]:
                made = await client.post(
                    f"/admin/accounts/{cid}", json={"currency": code, "balance": "100"}
                )
                assert made.status_code == 201, made.text
        yen = await provider.charge(ChargeRequest(40, 30, Money.of("99", "JPY"), key()))
        assert isinstance(yen, Charged)
        dinar = await provider.charge(ChargeRequest(41, 31, Money.of("99.999", "KWD"), key()))
        assert isinstance(dinar, Charged)
        low = await provider.charge(ChargeRequest(42, 31, Money.of("0.002", "KWD"), key()))
        assert isinstance(low, Declined)
    finally:
        await provider.aclose()
    async with httpx.AsyncClient(base_url=server) as after:
        assert (await after.get("/admin/accounts/30")).json()["balance"] == "1"
        assert (await after.get("/admin/accounts/31")).json()["balance"] == "0.001"


async def test_the_in_process_simulator_in_jpy_and_kwd(tmp_path: Path) -> None:
    provider = SimulatedPaymentProvider(str(tmp_path / "sim.db"), failure_rate=0.0, seed=1)
    try:
        provider.store.set_accounts(
            [Account(1, Currency("JPY"), 1000), Account(2, Currency("KWD"), 12345)]
        )
        paid = await provider.charge(ChargeRequest(1, 1, Money.of("1000", "JPY"), "a"))
        assert isinstance(paid, Charged)
        low = await provider.charge(ChargeRequest(2, 2, Money.of("12.346", "KWD"), "b"))
        assert isinstance(low, Declined)
        paid = await provider.charge(ChargeRequest(3, 2, Money.of("12.345", "KWD"), "c"))
        assert isinstance(paid, Charged)
        assert [(e.amount.minor, str(e.amount)) for e in provider.store.ledger()] == [
            (1000, "1000 JPY"),
            (12345, "12.345 KWD"),
        ]
    finally:
        await provider.aclose()
    # without loaded accounts, a new customer gets one in its first charge's currency
    seeded = SimulatedPaymentProvider(":memory:", failure_rate=0.0, seed=1)
    try:
        opened = await seeded.charge(ChargeRequest(4, 77, Money.of("1", "JPY"), "d"))
        assert isinstance(opened, Charged)
        assert [str(e.amount) for e in seeded.store.ledger()] == ["1 JPY"]
    finally:
        await seeded.aclose()


async def test_accounts_from_db_get_the_balance_in_each_customer_currency(
    database: Database, database_url: str
) -> None:
    now = datetime(2026, 11, 22, tzinfo=UTC)
    async with database.write() as conn:
        ids = await CustomerRepository(conn).create_many(
            [(Currency("JPY"), "UTC"), (Currency("KWD"), "UTC"), (Currency.EUR, "UTC")], now
        )
    accounts = await _accounts_from_db(database_url, Decimal("1000000.00"))
    assert [
        (a.customer_id, str(Money.from_minor(a.balance_minor, a.currency))) for a in accounts
    ] == [
        (ids[0], "1000000 JPY"),
        (ids[1], "1000000.000 KWD"),
        (ids[2], "1000000.00 EUR"),
    ]
    with pytest.raises(typer.Exit):  # half a yen is no balance
        await _accounts_from_db(database_url, Decimal("0.50"))
