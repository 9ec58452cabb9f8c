"""Protocol 1.1, `GET /v1/charges?idempotencyKey=K`: the simulator answers it, the HTTP
adapter's `find_charge` reads it (both transports), and a 1.0 provider's answers are
never read as "nothing charged"."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from antaeus.domain.money import Currency, Money
from antaeus.payments.http import (
    HttpPaymentProvider,
    HttpProviderSettings,
    RawAnswer,
    interpret_lookup,
)
from antaeus.payments.provider import CannotTell, ChargeFound, ChargeLookup, NothingCharged
from tests.payments.simulator import free_port, running_simulator

EUR = {"value": "10.00", "currency": "EUR"}
AMOUNT = Money.of("10.00", Currency.EUR)


def key() -> str:
    return f"test-{uuid.uuid4()}"


def lookup(idempotency_key: str, invoice_id: int = 1, amount: Money = AMOUNT) -> ChargeLookup:
    return ChargeLookup(
        invoice_id=invoice_id,
        customer_id=1,
        amount=amount,
        idempotency_key=idempotency_key,
        attempt=1,
        attempt_open_since=datetime(2026, 12, 1, tzinfo=UTC),
    )


def post(base_url: str, idempotency_key: str) -> httpx.Response:
    body = json.dumps({"invoiceId": 1, "customerId": 1, "amount": EUR})
    headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key}
    try:
        return httpx.post(f"{base_url}/v1/charges", content=body, headers=headers, timeout=10)
    except httpx.HTTPError:  # a dropped connection: the answer was lost
        return httpx.Response(599)


def find(base_url: str, client: str, what: ChargeLookup) -> Any:
    async def main() -> Any:
        provider = HttpPaymentProvider(HttpProviderSettings(base_url, client=client))  # type: ignore[arg-type]
        try:
            return await provider.find_charge(what)
        finally:
            await provider.aclose()

    return asyncio.run(main())


@pytest.fixture(scope="module")
def plain() -> Iterator[str]:
    with running_simulator() as url:
        yield url


@pytest.fixture(scope="module")
def down() -> Iterator[str]:
    """Every charge is received and answered 503 before anything happens."""
    with running_simulator("--network-error-rate", "1") as url:
        yield url


@pytest.fixture(scope="module")
def lost() -> Iterator[str]:
    """Every charge is made and its answer lost (500 or a dropped connection)."""
    with running_simulator("--ambiguous-rate", "1") as url:
        yield url


CLIENTS = ["aiohttp", "httpx"]


@pytest.mark.parametrize("client", CLIENTS)
def test_a_charge_made_is_found_with_its_charge_id(plain: str, client: str) -> None:
    k = key()
    charged = post(plain, k)
    assert charged.status_code == 200
    answer = httpx.get(f"{plain}/v1/charges", params={"idempotencyKey": k})
    assert answer.status_code == 200
    assert answer.json() == {
        "idempotencyKey": k,
        "status": "charged",
        "chargeId": charged.json()["chargeId"],
        "invoiceId": 1,
        "amount": EUR,
    }
    found = find(plain, client, lookup(k))
    assert isinstance(found, ChargeFound)
    assert found.charge_id == charged.json()["chargeId"]
    assert k in found.detail


@pytest.mark.parametrize("client", CLIENTS)
def test_the_charge_of_an_answer_lost_is_found(lost: str, client: str) -> None:
    k = key()
    assert post(lost, k).status_code != 200
    found = find(lost, client, lookup(k))
    assert isinstance(found, ChargeFound)
    ledger = httpx.get(f"{lost}/admin/ledger").json()["charges"]
    assert [c["chargeId"] for c in ledger if c["idempotencyKey"] == k] == [found.charge_id]


@pytest.mark.parametrize("client", CLIENTS)
def test_a_key_received_and_never_processed_is_nothing_charged(down: str, client: str) -> None:
    k = key()
    assert post(down, k).status_code == 503
    answer = httpx.get(f"{down}/v1/charges", params={"idempotencyKey": k})
    assert (answer.status_code, answer.json()["error"]) == (404, "no_charge")
    result = find(down, client, lookup(k))
    assert isinstance(result, NothingCharged)
    assert "no_charge" in result.detail


@pytest.mark.parametrize("client", CLIENTS)
def test_an_unknown_key_cannot_be_told(plain: str, client: str) -> None:
    k = key()
    answer = httpx.get(f"{plain}/v1/charges", params={"idempotencyKey": k})
    assert (answer.status_code, answer.json()["error"]) == (404, "unknown_key")
    result = find(plain, client, lookup(k))
    assert isinstance(result, CannotTell)
    assert "unknown_key" in result.detail


def test_a_charge_of_another_invoice_or_amount_is_not_taken(plain: str) -> None:
    k = key()
    assert post(plain, k).status_code == 200
    assert isinstance(find(plain, "aiohttp", lookup(k, invoice_id=2)), CannotTell)
    other = Money.of("10.01", Currency.EUR)
    assert isinstance(find(plain, "httpx", lookup(k, amount=other)), CannotTell)


def test_lookup_needs_one_key_and_the_api_key() -> None:
    with running_simulator("--api-key", "sk_test") as url:
        assert httpx.get(f"{url}/v1/charges").status_code == 401
        auth = {"Authorization": "Bearer sk_test"}
        answer = httpx.get(f"{url}/v1/charges", headers=auth)
        assert (answer.status_code, answer.json()["field"]) == (400, "idempotencyKey")
        two = httpx.get(f"{url}/v1/charges?idempotencyKey=a&idempotencyKey=b", headers=auth)
        assert two.status_code == 400
        wrong = HttpPaymentProvider(HttpProviderSettings(url, api_key="sk_wrong"))
        result = asyncio.run(_find_and_close(wrong, lookup(key())))
        assert isinstance(result, CannotTell)
        assert "401" in result.detail


async def _find_and_close(provider: HttpPaymentProvider, what: ChargeLookup) -> Any:
    try:
        return await provider.find_charge(what)
    finally:
        await provider.aclose()


@pytest.mark.parametrize("client", CLIENTS)
def test_no_provider_listening_cannot_tell(client: str) -> None:
    result = find(f"http://127.0.0.1:{free_port()}", client, lookup(key()))
    assert isinstance(result, CannotTell)
    assert "no answer" in result.detail


def raw(status: int, body: object) -> RawAnswer:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return RawAnswer(status, {}, data)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (raw(200, {"status": "charged", "chargeId": "ch_1"}), ChargeFound),
        (raw(200, {"status": "declined", "reason": "insufficient_funds"}), NothingCharged),
        (raw(404, {"error": "no_charge"}), NothingCharged),
        (raw(404, {"error": "unknown_key"}), CannotTell),
        # what a 1.0 provider may answer: never "nothing charged"
        (raw(405, {"error": "method_not_allowed"}), CannotTell),
        (raw(404, {"error": "not_found"}), CannotTell),
        (raw(404, {"error": "customer_not_found"}), CannotTell),
        (raw(404, b"<html>Not Found</html>"), CannotTell),
        (raw(200, {"status": "ok"}), CannotTell),
        # broken answers
        (raw(200, {"status": "charged", "chargeId": ""}), CannotTell),
        (raw(200, {"status": "charged", "chargeId": "ch\n1"}), CannotTell),
        (raw(200, {"status": "charged", "chargeId": "ch_1", "error": "x"}), CannotTell),
        (raw(200, {"status": "charged", "chargeId": "ch_1", "invoiceId": True}), CannotTell),
        (
            raw(
                200,
                {
                    "status": "charged",
                    "chargeId": "ch_1",
                    "amount": {"value": "9.99", "currency": "EUR"},
                },
            ),
            CannotTell,
        ),
        (
            raw(200, {"status": "charged", "chargeId": "ch_1", "amount": EUR, "invoiceId": 1}),
            ChargeFound,
        ),
        (raw(409, {"error": "idempotency_key_in_use"}), CannotTell),
        (raw(429, {"error": "rate_limited"}), CannotTell),
        (raw(500, {"error": "internal_error"}), CannotTell),
    ],
)
def test_only_the_answers_of_protocol_1_1_settle_anything(
    answer: RawAnswer, expected: type
) -> None:
    result = interpret_lookup(answer, lookup("k"), "asked")
    assert type(result) is expected
    assert result.detail.startswith("asked")
