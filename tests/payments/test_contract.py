"""The provider contract, run against every provider Antaeus ships.

Each case runs three times: against the in-process `SimulatedPaymentProvider`,
against the HTTP adapter talking to a real `antaeus provider serve` process,
and against the Stripe adapter (the official `stripe` library) talking to the
fake Stripe (`antaeus.simulators.fake_stripe`; an account is a Stripe customer
with a saved test card and the fake's `fake_balance`).
Whatever passes here is what the worker may rely on: every outcome, replays
with the same key, a key reused with another body, concurrent requests on one
key, and what happens once a key's retention has ended.

Every test uses its own customers and keys, so the servers are shared.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, ExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from antaeus.domain.money import Currency, Money
from antaeus.payments.http import HttpPaymentProvider, HttpProviderSettings
from antaeus.payments.provider import (
    Charged,
    ChargeRequest,
    CurrencyMismatchError,
    CustomerNotFoundError,
    Declined,
    KeyInUseError,
    KeyReusedError,
    OutcomeUnknownError,
    PaymentProvider,
    RateLimitedError,
    RequestRejectedError,
    UnauthorizedError,
)
from antaeus.payments.stripe import StripePaymentProvider, StripeProviderSettings
from antaeus.simulators.simulated import Account, SimulatedPaymentProvider
from tests.payments.fake_stripe_server import RunningFake, running_fake_stripe
from tests.payments.simulator import running_simulator

_ids = itertools.count(1)
RETENTION = 2.0  # seconds, for the servers and providers that test expiry


def _next_id() -> int:
    # distinct customers and invoices per test, even with shared servers and xdist
    return next(_ids) * 1000 + secrets.randbelow(1000)


@dataclass(frozen=True)
class Entry:
    key: str
    invoice_id: int
    customer_id: int
    value: Decimal
    currency: str
    charge_id: str


class Harness:
    """One provider under test, with its admin side: accounts and ledger."""

    def __init__(
        self,
        provider: PaymentProvider,
        set_accounts: Callable[[list[Account]], Any],
        ledger: Callable[[], Any],
        prepare: Callable[[ChargeRequest], ChargeRequest] | None = None,
    ) -> None:
        self.provider = provider
        self._set_accounts = set_accounts
        self._ledger = ledger
        self._prepare = prepare  # what a provider needs besides Antaeus's ids (Stripe's)

    async def account(self, balance: str = "100.00", currency: Currency = Currency.EUR) -> int:
        customer = _next_id()
        money = Money.of(Decimal(balance), currency)
        result = self._set_accounts([Account(customer, currency, money.minor)])
        if asyncio.iscoroutine(result):
            await result
        return customer

    async def ledger(self, customer_id: int) -> list[Entry]:
        entries = self._ledger()
        if asyncio.iscoroutine(entries):
            entries = await entries
        return [e for e in entries if e.customer_id == customer_id]

    async def charge(
        self,
        customer: int,
        value: str = "10.00",
        currency: Currency = Currency.EUR,
        *,
        key: str | None = None,
        invoice: int | None = None,
    ) -> tuple[ChargeRequest, Charged | Declined | Exception]:
        request = ChargeRequest(
            invoice_id=invoice or _next_id(),
            customer_id=customer,
            amount=Money.of(Decimal(value), currency),
            idempotency_key=key or f"contract-{secrets.token_hex(8)}",
        )
        return request, await self.send(request)

    async def send(self, request: ChargeRequest) -> Charged | Declined | Exception:
        if self._prepare is not None:
            request = self._prepare(request)
        try:
            return await self.provider.charge(request)
        except Exception as exc:  # the contract is about which exception
            return exc


# -- the two kinds of provider -------------------------------------------------------


def _in_process(**options: Any) -> Callable[[], AbstractAsyncContextManager[Harness]]:
    @asynccontextmanager
    async def make() -> AsyncIterator[Harness]:
        provider = SimulatedPaymentProvider(":memory:", **options)

        def ledger() -> list[Entry]:
            return [
                Entry(
                    e.idempotency_key,
                    e.invoice_id,
                    e.customer_id,
                    e.amount.value,
                    e.amount.currency.value,
                    e.charge_id,
                )
                for e in provider.store.ledger()
            ]

        try:
            yield Harness(provider, provider.store.set_accounts, ledger)
        finally:
            await provider.aclose()

    return make


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    """Simulator processes by configuration, started once for the module."""
    configs = {
        "plain": ["--key-retention", "86400"],
        "slow": ["--latency-ms", "300"],
        "ambiguous": ["--ambiguous-rate", "1"],
        "network": ["--network-error-rate", "1"],
        "retention": ["--key-retention", str(int(RETENTION))],
        "auth": ["--api-key", "sk_test_contract"],
        "limited": ["--rate-limit", "2"],
    }
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(running_simulator(*args)) for name, args in configs.items()
        }


def _over_http(
    config: str, api_key: str | None = None
) -> Callable[[dict[str, str]], AbstractAsyncContextManager[Harness]]:
    @asynccontextmanager
    async def make(servers: dict[str, str]) -> AsyncIterator[Harness]:
        url = servers[config]
        auth = {"Authorization": "Bearer sk_test_contract"} if config == "auth" else {}
        provider = HttpPaymentProvider(
            HttpProviderSettings(
                base_url=url, api_key=api_key, connect_timeout=2, read_timeout=5, timeout=10
            )
        )

        async def set_accounts(accounts: list[Account]) -> None:
            body = [
                {
                    "customerId": a.customer_id,
                    "currency": a.currency.value,
                    "balance": str(Money.from_minor(a.balance_minor, a.currency).value),
                }
                for a in accounts
            ]
            async with httpx.AsyncClient(base_url=url, headers=auth) as client:
                response = await client.post("/admin/accounts", json=body)
                assert response.status_code == 200, response.text

        async def ledger() -> list[Entry]:
            async with httpx.AsyncClient(base_url=url, headers=auth) as client:
                response = await client.get("/admin/ledger")
                assert response.status_code == 200, response.text
            return [
                Entry(
                    c["idempotencyKey"],
                    c["invoiceId"],
                    c["customerId"],
                    Decimal(c["value"]),
                    c["currency"],
                    c["chargeId"],
                )
                for c in response.json()["charges"]
            ]

        try:
            yield Harness(provider, set_accounts, ledger)
        finally:
            await provider.aclose()

    return make


STRIPE_FAKES: dict[str, dict[str, Any]] = {
    "plain": {},
    "slow": {"latency_ms": 300},
    "ambiguous": {"lost_answer_rate": 1.0},
    "network": {"server_error_rate": 1.0},
    "retention": {"key_retention": RETENTION},
    "limited": {"rate_limit_rate": 0.5, "seed": 1},
}


@pytest.fixture(scope="module")
def stripe_fakes() -> Iterator[dict[str, RunningFake]]:
    """Fake Stripe servers by configuration, started once for the module."""
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(running_fake_stripe(**options))
            for name, options in STRIPE_FAKES.items()
        }


def _over_stripe(
    config: str, api_key: str | None = None
) -> Callable[[dict[str, RunningFake]], AbstractAsyncContextManager[Harness]]:
    @asynccontextmanager
    async def make(fakes: dict[str, RunningFake]) -> AsyncIterator[Harness]:
        fake = fakes[config]
        provider = StripePaymentProvider(
            StripeProviderSettings(
                api_key=api_key or fake.api_key,
                api_base=fake.url,
                connect_timeout=2,
                read_timeout=5,
                timeout=10,
            )
        )
        references: dict[int, tuple[str, str]] = {}
        owners: dict[str, int] = {}

        def set_accounts(accounts: list[Account]) -> None:
            for a in accounts:
                customer = fake.app.add_customer(
                    {"antaeus_customer": str(a.customer_id), "fake_balance": str(a.balance_minor)}
                )["id"]
                pm = fake.app.attach("pm_card_visa", customer)["id"]
                references[a.customer_id] = (customer, pm)
                owners[customer] = a.customer_id

        def prepare(request: ChargeRequest) -> ChargeRequest:
            # a customer Stripe does not know: a cus_ id that does not exist there
            customer, pm = references.get(
                request.customer_id, (f"cus_unknown{request.customer_id}", "pm_card_visa")
            )
            return replace(request, provider_customer_id=customer, provider_payment_method_id=pm)

        def ledger() -> list[Entry]:
            return [
                Entry(
                    pi["metadata"]["antaeus_key"],
                    int(pi["metadata"]["antaeus_invoice"]),
                    owners[pi["customer"]],
                    Decimal(pi["amount"]).scaleb(-2),
                    pi["currency"].upper(),
                    pi["id"],
                )
                for pi in list(fake.app.state.intents.values())
                if pi["status"] == "succeeded" and pi["customer"] in owners
            ]

        try:
            yield Harness(provider, set_accounts, ledger, prepare)
        finally:
            await provider.aclose()

    return make


KINDS = {
    "plain": (_in_process(), _over_http("plain")),
    "slow": (_in_process(latency_ms=300), _over_http("slow")),
    "ambiguous": (_in_process(ambiguous_rate=1.0), _over_http("ambiguous")),
    "network": (_in_process(network_error_rate=1.0), _over_http("network")),
    "retention": (
        _in_process(key_retention=timedelta(seconds=RETENTION)),
        _over_http("retention"),
    ),
}


@pytest.fixture(params=["in-process", "http", "stripe"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _harness(
    kind: str, config: str, request: pytest.FixtureRequest
) -> AbstractAsyncContextManager[Harness]:
    in_process, over_http = KINDS[config]
    if kind == "stripe":
        return _over_stripe(config)(request.getfixturevalue("stripe_fakes"))
    if kind == "in-process":
        return in_process()
    return over_http(request.getfixturevalue("servers"))


@pytest.fixture
async def plain(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async with _harness(kind, "plain", request) as harness:
        yield harness


# -- every outcome -------------------------------------------------------------------


async def test_a_charge_moves_the_amount_once_and_its_replay_answers_the_same(
    plain: Harness,
) -> None:
    customer = await plain.account("100.00")
    request, first = await plain.charge(customer, "89.52")
    assert isinstance(first, Charged)
    assert first.charge_id
    assert not first.replayed
    again = await plain.send(request)
    assert again == Charged(first.charge_id, replayed=True)
    [entry] = await plain.ledger(customer)
    assert (entry.key, entry.invoice_id, entry.value, entry.currency, entry.charge_id) == (
        request.idempotency_key,
        request.invoice_id,
        Decimal("89.52"),
        "EUR",
        first.charge_id,
    )


async def test_insufficient_funds_moves_nothing_and_is_remembered(plain: Harness) -> None:
    customer = await plain.account("5.00")
    request, first = await plain.charge(customer, "5.01")
    assert first == Declined(replayed=False)
    assert await plain.send(request) == Declined(replayed=True)
    assert await plain.ledger(customer) == []


async def test_the_balance_decides_between_two_charges(plain: Harness) -> None:
    customer = await plain.account("15.00")
    _, first = await plain.charge(customer, "10.00")
    _, second = await plain.charge(customer, "10.00")
    _, third = await plain.charge(customer, "5.00")
    assert isinstance(first, Charged)
    assert isinstance(second, Declined)
    assert isinstance(third, Charged)
    assert sorted(e.value for e in await plain.ledger(customer)) == [
        Decimal("5.00"),
        Decimal("10.00"),
    ]


async def test_an_unknown_customer_is_not_found(plain: Harness) -> None:
    await plain.account()  # the provider has accounts, just not this one
    request, first = await plain.charge(_next_id())
    assert isinstance(first, CustomerNotFoundError)
    assert isinstance(await plain.send(request), CustomerNotFoundError)


async def test_another_currency_is_a_mismatch(plain: Harness, kind: str) -> None:
    if kind == "stripe":
        pytest.skip("Stripe charges a card in any currency it takes (it converts)")
    customer = await plain.account("100.00", Currency.DKK)
    request, first = await plain.charge(customer, "10.00", Currency.EUR)
    assert isinstance(first, CurrencyMismatchError)
    assert isinstance(await plain.send(request), CurrencyMismatchError)
    assert await plain.ledger(customer) == []


async def test_a_key_reused_with_another_body_is_refused_and_moves_nothing(
    plain: Harness,
) -> None:
    customer = await plain.account("100.00")
    request, first = await plain.charge(customer, "10.00")
    assert isinstance(first, Charged)
    for other in (
        ChargeRequest(
            request.invoice_id,
            request.customer_id,
            Money.of(Decimal("10.01"), Currency.EUR),
            request.idempotency_key,
        ),
        ChargeRequest(
            request.invoice_id + 1, request.customer_id, request.amount, request.idempotency_key
        ),
    ):
        assert isinstance(await plain.send(other), KeyReusedError)
    assert len(await plain.ledger(customer)) == 1


async def test_a_definite_refusal_then_a_new_key_is_a_new_charge(plain: Harness) -> None:
    customer = await plain.account("5.00")
    request, first = await plain.charge(customer, "10.00")
    assert isinstance(first, Declined)
    # a dunning retry days later is a new charge with a new key
    _, later = await plain.charge(customer, "5.00", invoice=request.invoice_id)
    assert isinstance(later, Charged)


# -- unknown outcomes ----------------------------------------------------------------


async def test_a_lost_answer_is_unknown_and_the_replay_reveals_the_charge(
    kind: str, request: pytest.FixtureRequest
) -> None:
    async with _harness(kind, "ambiguous", request) as harness:
        customer = await harness.account("100.00")
        charge, first = await harness.charge(customer, "12.34")
        assert isinstance(first, OutcomeUnknownError)
        [entry] = await harness.ledger(customer)  # the money moved
        again = await harness.send(charge)
        assert again == Charged(entry.charge_id, replayed=True)
        assert len(await harness.ledger(customer)) == 1


async def test_a_network_error_is_unknown_and_nothing_moved(
    kind: str, request: pytest.FixtureRequest
) -> None:
    async with _harness(kind, "network", request) as harness:
        customer = await harness.account("100.00")
        charge, first = await harness.charge(customer)
        assert isinstance(first, OutcomeUnknownError)
        assert isinstance(await harness.send(charge), OutcomeUnknownError)
        assert await harness.ledger(customer) == []


# -- concurrency and retention ---------------------------------------------------------


async def test_concurrent_requests_on_one_key_charge_once(
    kind: str, request: pytest.FixtureRequest
) -> None:
    async with _harness(kind, "slow", request) as harness:
        customer = await harness.account("100.00")
        charge = ChargeRequest(
            _next_id(),
            customer,
            Money.of(Decimal("7.00"), Currency.EUR),
            f"contract-{secrets.token_hex(8)}",
        )
        results = await asyncio.gather(*(harness.send(charge) for _ in range(8)))
        charged = [r for r in results if isinstance(r, Charged)]
        in_use = [r for r in results if isinstance(r, KeyInUseError)]
        assert len(charged) + len(in_use) == len(results), results
        assert charged, results
        assert all(r.retry_after > 0 for r in in_use)
        [entry] = await harness.ledger(customer)
        assert {r.charge_id for r in charged} == {entry.charge_id}
        # once the first request is done, a repeat is a replay
        assert await harness.send(charge) == Charged(entry.charge_id, replayed=True)


async def test_after_retention_a_key_is_forgotten(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """Why Antaeus sends an unresolved attempt to REVIEW before retention ends."""
    async with _harness(kind, "retention", request) as harness:
        customer = await harness.account("100.00")
        charge, first = await harness.charge(customer, "3.00")
        assert isinstance(first, Charged)
        assert harness.provider.key_retention <= timedelta(days=1)
        await asyncio.sleep(RETENTION + 0.5)
        again = await harness.send(charge)
        assert isinstance(again, Charged)
        assert not again.replayed
        assert again.charge_id != first.charge_id
        assert len(await harness.ledger(customer)) == 2


# -- what only a provider over the network answers ---------------------------------------


async def test_a_wrong_api_key_is_unauthorized_and_moves_nothing(
    servers: dict[str, str],
) -> None:
    for api_key in (None, "sk_wrong"):
        async with _over_http("auth", api_key)(servers) as harness:
            customer = await harness.account("100.00")
            _, result = await harness.charge(customer)
            assert isinstance(result, UnauthorizedError)
            assert await harness.ledger(customer) == []
    async with _over_http("auth", "sk_test_contract")(servers) as harness:
        customer = await harness.account("100.00")
        _, result = await harness.charge(customer)
        assert isinstance(result, Charged)


async def test_too_many_requests_are_rate_limited_with_a_delay(
    servers: dict[str, str],
) -> None:
    async with _over_http("limited")(servers) as harness:
        customer = await harness.account("1000.00")
        results = [(await harness.charge(customer, "1.00"))[1] for _ in range(6)]
        limited = [r for r in results if isinstance(r, RateLimitedError)]
        assert limited, results
        assert all(r.retry_after >= 1 for r in limited)
        charged = [r for r in results if isinstance(r, Charged)]
        assert len(await harness.ledger(customer)) == len(charged)


async def test_a_malformed_request_is_rejected(servers: dict[str, str]) -> None:
    async with _over_http("plain")(servers) as harness:
        customer = await harness.account("100.00")
        bad = ChargeRequest(
            _next_id(), customer, Money.of(Decimal("1.00"), Currency.EUR), "k" * 256
        )  # longer than the protocol's 255 characters
        result = await harness.send(bad)
        assert isinstance(result, RequestRejectedError), result
        assert await harness.ledger(customer) == []


# -- what only Stripe over the network answers ------------------------------------------


async def test_stripe_a_wrong_api_key_is_unauthorized_and_moves_nothing(
    stripe_fakes: dict[str, RunningFake],
) -> None:
    async with _over_stripe("plain", "sk_test_not_the_fakes_key_0123456789")(stripe_fakes) as h:
        customer = await h.account("100.00")
        _, result = await h.charge(customer)
        assert isinstance(result, UnauthorizedError)
        assert await h.ledger(customer) == []


async def test_stripe_too_many_requests_are_rate_limited_with_a_delay(
    stripe_fakes: dict[str, RunningFake],
) -> None:
    async with _over_stripe("limited")(stripe_fakes) as harness:
        customer = await harness.account("1000.00")
        results = [(await harness.charge(customer, "1.00"))[1] for _ in range(8)]
        limited = [r for r in results if isinstance(r, RateLimitedError)]
        assert limited, results
        assert all(r.retry_after >= 1 for r in limited)
        charged = [r for r in results if isinstance(r, Charged)]
        assert len(await harness.ledger(customer)) == len(charged)


async def test_stripe_a_malformed_request_is_rejected(
    stripe_fakes: dict[str, RunningFake],
) -> None:
    async with _over_stripe("plain")(stripe_fakes) as harness:
        customer = await harness.account("100.00")
        bad = ChargeRequest(
            _next_id(), customer, Money.of(Decimal("1.00"), Currency.EUR), "k" * 256
        )  # longer than Stripe's 255 characters
        result = await harness.send(bad)
        assert isinstance(result, RequestRejectedError), result
        assert await harness.ledger(customer) == []
