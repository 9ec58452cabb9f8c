"""The simulated provider's customers: stable, seeded, and decided by their accounts.

With `failure_rate` > 0 and no accounts loaded, a customer's behaviour is a
function of (seed, customer id): the same in another process, after a restart,
under a new idempotency key; a currency mismatch happens exactly when the
account's currency is not the charge's.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from antaeus.domain.money import ORIGINAL_CURRENCIES, Currency, Money
from antaeus.payments.provider import (
    Charged,
    ChargeRequest,
    CurrencyMismatchError,
    CustomerNotFoundError,
    Declined,
    OutcomeUnknownError,
    RequestRejectedError,
)
from antaeus.simulators.simulated import Account, SimulatedPaymentProvider

CURRENCIES = list(ORIGINAL_CURRENCIES)

#: Charges customers 1..N once each (currency and amount a function of the id) and prints
#: the kind of each answer; run here and in a fresh interpreter.
SCRIPT = """
import asyncio, json, sys
from antaeus.domain.money import ORIGINAL_CURRENCIES, Currency, Money
from antaeus.payments.provider import ChargeRequest
from antaeus.simulators.simulated import SimulatedPaymentProvider

async def main(state, seed, n, tag):
    provider = SimulatedPaymentProvider(
        state, failure_rate=0.3, network_error_rate=0.0, ambiguous_rate=0.0, seed=seed
    )
    kinds = []
    for cid in range(1, n + 1):
        currency = ORIGINAL_CURRENCIES[cid % 5]
        request = ChargeRequest(cid, cid, Money.from_minor(1_000 + cid, currency), f"{tag}:{cid}")
        try:
            kinds.append(type(await provider.charge(request)).__name__)
        except Exception as exc:
            kinds.append(type(exc).__name__)
    await provider.aclose()
    return kinds

print(json.dumps(asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))))
"""


def kinds_in_a_process(state: str, seed: int, n: int, tag: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, state, str(seed), str(n), tag],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    kinds: list[str] = json.loads(done.stdout)
    return kinds


def test_outcomes_are_a_function_of_seed_and_customer_across_processes(tmp_path: Path) -> None:
    first = kinds_in_a_process(":memory:", 5, 300, "a")
    again = kinds_in_a_process(":memory:", 5, 300, "other-keys")
    assert first == again
    counts = Counter(first)
    # about 0.5 r too little money, 0.1 r each: no account, other currency, lost answers
    assert counts["Declined"] in range(25, 70), counts
    for kind in ("CustomerNotFoundError", "CurrencyMismatchError", "SimulatedLostAnswer"):
        assert counts[kind] in range(2, 25), counts
    assert counts["Charged"] in range(190, 260), counts
    assert kinds_in_a_process(":memory:", 6, 300, "a") != first  # the seed matters


def test_outcomes_survive_a_restart_under_new_keys(tmp_path: Path) -> None:
    state = str(tmp_path / "simulator.db")
    before = kinds_in_a_process(state, 9, 200, "month-1")
    after = kinds_in_a_process(state, 9, 200, "month-2")  # the accounts opened are kept
    assert before == after
    assert len(set(before)) == 5, Counter(before)


def _request(cid: int, currency: Currency, minor: int, key: str) -> ChargeRequest:
    return ChargeRequest(cid, cid, Money.from_minor(minor, currency), key)


charges = st.lists(
    st.tuples(st.integers(1, 30), st.sampled_from(CURRENCIES), st.integers(0, 100_000_000_000)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    rate=st.floats(0.01, 1.0),
    put=st.lists(
        st.tuples(st.integers(1, 30), st.sampled_from(CURRENCIES), st.integers(0, 10**9)),
        max_size=5,
    ),
    requests=charges,
)
def test_a_currency_mismatch_happens_exactly_when_the_currencies_differ(
    seed: int,
    rate: float,
    put: list[tuple[int, Currency, int]],
    requests: list[tuple[int, Currency, int]],
) -> None:
    async def check() -> None:
        provider = SimulatedPaymentProvider(
            ":memory:", failure_rate=rate, network_error_rate=0.0, ambiguous_rate=0.0, seed=seed
        )
        try:
            for cid, currency, balance in put:
                provider.store.put_account(Account(cid, currency, balance))
            for i, (cid, currency, minor) in enumerate(requests):
                request = _request(cid, currency, minor, f"k{i}")
                try:
                    result: object = await provider.charge(request)
                except (
                    CustomerNotFoundError,
                    CurrencyMismatchError,
                    OutcomeUnknownError,
                    RequestRejectedError,
                ) as exc:
                    result = exc
                account = provider.store.account(cid)
                if isinstance(result, CurrencyMismatchError):
                    assert account is not None
                    assert account.currency != currency
                elif account is not None and not isinstance(result, CustomerNotFoundError):
                    assert account.currency == currency, (result, account)
                if isinstance(result, CustomerNotFoundError):
                    assert account is None
                if isinstance(result, Declined):
                    assert account is not None
                    assert account.balance_minor < minor
        finally:
            await provider.aclose()

    asyncio.run(check())


async def test_a_customer_billed_in_its_own_currency_mismatches_only_by_its_profile() -> None:
    provider = SimulatedPaymentProvider(
        ":memory:", failure_rate=0.3, network_error_rate=0.0, ambiguous_rate=0.0, seed=3
    )
    try:
        for cid in range(1, 201):
            currency = CURRENCIES[cid % len(CURRENCIES)]  # the customer's currency
            for month in range(3):
                request = _request(cid, currency, 2_000, f"{cid}:{month}")
                try:
                    await provider.charge(request)
                    mismatched = False
                except CurrencyMismatchError:
                    mismatched = True
                except (CustomerNotFoundError, OutcomeUnknownError):
                    mismatched = False
                assert mismatched == (provider.profile(cid) == "other_currency"), cid
    finally:
        await provider.aclose()


async def test_charges_debit_and_funding_helps() -> None:
    provider = SimulatedPaymentProvider(":memory:", seed=1)  # no profiles: every charge made
    try:
        provider.store.put_account(Account(7, Currency.EUR, 1_500))
        first = await provider.charge(_request(7, Currency.EUR, 1_000, "a"))
        assert isinstance(first, Charged)
        assert isinstance(await provider.charge(_request(7, Currency.EUR, 1_000, "b")), Declined)
        assert isinstance(await provider.charge(_request(7, Currency.EUR, 1_000, "c")), Declined)
        funded = provider.store.fund(7, 600)
        assert funded == Account(7, Currency.EUR, 1_100)
        assert isinstance(await provider.charge(_request(7, Currency.EUR, 1_000, "d")), Charged)
        assert provider.store.account(7) == Account(7, Currency.EUR, 100)
        # another customer without an account: still charged (nothing was loaded)
        assert isinstance(await provider.charge(_request(8, Currency.SEK, 5, "e")), Charged)
        assert provider.store.fund(8, 100) is None
    finally:
        await provider.aclose()
