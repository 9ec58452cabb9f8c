"""`antaeus provider serve` over real HTTP: the protocol, its errors, and every fault flag.

Each configuration is one server process for the module (module-scoped
fixtures); tests use their own idempotency keys and customers so they can share it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from antaeus.simulators.simulator_server import (
    HOSTILE_CHARGE_IDS,
    HOSTILE_RETRY_AFTER,
    spoil_charge_id,
)
from tests.payments.simulator import clean_env, running_simulator

EUR = {"value": "10.00", "currency": "EUR"}
API_KEY = "sk_test_simulator"


def key() -> str:
    return f"test-{uuid.uuid4()}"


def body(invoice_id: int = 1, customer_id: int = 1, amount: dict[str, Any] | None = None) -> str:
    return json.dumps({"invoiceId": invoice_id, "customerId": customer_id, "amount": amount or EUR})


def charge(
    client: httpx.Client,
    content: str | bytes,
    idempotency_key: str | None,
    headers: dict[str, str | bytes] | None = None,
) -> httpx.Response:
    sent: dict[str, str | bytes] = {"Content-Type": "application/json", **(headers or {})}
    if idempotency_key is not None:
        sent["Idempotency-Key"] = idempotency_key
    return client.post("/v1/charges", content=content, headers=sent)


def ledger(client: httpx.Client) -> list[dict[str, Any]]:
    answer = client.get("/admin/ledger")
    assert answer.status_code == 200, answer.text
    charges: list[dict[str, Any]] = answer.json()["charges"]
    return charges


def ledger_of(client: httpx.Client, idempotency_key: str) -> list[dict[str, Any]]:
    return [c for c in ledger(client) if c["idempotencyKey"] == idempotency_key]


def client_for(base_url: str, **kwargs: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10, **kwargs) as client:
        yield client


# --- servers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain() -> Iterator[httpx.Client]:
    with running_simulator() as url:
        yield from client_for(url)


ACCOUNTS = [
    {"customerId": 1, "currency": "EUR", "balance": "100.00"},
    {"customerId": 2, "currency": "USD", "balance": 50},
    {"customerId": 3, "currency": "DKK", "balance": "0"},
]


@pytest.fixture(scope="module")
def with_accounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    path = tmp_path_factory.mktemp("accounts") / "accounts.json"
    path.write_text(json.dumps(ACCOUNTS))
    with running_simulator("--accounts", str(path)) as url:
        yield from client_for(url)


@pytest.fixture(scope="module")
def ambiguous() -> Iterator[httpx.Client]:
    with running_simulator("--ambiguous-rate", "1") as url:
        yield from client_for(url)


@pytest.fixture(scope="module")
def slow() -> Iterator[str]:
    """200 ms a charge, and keys forgotten after one second."""
    with running_simulator("--latency-ms", "200", "--key-retention", "1") as url:
        yield url


# --- the protocol ----------------------------------------------------------------------


def test_health(plain: httpx.Client) -> None:
    answer = plain.get("/v1/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


def test_charge_replay_and_ledger(plain: httpx.Client) -> None:
    k = key()
    content = body(861, 87, {"value": "89.52", "currency": "USD"})
    first = charge(plain, content, k)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "application/json"
    assert "idempotent-replayed" not in first.headers
    charge_id = first.json()["chargeId"]
    assert first.json() == {"chargeId": charge_id, "status": "charged"}
    assert charge_id.startswith("ch_")

    again = charge(plain, content, k)
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"

    assert ledger_of(plain, k) == [
        {
            "chargeId": charge_id,
            "idempotencyKey": k,
            "invoiceId": 861,
            "customerId": 87,
            "value": "89.52",
            "currency": "USD",
        }
    ]


def test_same_key_other_body_is_refused(plain: httpx.Client) -> None:
    k = key()
    assert charge(plain, body(1, 1), k).status_code == 200
    for other in (body(2, 1), body(1, 2), body(1, 1, {"value": "10.01", "currency": "EUR"})):
        answer = charge(plain, other, k)
        assert answer.status_code == 422, answer.text
        assert answer.json() == {"error": "idempotency_key_reused"}
    assert len(ledger_of(plain, k)) == 1


@pytest.mark.parametrize(
    ("idempotency_key", "content", "field"),
    [
        (None, body(), "Idempotency-Key"),
        ("", body(), "Idempotency-Key"),
        ("k" * 256, body(), "Idempotency-Key"),
        ("clé-é", body(), "Idempotency-Key"),
        ("tab\there", body(), "Idempotency-Key"),
        (
            "ok",
            json.dumps(
                {"invoiceId": 1, "customerId": 1, "amount": {"value": 10.5, "currency": "EUR"}}
            ),
            "amount.value",
        ),
        (
            "ok",
            json.dumps(
                {"invoiceId": 1, "customerId": 1, "amount": {"value": 10, "currency": "EUR"}}
            ),
            "amount.value",
        ),
        ("ok", body(amount={"value": "10.001", "currency": "EUR"}), "amount.value"),
        ("ok", body(amount={"value": "10.0", "currency": "EUR"}), "amount.value"),
        ("ok", body(amount={"value": "10", "currency": "EUR"}), "amount.value"),
        ("ok", body(amount={"value": "-10.00", "currency": "EUR"}), "amount.value"),
        ("ok", body(amount={"value": "1e3", "currency": "EUR"}), "amount.value"),
        ("ok", body(amount={"value": "NaN", "currency": "EUR"}), "amount.value"),
        ("ok", body(amount={"value": "10.00", "currency": "XBT"}), "amount.currency"),
        ("ok", body(amount={"value": "10.00", "currency": "eur"}), "amount.currency"),
        ("ok", body(amount={"value": "10.00"}), "amount.currency"),
        ("ok", body(amount={"currency": "EUR"}), "amount.value"),
        ("ok", json.dumps({"invoiceId": 1, "customerId": 1}), "amount"),
        ("ok", json.dumps({"invoiceId": 1, "customerId": 1, "amount": "10.00 EUR"}), "amount"),
        ("ok", json.dumps({"customerId": 1, "amount": EUR}), "invoiceId"),
        ("ok", body(invoice_id=-5), "invoiceId"),
        ("ok", body(invoice_id=0), "invoiceId"),
        ("ok", body(customer_id=-1), "customerId"),
        ("ok", body(customer_id=2**63), "customerId"),
        ("ok", json.dumps({"invoiceId": "1", "customerId": 1, "amount": EUR}), "invoiceId"),
        ("ok", json.dumps({"invoiceId": True, "customerId": 1, "amount": EUR}), "invoiceId"),
        ("ok", json.dumps({"invoiceId": 1.0, "customerId": 1, "amount": EUR}), "invoiceId"),
        ("ok", "[1, 2]", "body"),
        ("ok", "42", "body"),
        ("ok", "<html><body>hello</body></html>", "body"),
        ("ok", "", "body"),
        ("ok", b"\xff\xfe{", "body"),
        ("ok", '{"invoiceId": 1, "customerId": 1, "amount": {"value": NaN}}', "body"),
        ("ok", "[" * 20_000 + "]" * 20_000, "body"),
    ],
)
def test_bad_requests_are_400_naming_the_problem(
    plain: httpx.Client, idempotency_key: str | None, content: str | bytes, field: str
) -> None:
    k = None if idempotency_key is None else idempotency_key.replace("ok", key())
    headers: dict[str, str | bytes] = {}
    if k is not None and not k.isascii():
        headers["Idempotency-Key"] = k.encode("utf-8")  # raw UTF-8 bytes
        k = None
    answer = charge(plain, content, k, headers)
    assert answer.status_code == 400, answer.text
    doc = answer.json()
    assert doc["error"] == "invalid_request"
    assert doc["field"] == field
    assert doc["message"]
    if k is not None and k.startswith("test-"):
        assert ledger_of(plain, k) == []


def test_oversized_charge_body_is_400(plain: httpx.Client) -> None:
    padding = "x" * 70_000
    content = json.dumps({"invoiceId": 1, "customerId": 1, "amount": EUR, "padding": padding})
    answer = charge(plain, content, key())
    assert answer.status_code == 400
    assert answer.json()["field"] == "body"


def test_wrong_method_and_unknown_route_are_json(plain: httpx.Client) -> None:
    answer = plain.delete("/v1/charges")
    assert answer.status_code == 405
    assert answer.json()["error"] == "method_not_allowed"
    answer = plain.get("/v2/charges")
    assert answer.status_code == 404
    assert answer.json()["error"] == "not_found"


# --- with accounts: the account decides -------------------------------------------------


@pytest.mark.parametrize(
    ("customer_id", "amount", "status", "error"),
    [
        (1, {"value": "100.01", "currency": "EUR"}, 402, "insufficient_funds"),
        (3, {"value": "0.01", "currency": "DKK"}, 402, "insufficient_funds"),
        (99, {"value": "1.00", "currency": "EUR"}, 404, "customer_not_found"),
        (1, {"value": "1.00", "currency": "USD"}, 409, "currency_mismatch"),
    ],
)
def test_definite_refusals_and_their_replays(
    with_accounts: httpx.Client, customer_id: int, amount: dict[str, str], status: int, error: str
) -> None:
    k = key()
    content = body(7, customer_id, amount)
    first = charge(with_accounts, content, k)
    assert first.status_code == status, first.text
    assert first.json() == {"error": error}
    assert "idempotent-replayed" not in first.headers
    again = charge(with_accounts, content, k)
    assert again.status_code == status
    assert again.json() == {"error": error}
    assert again.headers["idempotent-replayed"] == "true"
    assert ledger_of(with_accounts, k) == []


def test_accounts_from_file_charge_their_balance(with_accounts: httpx.Client) -> None:
    k = key()
    answer = charge(with_accounts, body(8, 2, {"value": "50.00", "currency": "USD"}), k)
    assert answer.status_code == 200, answer.text
    # the balance is spent: the next charge of that customer is declined
    answer = charge(with_accounts, body(9, 2, {"value": "0.01", "currency": "USD"}), key())
    assert answer.status_code == 402
    assert [c["value"] for c in ledger_of(with_accounts, k)] == ["50.00"]


def test_admin_accounts_upsert(with_accounts: httpx.Client) -> None:
    accounts = [
        {"customerId": 500, "currency": "GBP", "balance": "5.5"},
        {"customerId": 501, "currency": "SEK", "balance": 12.25},
    ]
    answer = with_accounts.post("/admin/accounts", json=accounts)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accounts": 2}
    ok = charge(with_accounts, body(1, 500, {"value": "5.50", "currency": "GBP"}), key())
    assert ok.status_code == 200, ok.text
    low = charge(with_accounts, body(1, 501, {"value": "12.26", "currency": "SEK"}), key())
    assert low.status_code == 402


def test_one_account_is_created_changed_and_funded_and_decides(with_accounts: httpx.Client) -> None:
    cid = 700
    assert with_accounts.get(f"/admin/accounts/{cid}").status_code == 404
    sek = {"value": "20.00", "currency": "SEK"}
    k = key()
    assert charge(with_accounts, body(70, cid, sek), k).status_code == 404  # no account
    assert charge(with_accounts, body(70, cid, sek), k).status_code == 404  # replayed
    no_fund = with_accounts.post(f"/admin/accounts/{cid}/fund", json={"amount": "1.00"})
    assert (no_fund.status_code, no_fund.json()["error"]) == (404, "no_account")

    created = with_accounts.post(f"/admin/accounts/{cid}", json={"currency": "DKK", "balance": 5})
    assert created.status_code == 201, created.text
    assert created.json() == {"customerId": cid, "currency": "DKK", "balance": "5.00"}
    assert charge(with_accounts, body(70, cid, sek), key()).status_code == 409  # DKK, not SEK
    changed = with_accounts.post(f"/admin/accounts/{cid}", json={"currency": "SEK"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["balance"] == "5.00"
    assert charge(with_accounts, body(70, cid, sek), key()).status_code == 402  # 5 < 20
    funded = with_accounts.post(f"/admin/accounts/{cid}/fund", json={"amount": "15.00"})
    assert funded.json() == {"customerId": cid, "currency": "SEK", "balance": "20.00"}
    paid = key()
    assert charge(with_accounts, body(70, cid, sek), paid).status_code == 200
    assert with_accounts.get(f"/admin/accounts/{cid}").json()["balance"] == "0.00"
    assert [c["value"] for c in ledger_of(with_accounts, paid)] == ["20.00"]
    # the other loaded accounts are unchanged, and a customer never loaded still has none
    assert with_accounts.get("/admin/accounts/1").json()["currency"] == "EUR"
    assert charge(with_accounts, body(71, 701, sek), key()).status_code == 404


@pytest.mark.parametrize(
    ("path", "content", "status", "field"),
    [
        ("/admin/accounts/0", '{"currency": "EUR", "balance": "1"}', 422, "customerId"),
        ("/admin/accounts/x", '{"currency": "EUR", "balance": "1"}', 422, "customerId"),
        ("/admin/accounts/800", "not json", 400, "body"),
        ("/admin/accounts/800", "[]", 422, "body"),
        ("/admin/accounts/800", '{"balance": "1.00"}', 422, "currency"),
        ("/admin/accounts/800", '{"currency": "EUR"}', 422, "balance"),
        ("/admin/accounts/800", '{"currency": "XXX", "balance": "1"}', 422, "currency"),
        ("/admin/accounts/800", '{"currency": "EUR", "balance": "-1"}', 422, "balance"),
        ("/admin/accounts/800", '{"currency": "EUR", "balance": 1.001}', 422, "balance"),
        ("/admin/accounts/1/fund", "{}", 422, "amount"),
        ("/admin/accounts/1/fund", '{"amount": "0"}', 422, "amount"),
        ("/admin/accounts/1/fund", '{"amount": "-5.00"}', 422, "amount"),
        ("/admin/accounts/1/fund", '{"amount": 0.001}', 422, "amount"),
    ],
)
def test_one_account_refuses_bad_input(
    with_accounts: httpx.Client, path: str, content: str, status: int, field: str
) -> None:
    before = with_accounts.get("/admin/accounts/1").json()
    answer = with_accounts.post(path, content=content, headers={"Content-Type": "application/json"})
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field
    assert with_accounts.get("/admin/accounts/800").status_code == 404
    assert with_accounts.get("/admin/accounts/1").json() == before


def test_failure_rate_gives_stable_customers_and_lost_answers_refuse_repeats() -> None:
    def status(client: httpx.Client, cid: int, k: str) -> int | str:
        try:
            answer = charge(client, body(cid, cid, EUR), k).status_code
        except httpx.TransportError:
            return "lost"  # cut off after the status line
        return "lost" if answer == 500 else answer

    with (
        running_simulator("--failure-rate", "1", "--seed", "4") as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        kinds = {cid: status(client, cid, key()) for cid in range(1, 61)}
        assert kinds == {cid: status(client, cid, key()) for cid in range(1, 61)}  # new keys
        assert {200, 402, 404, 409} <= set(kinds.values()), kinds
        for cid in [c for c, s in kinds.items() if s == 409]:
            assert client.get(f"/admin/accounts/{cid}").json()["currency"] != "EUR"
        lost = [c for c, s in kinds.items() if s == "lost"]
        assert lost, kinds
        for cid in lost:  # charged, answer lost: the repeat of the key is refused
            k = key()
            assert status(client, cid, k) == "lost"
            repeat = charge(client, body(cid, cid, EUR), k)
            assert (repeat.status_code, repeat.json()["error"]) == (400, "invalid_request")
            assert len(ledger_of(client, k)) == 1
        assert client.get("/admin/stats").json()["refusedRepeats"] == len(lost)


@pytest.mark.parametrize(
    ("content", "status", "field"),
    [
        ("not json", 400, "body"),
        ('{"customerId": 600, "currency": "EUR", "balance": "1.00"}', 422, "body"),
        ("[42]", 422, "[0]"),
        ('[{"currency": "EUR", "balance": "1.00"}]', 422, "[0].customerId"),
        ('[{"customerId": "600", "currency": "EUR", "balance": "1.00"}]', 422, "[0].customerId"),
        ('[{"customerId": true, "currency": "EUR", "balance": "1.00"}]', 422, "[0].customerId"),
        ('[{"customerId": 0, "currency": "EUR", "balance": "1.00"}]', 422, "[0].customerId"),
        ('[{"customerId": 600, "balance": "1.00"}]', 422, "[0].currency"),
        ('[{"customerId": 600, "currency": "XXX", "balance": "1.00"}]', 422, "[0].currency"),
        ('[{"customerId": 600, "currency": "EUR"}]', 422, "[0].balance"),
        ('[{"customerId": 600, "currency": "EUR", "balance": "1.001"}]', 422, "[0].balance"),
        ('[{"customerId": 600, "currency": "EUR", "balance": 1.001}]', 422, "[0].balance"),
        ('[{"customerId": 600, "currency": "EUR", "balance": "-1.00"}]', 422, "[0].balance"),
        ('[{"customerId": 600, "currency": "EUR", "balance": "abc"}]', 422, "[0].balance"),
        ('[{"customerId": 600, "currency": "EUR", "balance": null}]', 422, "[0].balance"),
        ('[{"customerId": 600, "currency": "EUR", "balance": 1e400}]', 422, "[0].balance"),
        (
            '[{"customerId": 600, "currency": "EUR", "balance": "1.00"},'
            ' {"customerId": 601, "currency": "EUR", "balance": "1.001"}]',
            422,
            "[1].balance",
        ),
        (
            '[{"customerId": 600, "currency": "EUR", "balance": "1.00"},'
            ' {"customerId": 600, "currency": "EUR", "balance": "2.00"}]',
            422,
            "[1].customerId",
        ),
    ],
)
def test_admin_accounts_refuses_bad_input_and_writes_nothing(
    with_accounts: httpx.Client, content: str, status: int, field: str
) -> None:
    answer = with_accounts.post(
        "/admin/accounts", content=content, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == status, answer.text
    doc = answer.json()
    assert doc["field"] == field
    assert doc["error"] in ("invalid_json", "validation_error")
    assert doc["message"]
    # customer 600 (valid in some of these lists) was not created
    refused = charge(with_accounts, body(1, 600, {"value": "1.00", "currency": "EUR"}), key())
    assert refused.status_code == 404


def test_admin_accounts_body_limit(with_accounts: httpx.Client) -> None:
    """A body announced larger than the limit is refused before it is read."""
    url = httpx.URL(str(with_accounts.base_url))
    assert url.port is not None
    with socket.create_connection((url.host, url.port), timeout=10) as sock:
        sock.sendall(
            b"POST /admin/accounts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n[]" % (64 * 1024 * 1024)
        )
        answer = b""
        while b"}" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, content = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer
    assert json.loads(content)["error"] == "body_too_large"


# --- faults ----------------------------------------------------------------------------


def test_api_key_from_the_environment() -> None:
    with (
        running_simulator(env=clean_env(ANTAEUS_PROVIDER_API_KEY=API_KEY)) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        assert client.get("/v1/health").status_code == 200
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": API_KEY}):
            answer = charge(client, body(), key(), headers)
            assert answer.status_code == 401
            assert answer.json() == {"error": "unauthorized"}
            for path in ("/admin/ledger", "/admin/stats"):
                assert client.get(path, headers=headers).status_code == 401
            answer = client.post("/admin/accounts", json=[], headers=headers)
            assert answer.status_code == 401
        good = {"Authorization": f"Bearer {API_KEY}"}
        assert charge(client, body(), key(), good).status_code == 200
        assert len(client.get("/admin/ledger", headers=good).json()["charges"]) == 1


def test_rate_limit() -> None:
    with running_simulator("--rate-limit", "5", "--api-key", API_KEY) as url:
        good = {"Authorization": f"Bearer {API_KEY}"}
        with httpx.Client(base_url=url, timeout=10, headers=good) as client:
            keys = [key() for _ in range(20)]
            answers = [(k, charge(client, body(i + 1), k)) for i, k in enumerate(keys)]
            statuses = [a.status_code for _, a in answers]
            assert statuses[:5] == [200] * 5
            limited = [(k, a) for k, a in answers if a.status_code == 429]
            assert len(limited) >= 10, statuses
            assert set(statuses) == {200, 429}
            k, first = limited[0]
            assert first.json() == {"error": "rate_limited"}
            retry_after = int(first.headers["retry-after"])
            assert retry_after >= 1
            # nothing moved for a 429, and the key is not remembered: it charges later
            assert len(ledger(client)) == statuses.count(200)
            time.sleep(retry_after)
            assert charge(client, body(keys.index(k) + 1), k).status_code == 200
            stats = client.get("/admin/stats").json()
            assert stats["rateLimited"] == len(limited)


def test_network_errors_move_nothing() -> None:
    with (
        running_simulator("--network-error-rate", "1") as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        k = key()
        for _ in range(3):
            answer = charge(client, body(), k)
            assert answer.status_code == 503
        assert ledger(client) == []
        assert client.get("/admin/stats").json()["networkErrors"] == 3


def test_ambiguous_answers_charge_and_replay(ambiguous: httpx.Client) -> None:
    keys = [key() for _ in range(8)]
    kinds = []
    for i, k in enumerate(keys):
        try:
            answer = charge(ambiguous, body(i + 1), k)
        except httpx.RemoteProtocolError:  # the connection dropped mid-answer
            kinds.append("dropped")
        else:
            assert answer.status_code == 500, answer.text
            kinds.append("500")
    assert set(kinds) == {"500", "dropped"}, kinds  # seed 0 gives both
    charges = {c["idempotencyKey"]: c for c in ledger(ambiguous)}
    assert set(charges) == set(keys)  # every charge was made
    for i, k in enumerate(keys):
        replay = charge(ambiguous, body(i + 1), k)
        assert replay.status_code == 200, replay.text
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json() == {"chargeId": charges[k]["chargeId"], "status": "charged"}
    assert len(ledger(ambiguous)) == len(keys)  # the replays moved nothing
    stats = ambiguous.get("/admin/stats").json()
    assert stats["ambiguous"] == 8
    assert stats["dropped"] == kinds.count("dropped")
    assert stats["ambiguous500"] == kinds.count("500")
    assert stats["replays"] == 8
    assert stats["byStatus"]["200"] == 8


async def test_concurrent_requests_with_one_key_charge_once(slow: str) -> None:
    k = key()
    async with httpx.AsyncClient(base_url=slow, timeout=10) as client:
        answers = await asyncio.gather(
            *(
                client.post(
                    "/v1/charges",
                    content=body(3),
                    headers={"Idempotency-Key": k, "Content-Type": "application/json"},
                )
                for _ in range(10)
            )
        )
        charges = (await client.get("/admin/ledger")).json()["charges"]
    made = [a for a in answers if a.status_code == 200 and "idempotent-replayed" not in a.headers]
    in_use = [a for a in answers if a.status_code == 409]
    replayed = [a for a in answers if a.headers.get("idempotent-replayed") == "true"]
    assert len(made) == 1
    assert len(in_use) >= 5  # all but the first, unless one came after the first finished
    assert len(made) + len(in_use) + len(replayed) == len(answers)
    for answer in in_use:
        assert answer.json() == {"error": "idempotency_key_in_use"}
        assert int(answer.headers["retry-after"]) >= 1
    assert [c["idempotencyKey"] for c in charges].count(k) == 1


def test_key_retention_expiry_charges_again(slow: str) -> None:
    """After the retention window the simulator has forgotten the key: it is a new charge."""
    k = key()
    with httpx.Client(base_url=slow, timeout=10) as client:
        first = charge(client, body(4), k)
        assert first.status_code == 200
        replay = charge(client, body(4), k)  # within the second
        assert replay.headers.get("idempotent-replayed") == "true"
        time.sleep(1.2)
        again = charge(client, body(4), k)
        assert again.status_code == 200
        assert "idempotent-replayed" not in again.headers
        assert again.json()["chargeId"] != first.json()["chargeId"]
        assert [c["chargeId"] for c in ledger_of(client, k)] == [
            first.json()["chargeId"],
            again.json()["chargeId"],
        ]


# --- a hostile provider ------------------------------------------------------------------


def well_formed(charge_id: object) -> bool:
    """What the protocol's client may accept as a chargeId: 1..255 printable ASCII."""
    return (
        isinstance(charge_id, str)
        and 1 <= len(charge_id) <= 255
        and charge_id.isascii()
        and charge_id.isprintable()
    )


def hostile_stats(client: httpx.Client) -> dict[str, Any]:
    stats: dict[str, Any] = client.get("/admin/stats").json()["hostile"]
    return stats


def test_no_hostile_fault_by_default(plain: httpx.Client) -> None:
    assert charge(plain, body(), key()).status_code == 200
    assert all(v in (0, {}) for v in hostile_stats(plain).values())
    assert plain.get("/admin/faults").json() == {"badChargeId": [], "rejectedAfterUnknown": []}


def test_bad_retry_after_is_429_or_409_and_moves_nothing() -> None:
    with (
        running_simulator("--bad-retry-after-rate", "1") as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        answers = [charge(client, body(i + 1), key()) for i in range(40)]
        statuses = {a.status_code for a in answers}
        assert statuses == {409, 429}
        values = set()
        for answer in answers:
            expected = "rate_limited" if answer.status_code == 429 else "idempotency_key_in_use"
            assert answer.json() == {"error": expected}
            values.add(answer.headers["retry-after"].encode("latin-1"))
        assert values <= set(HOSTILE_RETRY_AFTER)
        assert len(values) >= 4, values  # seed 0 gives most of them
        assert ledger(client) == []  # nothing charged
        stats = client.get("/admin/stats").json()
        hostile = stats["hostile"]
        assert hostile["badRetryAfter"] == 40
        by_status = {int(s): n for s, n in hostile["badRetryAfterByStatus"].items()}
        assert by_status == {s: [a.status_code for a in answers].count(s) for s in (409, 429)}
        assert stats["rateLimited"] == by_status[429]  # counted as what they are, too
        assert stats["keyInUse"] == by_status[409]


def test_injected_key_in_use_has_a_sane_retry_after_and_moves_nothing() -> None:
    with (
        running_simulator("--key-in-use-rate", "1") as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        k = key()
        for _ in range(3):  # not remembered: the same key is refused again
            answer = charge(client, body(), k)
            assert answer.status_code == 409
            assert answer.json() == {"error": "idempotency_key_in_use"}
            assert answer.headers["retry-after"] == "1"
        assert ledger(client) == []
        assert hostile_stats(client)["keyInUse"] == 3


def test_spoiled_charge_ids_are_malformed() -> None:
    real = "ch_" + "0123456789abcdef01234567"
    for how in HOSTILE_CHARGE_IDS:
        spoiled = spoil_charge_id(real, how)
        assert not well_formed(spoiled), how
        assert spoiled != real
    assert len(spoil_charge_id(real, "too_long")) > 255
    assert "\x00" in spoil_charge_id(real, "nul")
    assert "\n" in spoil_charge_id(real, "newline")


def test_bad_charge_id_charges_and_the_replay_carries_the_real_one() -> None:
    with (
        running_simulator("--bad-charge-id-rate", "1") as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        keys = [key() for _ in range(16)]
        spoiled = {}
        for i, k in enumerate(keys):
            answer = charge(client, body(i + 1), k)
            assert answer.status_code == 200, answer.text
            assert "idempotent-replayed" not in answer.headers
            doc = answer.json()  # valid JSON: the control characters are escaped
            assert doc["status"] == "charged"
            assert not well_formed(doc["chargeId"]), doc
            spoiled[k] = doc["chargeId"]
        charges = {c["idempotencyKey"]: c for c in ledger(client)}
        assert set(charges) == set(keys)  # every charge was made, once
        for i, k in enumerate(keys):
            real = charges[k]["chargeId"]
            assert well_formed(real)
            assert real != spoiled[k]
            replay = charge(client, body(i + 1), k)
            assert replay.status_code == 200
            assert replay.headers["idempotent-replayed"] == "true"
            assert replay.json() == {"chargeId": real, "status": "charged"}
        assert len(ledger(client)) == len(keys)  # the replays moved nothing
        hostile = hostile_stats(client)
        assert hostile["badChargeId"] == len(keys)
        assert set(hostile["badChargeIdByKind"]) == set(HOSTILE_CHARGE_IDS)  # seed 0
        faults = client.get("/admin/faults").json()["badChargeId"]
        assert [(f["idempotencyKey"], f["invoiceId"]) for f in faults] == [
            (k, i + 1) for i, k in enumerate(keys)
        ]
        assert {f["kind"] for f in faults} == set(HOSTILE_CHARGE_IDS)


def test_400_after_an_unknown_outcome_is_not_remembered() -> None:
    with (
        running_simulator("--ambiguous-rate", "1", "--reject-after-unknown-rate", "1") as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        keys = [key() for _ in range(8)]
        kinds = []
        for i, k in enumerate(keys):
            try:
                first = charge(client, body(i + 1), k)
            except httpx.RemoteProtocolError:
                kinds.append("dropped")
            else:
                assert first.status_code == 500
                kinds.append("500")
        assert set(kinds) == {"500", "dropped"}, kinds  # seed 0 gives both
        charges = {c["idempotencyKey"]: c for c in ledger(client)}
        assert set(charges) == set(keys)  # charged, answers lost
        for i, k in enumerate(keys):
            refused = charge(client, body(i + 1), k)
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"] == "invalid_request"
            assert "idempotent-replayed" not in refused.headers
            # the 400 was not remembered: the next request replays the charge made
            replay = charge(client, body(i + 1), k)
            assert replay.status_code == 200, replay.text
            assert replay.headers["idempotent-replayed"] == "true"
            assert replay.json() == {"chargeId": charges[k]["chargeId"], "status": "charged"}
        assert len(ledger(client)) == len(keys)
        stats = client.get("/admin/stats").json()
        assert stats["hostile"]["rejectedAfterUnknown"] == len(keys)
        assert stats["invalidRequests"] == len(keys)
        faults = client.get("/admin/faults").json()["rejectedAfterUnknown"]
        assert [(f["idempotencyKey"], f["invoiceId"]) for f in faults] == [
            (k, i + 1) for i, k in enumerate(keys)
        ]


def test_no_400_without_a_lost_answer() -> None:
    """A 503 (nothing happened) or a definite answer is not an unknown the server made."""
    with (
        running_simulator("--network-error-rate", "1", "--reject-after-unknown-rate", "1") as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        k = key()
        assert [charge(client, body(), k).status_code for _ in range(3)] == [503] * 3
        assert hostile_stats(client)["rejectedAfterUnknown"] == 0
    with (
        running_simulator("--reject-after-unknown-rate", "1") as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        k = key()
        assert [charge(client, body(), k).status_code for _ in range(3)] == [200] * 3
        assert hostile_stats(client)["rejectedAfterUnknown"] == 0


def test_unauthorized_bursts() -> None:
    """1 s of 401 at the end of every 2 s: every charge refused then, nothing charged."""
    with (
        running_simulator("--unauthorized-every", "2", "--unauthorized-for", "1") as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        seen: list[int] = []
        health_in_burst = []
        deadline = time.monotonic() + 4.6
        while time.monotonic() < deadline:
            answer = charge(client, body(), key())
            seen.append(answer.status_code)
            if answer.status_code == 401:
                assert answer.json() == {"error": "unauthorized"}
                assert answer.headers["www-authenticate"] == "Bearer"
                health_in_burst.append(client.get("/v1/health").status_code)
            time.sleep(0.05)
        assert set(seen) == {200, 401}, seen
        # the 401s come in runs (bursts), not scattered
        runs = [s for i, s in enumerate(seen) if s == 401 and (i == 0 or seen[i - 1] != 401)]
        assert 2 <= len(runs) <= 3, seen
        assert set(health_in_burst) == {200}  # only charges are refused
        assert len(ledger(client)) == seen.count(200)  # a 401 charged nothing
        stats = client.get("/admin/stats").json()
        assert stats["hostile"]["unauthorized"] == seen.count(401)
        assert stats["unauthorized"] == seen.count(401)
        assert stats["hostile"]["unauthorizedBursts"] == len(runs)


# --- accounts from an Antaeus database, and flag validation -----------------------------


def test_accounts_from_db(tmp_path: Path) -> None:
    env = clean_env()
    seeded = subprocess.run(
        [sys.executable, "-m", "antaeus", "seed", "--seed", "7", "--customers", "5"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert seeded.returncode == 0, seeded.stderr
    database = tmp_path / "antaeus.db"
    import sqlite3

    with sqlite3.connect(database) as conn:
        currencies = dict(conn.execute("SELECT id, currency FROM customers").fetchall())
    assert len(currencies) == 5
    url = f"sqlite:///{database}"
    with (
        running_simulator("--accounts-from-db", url, "--balance", "100.00") as base,
        httpx.Client(base_url=base, timeout=10) as client,
    ):
        for customer_id, currency in currencies.items():
            amount = {"value": "60.00", "currency": currency}
            assert charge(client, body(1, customer_id, amount), key()).status_code == 200
            # 40.00 left
            assert charge(client, body(2, customer_id, amount), key()).status_code == 402
        other = "EUR" if currencies[1] != "EUR" else "USD"
        answer = charge(client, body(3, 1, {"value": "1.00", "currency": other}), key())
        assert answer.status_code == 409
        answer = charge(client, body(4, 6, {"value": "1.00", "currency": "EUR"}), key())
        assert answer.status_code == 404


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--network-error-rate", "1.5"], "--network-error-rate must be between 0 and 1"),
        (["--ambiguous-rate", "-0.1"], "--ambiguous-rate must be between 0 and 1"),
        (["--ambiguous-rate", "nan"], "--ambiguous-rate must be between 0 and 1"),
        (["--latency-ms", "-1"], "--latency-ms must be"),
        (["--jitter-ms", "inf"], "--jitter-ms must be"),
        (["--rate-limit", "-3"], "--rate-limit must be"),
        (["--key-retention", "0"], "--key-retention must be"),
        (["--port", "70000"], "--port must be between 1 and 65535"),
        (["--port", "0"], "--port must be between 1 and 65535"),
        (["--balance", "1.001", "--accounts-from-db", "sqlite:///x.db"], "--balance"),
        (["--accounts", "missing.json"], "--accounts: cannot read"),
        (["--accounts-from-db", "sqlite:///empty.db"], "--accounts-from-db"),
        (["--api-key", "clé"], "--api-key"),
        (["--bad-retry-after-rate", "2"], "--bad-retry-after-rate must be between 0 and 1"),
        (["--key-in-use-rate", "-1"], "--key-in-use-rate must be between 0 and 1"),
        (["--bad-charge-id-rate", "nan"], "--bad-charge-id-rate must be between 0 and 1"),
        (["--reject-after-unknown-rate", "1.1"], "--reject-after-unknown-rate must be"),
        (["--unauthorized-every", "-1"], "--unauthorized-every must be"),
        (["--unauthorized-every", "2", "--unauthorized-for", "0"], "--unauthorized-for must be"),
        (["--unauthorized-every", "2", "--unauthorized-for", "3"], "--unauthorized-for must be"),
    ],
)
def test_bad_flags_fail_clearly(tmp_path: Path, args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "antaeus", "provider", "serve", *args],
        cwd=tmp_path,
        env=clean_env(NO_COLOR="1", COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "error:" in done.stderr
    assert message in done.stderr, done.stderr


def test_bad_accounts_file_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps([{"customerId": 1, "currency": "EUR", "balance": "1.234"}]))
    done = subprocess.run(
        [sys.executable, "-m", "antaeus", "provider", "serve", "--accounts", str(path)],
        cwd=tmp_path,
        env=clean_env(NO_COLOR="1", COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "[0].balance" in done.stderr, done.stderr


def _provider(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "antaeus", "provider", *args],
        cwd=tmp_path,
        env=clean_env(NO_COLOR="1", COLUMNS="200", **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_account_fund_and_ledger_commands_on_the_embedded_store(tmp_path: Path) -> None:
    missing = _provider(tmp_path, "fund", "--customer", "3", "--amount", "1.00")
    assert missing.returncode == 1
    assert "no simulator state at antaeus-simulator.db" in missing.stderr
    memory = _provider(tmp_path, "ledger", ANTAEUS_SIMULATED_STATE=":memory:")
    assert (memory.returncode, ":memory:" in memory.stderr) == (1, True)
    half = _provider(tmp_path, "account", "--customer", "3", "--balance", "1.00")
    assert half.returncode == 1
    assert "--currency: currency is required" in half.stderr
    created = _provider(
        tmp_path, "account", "--customer", "3", "--currency", "GBP", "--balance", "2"
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout) == {"customerId": 3, "currency": "GBP", "balance": "2.00"}
    funded = _provider(tmp_path, "fund", "--customer", "3", "--amount", "0.50")
    assert json.loads(funded.stdout)["balance"] == "2.50"
    for amount in ("0", "-1", "0.001", "abc"):
        bad = _provider(tmp_path, "fund", "--customer", "3", "--amount", amount)
        assert (bad.returncode, "--amount" in bad.stderr) == (1, True), bad.stderr
    nobody = _provider(tmp_path, "fund", "--customer", "4", "--amount", "1.00")
    assert nobody.returncode == 1
    assert "customer 4 has no account" in nobody.stderr
    assert _provider(tmp_path, "account", "--customer", "4").stdout.strip() == (
        "customer 4: no account"
    )
    elsewhere = tmp_path / "other.db"
    moved = _provider(
        tmp_path, "account", "--customer", "5", "--currency", "EUR", "--balance", "1",
        ANTAEUS_SIMULATED_STATE=str(elsewhere),
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    assert elsewhere.exists()
    shown = _provider(tmp_path, "account", "--customer", "5", "--state", str(elsewhere))
    assert json.loads(shown.stdout)["currency"] == "EUR"
    ledger = _provider(tmp_path, "ledger", "--invoice", "1")
    assert json.loads(ledger.stdout) == {"charges": []}
