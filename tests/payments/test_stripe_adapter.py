"""The Stripe adapter against the fake Stripe, with the official library as the client.

Every row of the Stripe guide's table (docs/guides/stripe.md), idempotency (replay, other
parameters, a key in use), faults, `find_charge`, and what the API key shows.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from structlog.testing import capture_logs

from antaeus.domain.money import Currency, Money
from antaeus.payments.provider import (
    AuthenticationRequiredError,
    CannotTell,
    CardDeclinedError,
    Charged,
    ChargeFound,
    ChargeLookup,
    ChargeRequest,
    CustomerNotFoundError,
    Declined,
    KeyInUseError,
    KeyReusedError,
    NothingCharged,
    NotSentError,
    OutcomeUnknownError,
    RateLimitedError,
    RequestRejectedError,
    UnauthorizedError,
)
from antaeus.payments.stripe import (
    STRIPE_KEY_RETENTION,
    StripePaymentProvider,
    StripeProviderSettings,
    mask_key,
)
from tests.payments.fake_stripe_server import RunningFake, running_fake_stripe

CLIENTS = ["httpx", "aiohttp"]


@pytest.fixture(scope="module")
def fake() -> Iterator[RunningFake]:
    with running_fake_stripe(read_only_key="rk_test_readonly_0123456789abcdef") as running:
        yield running


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _provider(fake: RunningFake, client: str, **overrides: Any) -> StripePaymentProvider:
    options: dict[str, Any] = {
        "api_key": fake.api_key,
        "api_base": fake.url,
        "client": client,
        "connect_timeout": 2,
        "read_timeout": 5,
        "timeout": 10,
    }
    options.update(overrides)
    return StripePaymentProvider(StripeProviderSettings(**options))


@pytest.fixture
async def stripe_provider(fake: RunningFake, client: str) -> AsyncIterator[StripePaymentProvider]:
    provider = _provider(fake, client)
    try:
        yield provider
    finally:
        await provider.aclose()


def _customer(
    fake: RunningFake, card: str | None = "pm_card_visa", **metadata: str
) -> tuple[str, str]:
    customer = fake.app.add_customer(metadata)["id"]
    pm = fake.app.attach(card, customer)["id"] if card else ""
    return customer, pm


def _request(
    customer: str | None,
    pm: str | None,
    value: str = "10.00",
    currency: Currency = Currency.EUR,
    *,
    key: str | None = None,
    invoice: int = 7,
) -> ChargeRequest:
    return ChargeRequest(
        invoice_id=invoice,
        customer_id=42,
        amount=Money.of(Decimal(value), currency),
        idempotency_key=key or f"inv-{invoice}-{secrets.token_hex(6)}",
        attempt=2,
        provider_customer_id=customer,
        provider_payment_method_id=pm,
    )


async def _outcome(provider: StripePaymentProvider, request: ChargeRequest) -> Any:
    try:
        return await provider.charge(request)
    except Exception as exc:
        return exc


# -- every row of the table ------------------------------------------------------------


async def test_succeeded_is_charged_with_the_payment_intent_id_and_what_was_sent(
    fake: RunningFake, stripe_provider: StripePaymentProvider
) -> None:
    customer, pm = _customer(fake)
    request = _request(customer, pm, "89.52")
    first = await stripe_provider.charge(request)
    assert isinstance(first, Charged)
    assert first.charge_id.startswith("pi_")
    assert not first.replayed
    intent = fake.app.state.intents[first.charge_id]
    assert intent["status"] == "succeeded"
    assert (intent["amount"], intent["currency"], intent["customer"], intent["payment_method"]) == (
        8952,
        "eur",
        customer,
        pm,
    )
    assert intent["metadata"] == {
        "antaeus_invoice": "7",
        "antaeus_attempt": "2",
        "antaeus_key": request.idempotency_key,
    }
    assert request.idempotency_key in fake.app.state.keys
    assert await stripe_provider.charge(request) == Charged(first.charge_id, replayed=True)


async def test_insufficient_funds_is_declined_and_its_replay_says_so(
    fake: RunningFake, stripe_provider: StripePaymentProvider
) -> None:
    request = _request(*_customer(fake, "pm_card_chargeDeclinedInsufficientFunds"))
    assert await stripe_provider.charge(request) == Declined(replayed=False)
    assert await stripe_provider.charge(request) == Declined(replayed=True)


@pytest.mark.parametrize(
    ("card", "decline_code"),
    [
        ("pm_card_chargeDeclined", "generic_decline"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card"),
        ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc"),
        ("pm_card_chargeDeclinedLostCard", "lost_card"),
    ],
)
async def test_other_declines_keep_stripes_decline_code(
    fake: RunningFake, stripe_provider: StripePaymentProvider, card: str, decline_code: str
) -> None:
    result = await _outcome(stripe_provider, _request(*_customer(fake, card)))
    assert isinstance(result, CardDeclinedError), result
    assert result.decline_code == decline_code


@pytest.mark.parametrize("card", ["pm_card_authenticationRequired", "pm_card_threeDSecureRequired"])
async def test_authentication_required_and_requires_action(
    fake: RunningFake, stripe_provider: StripePaymentProvider, card: str
) -> None:
    result = await _outcome(stripe_provider, _request(*_customer(fake, card)))
    assert isinstance(result, AuthenticationRequiredError), result


async def test_a_missing_customer_or_payment_method_is_customer_not_found(
    fake: RunningFake, stripe_provider: StripePaymentProvider
) -> None:
    customer, _pm = _customer(fake)
    for request in (_request("cus_gone", "pm_card_visa"), _request(customer, "pm_gone")):
        assert isinstance(await _outcome(stripe_provider, request), CustomerNotFoundError)
    assert not any(
        pi["customer"] in ("cus_gone", customer) for pi in fake.app.state.intents.values()
    )


async def test_another_invalid_request_is_rejected(
    fake: RunningFake, stripe_provider: StripePaymentProvider
) -> None:
    _other, foreign_pm = _customer(fake)
    customer, _pm = _customer(fake)
    result = await _outcome(stripe_provider, _request(customer, foreign_pm))
    assert isinstance(result, RequestRejectedError), result
    too_long = _request(customer, _pm, key="k" * 256)
    assert isinstance(await _outcome(stripe_provider, too_long), RequestRejectedError)


async def test_other_parameters_under_a_key_are_key_reused(
    fake: RunningFake, stripe_provider: StripePaymentProvider
) -> None:
    customer, pm = _customer(fake)
    request = _request(customer, pm, "10.00")
    assert isinstance(await stripe_provider.charge(request), Charged)
    for other in (
        _request(customer, pm, "10.01", key=request.idempotency_key),
        _request(customer, pm, "10.00", key=request.idempotency_key, invoice=8),
    ):
        assert isinstance(await _outcome(stripe_provider, other), KeyReusedError)
    charged = [pi for pi in fake.app.state.intents.values() if pi["customer"] == customer]
    assert len(charged) == 1


async def test_concurrent_requests_with_one_key_are_key_in_use_and_charge_once(
    client: str,
) -> None:
    with running_fake_stripe(latency_ms=300) as slow:
        provider = _provider(slow, client)
        try:
            request = _request(*_customer(slow))
            results = await asyncio.gather(*(_outcome(provider, request) for _ in range(5)))
            charged = [r for r in results if isinstance(r, Charged)]
            in_use = [r for r in results if isinstance(r, KeyInUseError)]
            assert len(charged) == 1, results
            assert len(in_use) == 4, results
            assert all(0 < r.retry_after <= 60 for r in in_use)
            again = await provider.charge(request)
            assert again == Charged(charged[0].charge_id, replayed=True)
            assert len(slow.app.state.intents) == 1
        finally:
            await provider.aclose()


async def test_rate_limited_waits_what_stripe_says(client: str) -> None:
    with running_fake_stripe(rate_limit_rate=1.0) as limited:
        provider = _provider(limited, client)
        try:
            result = await _outcome(provider, _request(*_customer(limited)))
            assert isinstance(result, RateLimitedError), result
            assert result.retry_after == 1.0
            assert limited.app.state.intents == {}
        finally:
            await provider.aclose()


@pytest.mark.parametrize(
    "key", ["sk_test_wrong_0123456789abcdefghij", "rk_test_readonly_0123456789abcdef"]
)
async def test_a_refused_key_is_unauthorized_and_never_shown(
    fake: RunningFake, client: str, key: str
) -> None:
    provider = _provider(fake, client, api_key=key)
    try:
        with capture_logs() as logs:
            result = await _outcome(provider, _request(*_customer(fake)))
        assert isinstance(result, UnauthorizedError), result
        assert key not in str(result)
        assert key not in repr(logs)
        assert key not in provider.describe()
        assert key not in repr(provider)
        assert mask_key(key) in provider.describe()
    finally:
        await provider.aclose()


async def test_server_errors_are_unknown_and_nothing_moved(client: str) -> None:
    with running_fake_stripe(server_error_rate=1.0) as failing:
        provider = _provider(failing, client)
        try:
            request = _request(*_customer(failing))
            for _ in range(2):
                assert isinstance(await _outcome(provider, request), OutcomeUnknownError)
            assert failing.app.state.intents == {}
        finally:
            await provider.aclose()


async def test_a_lost_answer_is_unknown_and_the_repeat_reveals_the_charge(client: str) -> None:
    with running_fake_stripe(lost_answer_rate=1.0, seed=3) as losing:
        provider = _provider(losing, client)
        try:
            customers = [_customer(losing) for _ in range(4)]  # both kinds: 500 and dropped
            for customer, pm in customers:
                request = _request(customer, pm)
                first = await _outcome(provider, request)
                assert isinstance(first, OutcomeUnknownError), first
                [intent] = [
                    pi for pi in losing.app.state.intents.values() if pi["customer"] == customer
                ]
                losing.app.lost_answer_rate = 0.0
                try:
                    assert await provider.charge(request) == Charged(intent["id"], replayed=True)
                finally:
                    losing.app.lost_answer_rate = 1.0
            assert losing.app.stats.lost_answers == 4
        finally:
            await provider.aclose()


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_connection_refused_is_not_sent(fake: RunningFake, client: str) -> None:
    provider = _provider(fake, client, api_base=f"http://127.0.0.1:{_closed_port()}")
    try:
        result = await _outcome(provider, _request("cus_x", "pm_card_visa"))
        assert isinstance(result, NotSentError), result
    finally:
        await provider.aclose()


async def test_a_read_timeout_is_unknown(client: str) -> None:
    with running_fake_stripe(latency_ms=1500) as slow:
        provider = _provider(slow, client, read_timeout=0.3, timeout=0.6)
        try:
            result = await _outcome(provider, _request(*_customer(slow)))
            assert isinstance(result, OutcomeUnknownError), result
        finally:
            await provider.aclose()


# -- refusals before a call ---------------------------------------------------------------


def test_missing_references_are_payment_method_missing(fake: RunningFake) -> None:
    provider = _provider(fake, "httpx")
    for customer, pm in (("", "pm_1"), (None, "pm_1"), ("cus_1", None), (None, None)):
        refusal = provider.refusal(_request(customer, pm))
        assert refusal is not None
        assert refusal.reason == "payment_method_missing"
        assert "customer 42" in refusal.detail
    assert provider.refusal(_request("cus_1", "pm_1")) is None


@pytest.mark.parametrize(
    ("value", "currency", "refused"),
    [
        ("0.50", Currency.USD, False),
        ("0.49", Currency.USD, True),
        ("0.50", Currency.EUR, False),
        ("0.49", Currency.EUR, True),
        ("0.30", Currency.GBP, False),
        ("0.29", Currency.GBP, True),
        ("2.50", Currency.DKK, False),
        ("2.49", Currency.DKK, True),
        ("3.00", Currency.SEK, False),
        ("2.99", Currency.SEK, True),
        ("999999.99", Currency.EUR, False),
        ("1000000.00", Currency.EUR, True),
    ],
)
def test_amounts_stripe_refuses_are_refused_before_a_call(
    fake: RunningFake, value: str, currency: Currency, refused: bool
) -> None:
    refusal = _provider(fake, "httpx").refusal(_request("cus_1", "pm_1", value, currency))
    if refused:
        assert refusal is not None
        assert refusal.reason == "amount_not_chargeable", refusal
        assert currency.value in refusal.detail
    else:
        assert refusal is None


async def test_charge_never_sends_what_it_refuses(
    fake: RunningFake, stripe_provider: StripePaymentProvider
) -> None:
    before = len(fake.app.state.intents)
    for request in (_request(None, None), _request("cus_1", "pm_1", "0.10")):
        assert isinstance(await _outcome(stripe_provider, request), RequestRejectedError)
    assert len(fake.app.state.intents) == before


def test_the_adapter_declares_stripes_key_retention(fake: RunningFake) -> None:
    provider = _provider(fake, "httpx")
    assert provider.deduplicates_keys is True
    assert provider.key_retention == STRIPE_KEY_RETENTION == timedelta(hours=24)


# -- find_charge ----------------------------------------------------------------------------


def _lookup(request: ChargeRequest, since: datetime | None = None) -> ChargeLookup:
    return ChargeLookup(
        invoice_id=request.invoice_id,
        customer_id=request.customer_id,
        amount=request.amount,
        idempotency_key=request.idempotency_key,
        attempt=request.attempt,
        attempt_open_since=since or datetime.now(UTC) - timedelta(minutes=1),
        provider_customer_id=request.provider_customer_id,
        provider_payment_method_id=request.provider_payment_method_id,
    )


async def test_find_charge_finds_a_charge_made_among_many_pages(
    fake: RunningFake, stripe_provider: StripePaymentProvider
) -> None:
    customer, pm = _customer(fake)
    request = _request(customer, pm)
    charged = await stripe_provider.charge(request)
    assert isinstance(charged, Charged)
    for _ in range(120):  # later PaymentIntents of the customer: more than one page
        pid = f"pi_later{secrets.token_hex(8)}"
        fake.app.state.intents[pid] = {
            **fake.app.state.intents[charged.charge_id],
            "id": pid,
            "metadata": {"antaeus_key": "other"},
        }
    found = await stripe_provider.find_charge(_lookup(request))
    assert found == ChargeFound(charged.charge_id, found.detail)
    assert customer in found.detail
    assert request.idempotency_key in found.detail
    assert "121 PaymentIntents" in found.detail


async def test_find_charge_nothing_charged_when_none_or_declined(
    fake: RunningFake, stripe_provider: StripePaymentProvider
) -> None:
    customer, pm = _customer(fake)
    never_sent = _request(customer, pm)
    result = await stripe_provider.find_charge(_lookup(never_sent))
    assert isinstance(result, NothingCharged), result
    assert "none with the key" in result.detail
    declining = _request(*_customer(fake, "pm_card_chargeDeclined"))
    assert isinstance(await _outcome(stripe_provider, declining), CardDeclinedError)
    result = await stripe_provider.find_charge(_lookup(declining))
    assert isinstance(result, NothingCharged), result
    assert "requires_payment_method" in result.detail


async def test_find_charge_only_looks_since_the_attempt_opened(
    fake: RunningFake, stripe_provider: StripePaymentProvider
) -> None:
    customer, pm = _customer(fake)
    request = _request(customer, pm)
    charged = await stripe_provider.charge(request)
    assert isinstance(charged, Charged)
    later = datetime.now(UTC) + timedelta(hours=1)
    assert isinstance(await stripe_provider.find_charge(_lookup(request, later)), NothingCharged)
    # within the clock-skew margin it is still found
    near = datetime.now(UTC) + timedelta(minutes=2)
    assert isinstance(await stripe_provider.find_charge(_lookup(request, near)), ChargeFound)


@pytest.mark.parametrize("status", ["processing", "requires_capture", "requires_action"])
async def test_find_charge_cannot_tell_an_unfinished_payment_intent(
    fake: RunningFake, stripe_provider: StripePaymentProvider, status: str
) -> None:
    customer, pm = _customer(fake)
    request = _request(customer, pm)
    charged = await stripe_provider.charge(request)
    assert isinstance(charged, Charged)
    fake.app.state.intents[charged.charge_id]["status"] = status
    result = await stripe_provider.find_charge(_lookup(request))
    assert isinstance(result, CannotTell), result
    assert status in result.detail


async def test_find_charge_cannot_tell_without_a_customer_or_on_an_error(
    fake: RunningFake, client: str
) -> None:
    provider = _provider(fake, client)
    try:
        result = await provider.find_charge(_lookup(_request(None, None)))
        assert isinstance(result, CannotTell)
        assert "providerCustomerId" in result.detail
    finally:
        await provider.aclose()
    for broken in (
        _provider(fake, client, api_key="sk_test_wrong_0123456789abcdefghij"),
        _provider(fake, client, api_base=f"http://127.0.0.1:{_closed_port()}"),
    ):
        try:
            result = await broken.find_charge(_lookup(_request("cus_1", "pm_1")))
            assert isinstance(result, CannotTell), result
            assert "cus_1" in result.detail
            assert "sk_test_wrong_0123456789abcdefghij" not in result.detail
        finally:
            await broken.aclose()
    with running_fake_stripe(server_error_rate=1.0) as failing:
        provider = _provider(failing, client)
        try:
            result = await provider.find_charge(_lookup(_request("cus_1", "pm_1")))
            assert isinstance(result, CannotTell)
            assert "api_error" in result.detail, result
        finally:
            await provider.aclose()


# -- the key -------------------------------------------------------------------------------


def test_mask_key_shows_kind_mode_and_at_most_the_last_four() -> None:
    key = "sk_live_51Habcdefghijklmnopqrstuvwxyz0123"
    assert mask_key(key) == "sk_live_****0123"
    assert mask_key("rk_test_short") == "rk_test_****"
    assert mask_key("nonsense") == "****"


def test_settings_repr_never_shows_the_key(fake: RunningFake) -> None:
    settings = StripeProviderSettings(api_key="sk_test_secret_0123456789abcdefghij")
    assert "secret_0123456789" not in repr(settings)
    with pytest.raises(ValueError, match="publishable") as caught:
        StripePaymentProvider(StripeProviderSettings(api_key="pk_test_0123456789abcdefghijkl"))
    assert "0123456789abcdefghijkl" not in str(caught.value)


async def test_under_faults_every_key_charges_exactly_once(client: str) -> None:
    """Repeating every unknown outcome with its key ends charged once per key, never twice."""
    faults = {"server_error_rate": 0.2, "lost_answer_rate": 0.2, "rate_limit_rate": 0.1}
    with running_fake_stripe(seed=11, **faults) as chaotic:
        provider = _provider(chaotic, client)
        try:
            requests = [_request(*_customer(chaotic), invoice=i) for i in range(1, 31)]
            charged: dict[str, str] = {}
            sends = 0
            for request in requests:
                for _ in range(50):
                    sends += 1
                    result = await _outcome(provider, request)
                    if isinstance(result, Charged):
                        charged[request.idempotency_key] = result.charge_id
                        break
                    assert isinstance(result, OutcomeUnknownError | RateLimitedError), result
            assert len(charged) == len(requests)
            assert sends > len(requests)  # the faults happened
            succeeded = [
                pi for pi in chaotic.app.state.intents.values() if pi["status"] == "succeeded"
            ]
            assert sorted(pi["metadata"]["antaeus_key"] for pi in succeeded) == sorted(charged)
            assert {pi["id"] for pi in succeeded} == set(charged.values())
        finally:
            await provider.aclose()


def _pi(pid: str, status: str, amount: int = 1000, currency: str = "eur") -> dict[str, Any]:
    return {"id": pid, "status": status, "amount": amount, "currency": currency}


@pytest.mark.parametrize(
    ("matches", "verdict"),
    [
        ([], NothingCharged),
        ([_pi("pi_1", "succeeded")], ChargeFound),
        ([_pi("pi_1", "succeeded"), _pi("pi_2", "requires_payment_method")], ChargeFound),
        ([_pi("pi_1", "requires_payment_method"), _pi("pi_2", "canceled")], NothingCharged),
        ([_pi("pi_1", "succeeded"), _pi("pi_2", "succeeded")], CannotTell),  # twice: a person
        ([_pi("pi_1", "succeeded"), _pi("pi_2", "processing")], CannotTell),
        ([_pi("pi_1", "processing")], CannotTell),
        ([_pi("pi_1", "requires_capture")], CannotTell),
        ([_pi("pi_1", "succeeded", amount=999)], CannotTell),  # not what was asked for
        ([_pi("pi_1", "succeeded", currency="usd")], CannotTell),
    ],
)
def test_what_the_payment_intents_with_the_key_say(
    matches: list[dict[str, Any]], verdict: type
) -> None:
    from antaeus.payments.stripe import _verdict

    result = _verdict("asked", 3, matches, (1000, "eur"))
    assert isinstance(result, verdict), result
    assert result.detail.startswith("asked: 3 PaymentIntents")
    if isinstance(result, ChargeFound):
        assert result.charge_id == "pi_1"
