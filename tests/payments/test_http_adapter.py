"""The HTTP adapter: every answer of the protocol maps to its outcome, anything else is unknown.

Three layers:

- `interpret`, `retry_after` and `encode_request` as pure functions: every row of
  the protocol table (`../shared/payment-provider-protocol.md`), every way an
  answer can be not the protocol, and hypothesis over arbitrary answers.
- The adapter over real sockets against a misbehaving server written with raw
  `asyncio.start_server`, so each test controls the bytes exactly: dropped
  connections, short bodies, HTML, silence, a trickle, an oversized answer,
  refused connections, 5xx. Each runs with both client libraries.
- What the adapter sends, connection reuse, and `check()`.

Nothing here may ever crash with another exception or report `Charged` for an
answer that is not a 200 charged answer.
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import json
import math
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from antaeus.domain.money import CURRENCIES, ORIGINAL_CURRENCIES, Currency, Money
from antaeus.payments.http import (
    DEFAULT_RETRY_AFTER,
    MAX_ANSWER_BYTES,
    ClientKind,
    HttpPaymentProvider,
    HttpProviderSettings,
    ProviderUnreachableError,
    RawAnswer,
    encode_request,
    interpret,
    retry_after,
)
from antaeus.payments.provider import (
    Charged,
    ChargeRequest,
    CurrencyMismatchError,
    CustomerNotFoundError,
    Declined,
    KeyInUseError,
    KeyReusedError,
    NotSentError,
    OutcomeUnknownError,
    ProviderError,
    RateLimitedError,
    RequestRejectedError,
    UnauthorizedError,
)

# ------------------------------------------------------------ helpers

CHARGED = {"chargeId": "ch_1", "status": "charged"}

#: (status, error) -> what `interpret` raises (or returns, for Declined)
PROTOCOL_ERRORS: dict[tuple[int, str], type[Any]] = {
    (402, "insufficient_funds"): Declined,
    (404, "customer_not_found"): CustomerNotFoundError,
    (409, "currency_mismatch"): CurrencyMismatchError,
    (409, "idempotency_key_in_use"): KeyInUseError,
    (422, "idempotency_key_reused"): KeyReusedError,
    (400, "invalid_request"): RequestRejectedError,
    (401, "unauthorized"): UnauthorizedError,
    (429, "rate_limited"): RateLimitedError,
}

#: every exception `charge()` / `interpret()` may raise
DECLARED_ERRORS = (
    OutcomeUnknownError,
    CustomerNotFoundError,
    CurrencyMismatchError,
    KeyInUseError,
    KeyReusedError,
    RequestRejectedError,
    UnauthorizedError,
    RateLimitedError,
)


def raw(
    status: int, body: bytes | str | Any, headers: Mapping[str, str] | None = None
) -> RawAnswer:
    """A RawAnswer; a body that is not bytes or str is JSON-encoded."""
    if isinstance(body, str):
        data = body.encode()
    elif isinstance(body, bytes):
        data = body
    else:
        data = json.dumps(body).encode()
    return RawAnswer(status, {k.lower(): v for k, v in (headers or {}).items()}, data)


def charge_request(
    value: str = "89.52",
    currency: Currency = Currency.USD,
    key: str = "inv-861-attempt-1",
) -> ChargeRequest:
    return ChargeRequest(
        invoice_id=861,
        customer_id=87,
        amount=Money.of(value, currency),
        idempotency_key=key,
    )


# ------------------------------------------------------------ interpret: the table


def test_200_charged_is_charged_with_its_charge_id() -> None:
    assert interpret(raw(200, {"chargeId": "ch_42", "status": "charged"})) == Charged(
        "ch_42", replayed=False
    )


@pytest.mark.parametrize("header", ["true", "True", "TRUE", " true "])
def test_200_charged_replayed(header: str) -> None:
    result = interpret(raw(200, CHARGED, {"Idempotent-Replayed": header}))
    assert result == Charged("ch_1", replayed=True)


@pytest.mark.parametrize("header", ["false", "1", "yes", ""])
def test_200_charged_not_replayed_unless_the_header_says_true(header: str) -> None:
    assert interpret(raw(200, CHARGED, {"Idempotent-Replayed": header})) == Charged("ch_1")


def test_200_charged_with_extra_fields_is_still_charged() -> None:
    body = {**CHARGED, "amount": {"value": "89.52", "currency": "USD"}, "created": 1}
    assert interpret(raw(200, body)) == Charged("ch_1")


def test_402_insufficient_funds_is_declined() -> None:
    assert interpret(raw(402, {"error": "insufficient_funds"})) == Declined(replayed=False)


def test_402_replayed_is_a_replayed_decline() -> None:
    answer = raw(402, {"error": "insufficient_funds"}, {"Idempotent-Replayed": "true"})
    assert interpret(answer) == Declined(replayed=True)


@pytest.mark.parametrize(
    ("status", "error", "exception"),
    [
        (404, "customer_not_found", CustomerNotFoundError),
        (409, "currency_mismatch", CurrencyMismatchError),
        (422, "idempotency_key_reused", KeyReusedError),
        (401, "unauthorized", UnauthorizedError),
        (400, "invalid_request", RequestRejectedError),
    ],
)
def test_definite_refusals(status: int, error: str, exception: type[Exception]) -> None:
    with pytest.raises(exception) as info:
        interpret(raw(status, {"error": error}))
    assert type(info.value) is exception


def test_400_carries_the_providers_message() -> None:
    body = {"error": "invalid_request", "message": "amount.value must be a decimal string"}
    with pytest.raises(RequestRejectedError, match=r"amount\.value must be a decimal string"):
        interpret(raw(400, body))


@pytest.mark.parametrize("message", [None, "", 42, ["x"]])
def test_400_without_a_usable_message_names_the_error(message: Any) -> None:
    body: dict[str, Any] = {"error": "invalid_request"}
    if message is not None:
        body["message"] = message
    with pytest.raises(RequestRejectedError, match="invalid_request"):
        interpret(raw(400, body))


def test_409_key_in_use_carries_retry_after() -> None:
    answer = raw(409, {"error": "idempotency_key_in_use"}, {"Retry-After": "3"})
    with pytest.raises(KeyInUseError) as info:
        interpret(answer)
    assert info.value.retry_after == 3.0


def test_429_rate_limited_carries_retry_after() -> None:
    answer = raw(429, {"error": "rate_limited"}, {"Retry-After": "2"})
    with pytest.raises(RateLimitedError) as info:
        interpret(answer)
    assert info.value.retry_after == 2.0


@pytest.mark.parametrize(
    ("status", "error", "exception"),
    [(429, "rate_limited", RateLimitedError), (409, "idempotency_key_in_use", KeyInUseError)],
)
def test_retry_after_missing_or_garbage_is_the_default(
    status: int, error: str, exception: type[RateLimitedError | KeyInUseError]
) -> None:
    for headers in ({}, {"Retry-After": "soon"}, {"Retry-After": "nan"}):
        with pytest.raises(exception) as info:
            interpret(raw(status, {"error": error}, headers))
        assert info.value.retry_after == DEFAULT_RETRY_AFTER


# ------------------------------------------------------------ interpret: not the protocol

NOT_THE_PROTOCOL: list[Any] = [
    # the status and the error disagree
    pytest.param(402, {"error": "customer_not_found"}, id="402-customer_not_found"),
    pytest.param(404, {"error": "insufficient_funds"}, id="404-insufficient_funds"),
    pytest.param(409, {"error": "rate_limited"}, id="409-rate_limited"),
    pytest.param(429, {"error": "idempotency_key_in_use"}, id="429-key_in_use"),
    pytest.param(400, {"error": "unauthorized"}, id="400-unauthorized"),
    pytest.param(422, {"error": "currency_mismatch"}, id="422-currency_mismatch"),
    pytest.param(200, {"error": "insufficient_funds"}, id="200-error-body"),
    pytest.param(200, {"error": "customer_not_found"}, id="200-error-customer_not_found"),
    # 5xx, whatever the body says
    pytest.param(500, CHARGED, id="500-charged-body"),
    pytest.param(500, {"error": "internal"}, id="500-error"),
    pytest.param(502, b"", id="502-empty"),
    pytest.param(503, "<html><body>Service Unavailable</body></html>", id="503-html"),
    pytest.param(504, {"error": "insufficient_funds"}, id="504-protocol-error"),
    pytest.param(599, {"error": "rate_limited"}, id="599-rate_limited"),
    # other statuses with a charged body
    pytest.param(201, CHARGED, id="201-charged"),
    pytest.param(202, CHARGED, id="202-charged"),
    pytest.param(204, b"", id="204-empty"),
    pytest.param(301, CHARGED, id="301-charged"),
    pytest.param(307, CHARGED, id="307-charged"),
    pytest.param(100, CHARGED, id="100-charged"),
    # not JSON, or not a JSON object
    pytest.param(200, "<!doctype html><html><body>OK</body></html>", id="200-html"),
    pytest.param(200, b"", id="200-empty"),
    pytest.param(200, b"   ", id="200-blank"),
    pytest.param(200, [CHARGED], id="200-array-of-charged"),
    pytest.param(200, [], id="200-empty-array"),
    pytest.param(200, "null", id="200-null"),
    pytest.param(200, '"charged"', id="200-string"),
    pytest.param(200, "42", id="200-number"),
    pytest.param(200, "true", id="200-true"),
    pytest.param(200, '{"chargeId": "ch_1", "status": "charged"', id="200-cut-json"),
    pytest.param(200, '{"chargeId": "ch_1", "status": "charged"}garbage', id="200-trailing"),
    pytest.param(200, b'{"chargeId":"ch_\xff","status":"charged"}', id="200-invalid-utf8"),
    pytest.param(200, b"\xff\xfe\x00\x00", id="200-binary"),
    pytest.param(200, b"[" * 100_000, id="200-deeply-nested"),
    pytest.param(200, b'{"a":' * 100_000, id="200-deeply-nested-object"),
    pytest.param(402, "Payment Required", id="402-text"),
    pytest.param(429, b"", id="429-empty"),
    # unknown or malformed error codes
    pytest.param(402, {"error": "card_expired"}, id="402-unknown-error"),
    pytest.param(402, {}, id="402-no-error"),
    pytest.param(402, {"error": None}, id="402-null-error"),
    pytest.param(402, {"error": ["insufficient_funds"]}, id="402-error-list"),
    pytest.param(402, {"error": "INSUFFICIENT_FUNDS"}, id="402-error-upper"),
    pytest.param(404, {"error": {"code": "customer_not_found"}}, id="404-error-object"),
    pytest.param(418, {"error": "teapot"}, id="418"),
    # a 200 that is not a charge
    pytest.param(200, {"status": "charged"}, id="200-no-chargeId"),
    pytest.param(200, {"chargeId": 42, "status": "charged"}, id="200-chargeId-int"),
    pytest.param(200, {"chargeId": None, "status": "charged"}, id="200-chargeId-null"),
    pytest.param(200, {"chargeId": "", "status": "charged"}, id="200-chargeId-empty"),
    pytest.param(200, {"chargeId": ["ch_1"], "status": "charged"}, id="200-chargeId-list"),
    pytest.param(200, {"chargeId": {"id": "ch_1"}, "status": "charged"}, id="200-chargeId-obj"),
    pytest.param(200, {"chargeId": True, "status": "charged"}, id="200-chargeId-true"),
    pytest.param(200, {"chargeId": "ch_1"}, id="200-no-status"),
    pytest.param(200, {"chargeId": "ch_1", "status": "pending"}, id="200-status-pending"),
    pytest.param(200, {"chargeId": "ch_1", "status": "Charged"}, id="200-status-Charged"),
    pytest.param(200, {"chargeId": "ch_1", "status": "declined"}, id="200-status-declined"),
    pytest.param(200, {"chargeId": "ch_1", "status": True}, id="200-status-true"),
    pytest.param(200, {"chargeId": "ch_1", "status": None}, id="200-status-null"),
    pytest.param(200, {}, id="200-empty-object"),
    pytest.param(200, {"status": "ok"}, id="200-health-answer"),
]


@pytest.mark.parametrize(("status", "body"), NOT_THE_PROTOCOL)
def test_anything_else_is_an_unknown_outcome(status: int, body: Any) -> None:
    with pytest.raises(OutcomeUnknownError):
        interpret(raw(status, body))


@pytest.mark.parametrize(("status", "body"), NOT_THE_PROTOCOL)
def test_anything_else_is_unknown_even_when_replayed(status: int, body: Any) -> None:
    answer = raw(status, body, {"Idempotent-Replayed": "true", "Retry-After": "1"})
    with pytest.raises(OutcomeUnknownError):
        interpret(answer)


@pytest.mark.parametrize(
    "error",
    ["insufficient_funds", "customer_not_found", "currency_mismatch", "rate_limited"],
)
def test_200_charged_that_also_carries_an_error_is_not_the_protocol(error: str) -> None:
    """`error` is authoritative and the status must agree with it (protocol, Responses).

    A 200 whose body says both `charged` and an error is a status/error
    disagreement, so its outcome is unknown: it must not be read as Charged.
    (Fails while `interpret` ignores `error` on a 200.)
    """
    with pytest.raises(OutcomeUnknownError):
        interpret(raw(200, {**CHARGED, "error": error}))


def test_the_unknown_outcome_message_shows_a_bounded_snippet_of_the_body() -> None:
    with pytest.raises(OutcomeUnknownError) as info:
        interpret(raw(503, b"x" * 10_000))
    assert len(str(info.value)) < 300


# ------------------------------------------------------------ interpret: hypothesis

PROTOCOL_STATUSES = [200, 400, 401, 402, 404, 409, 422, 429, 500, 502, 503]
PROTOCOL_WORDS = [
    "charged",
    "ok",
    "ch_1",
    "",
    *{error for _, error in PROTOCOL_ERRORS},
]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.sampled_from(PROTOCOL_WORDS),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
protocol_like_objects = st.dictionaries(
    st.sampled_from(["chargeId", "status", "error", "message"]) | st.text(max_size=8),
    json_values,
    max_size=5,
)
bodies = st.one_of(
    st.binary(max_size=300),
    protocol_like_objects.map(lambda o: json.dumps(o).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    protocol_like_objects.map(lambda o: json.dumps(o).encode()[: len(json.dumps(o)) // 2]),
)
statuses = st.one_of(st.sampled_from(PROTOCOL_STATUSES), st.integers(0, 999))
answer_headers = st.dictionaries(
    st.sampled_from(["retry-after", "idempotent-replayed", "content-type"]),
    st.one_of(st.sampled_from(["1", "2.5", "true", "-1", "inf", "nan", ""]), st.text(max_size=40)),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(status=statuses, body=bodies, headers=answer_headers)
def test_interpret_never_crashes_and_charged_only_for_a_200_charged(
    status: int, body: bytes, headers: dict[str, str]
) -> None:
    # any exception that is not a ProviderError propagates and fails the test
    result = outcome(RawAnswer(status, headers, body))
    if isinstance(result, ProviderError):
        assert type(result) in DECLARED_ERRORS, repr(result)
        if isinstance(result, RateLimitedError | KeyInUseError):
            assert math.isfinite(result.retry_after)
            assert result.retry_after >= 0
        if not isinstance(result, OutcomeUnknownError):
            assert PROTOCOL_ERRORS.get((status, json.loads(body)["error"])) is type(result)
        return
    parsed = json.loads(body.decode("utf-8"))
    assert isinstance(parsed, dict)
    if isinstance(result, Charged):
        assert status == 200
        assert isinstance(parsed["chargeId"], str)
        assert parsed["chargeId"]
        assert parsed["status"] == "charged"
        assert result.charge_id == parsed["chargeId"]
    else:
        assert isinstance(result, Declined)
        assert status == 402
        assert parsed["error"] == "insufficient_funds"


def outcome(answer: RawAnswer) -> Charged | Declined | ProviderError:
    try:
        return interpret(answer)
    except ProviderError as exc:
        return exc


@settings(max_examples=200, deadline=None)
@given(charge_id=st.text(min_size=1, max_size=255).filter(str.isprintable), replayed=st.booleans())
def test_every_well_formed_charge_id_is_read_back_exactly(charge_id: str, replayed: bool) -> None:
    headers = {"idempotent-replayed": "true"} if replayed else {}
    answer = RawAnswer(
        200, headers, json.dumps({"chargeId": charge_id, "status": "charged"}).encode()
    )
    assert interpret(answer) == Charged(charge_id, replayed=replayed)


# ------------------------------------------------------------ retry_after

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("2", 2.0),
        (" 2 ", 2.0),
        ("0", 0.0),
        ("60", 60.0),
        ("1.5", 1.5),
        ("0.25", 0.25),
        ("-5", 0.0),
        ("-0.5", 0.0),
        ("inf", DEFAULT_RETRY_AFTER),
        ("-inf", DEFAULT_RETRY_AFTER),
        ("Infinity", DEFAULT_RETRY_AFTER),
        ("nan", DEFAULT_RETRY_AFTER),
        ("NaN", DEFAULT_RETRY_AFTER),
        ("1e400", DEFAULT_RETRY_AFTER),
        ("", DEFAULT_RETRY_AFTER),
        ("soon", DEFAULT_RETRY_AFTER),
        ("2 seconds", DEFAULT_RETRY_AFTER),
        ("Wed, 99 Foo 2015 07:28:00 GMT", DEFAULT_RETRY_AFTER),
        (None, DEFAULT_RETRY_AFTER),
    ],
)
def test_retry_after_seconds(header: str | None, seconds: float) -> None:
    assert retry_after(header, now=NOW) == seconds


def test_retry_after_http_date_in_the_future() -> None:
    header = email.utils.formatdate(NOW + 30, usegmt=True)
    assert retry_after(header, now=NOW) == pytest.approx(30.0)


def test_retry_after_http_date_with_an_offset() -> None:
    assert retry_after("Tue, 14 Nov 2023 23:14:20 +0100", now=NOW) == pytest.approx(60.0)
    assert retry_after("Tue, 14 Nov 2023 22:14:20 +0000", now=NOW) == pytest.approx(60.0)


def test_retry_after_http_date_without_a_known_zone_is_still_sane() -> None:
    # "-0000" (RFC 5322: UTC, local zone unknown) parses to a naive datetime
    seconds = retry_after(email.utils.formatdate(NOW + 45), now=NOW)
    assert seconds in (DEFAULT_RETRY_AFTER, pytest.approx(45.0))


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    assert retry_after(email.utils.formatdate(NOW - 3600, usegmt=True), now=NOW) == 0.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=NOW) == 0.0


def test_retry_after_http_date_against_the_wall_clock() -> None:
    header = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55.0 <= retry_after(header) <= 61.0


@settings(max_examples=300, deadline=None)
@given(
    header=st.one_of(
        st.text(max_size=60),
        st.floats().map(repr),
        st.integers().map(str),
        st.floats(min_value=-1.6e9, max_value=2e11).map(
            lambda s: email.utils.formatdate(NOW + s, usegmt=True)
        ),
        st.datetimes().map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT")),
    ),
    now=st.one_of(st.none(), st.floats(min_value=0, max_value=4e9)),
)
def test_retry_after_is_always_a_finite_non_negative_number(header: str, now: float | None) -> None:
    seconds = retry_after(header, now=now)
    assert isinstance(seconds, float)
    assert math.isfinite(seconds)
    assert seconds >= 0


# ------------------------------------------------------------ encode_request


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("89.52", "89.52"),
        ("1", "1.00"),
        ("1.00", "1.00"),
        ("0.1", "0.10"),
        ("0.10", "0.10"),
        ("0.01", "0.01"),
        ("100", "100.00"),
        ("1000000", "1000000.00"),
        ("123456789.5", "123456789.50"),
        ("999999999999.99", "999999999999.99"),
        (Decimal("1E+3"), "1000.00"),
        (5, "5.00"),
    ],
)
def test_the_amount_is_a_two_decimal_string(value: Any, text: str) -> None:
    request = ChargeRequest(861, 87, Money.of(value, Currency.EUR), "k")
    data = encode_request(request)
    parsed = json.loads(data)
    assert parsed == {
        "invoiceId": 861,
        "customerId": 87,
        "amount": {"value": text, "currency": "EUR"},
    }
    assert f'"value":"{text}"'.encode() in data.replace(b" ", b"")
    # never a JSON number: reading numbers as errors still parses the amount
    assert isinstance(parsed["amount"]["value"], str)


def test_the_request_keys_are_exactly_the_protocols() -> None:
    parsed = json.loads(encode_request(charge_request()))
    assert set(parsed) == {"invoiceId", "customerId", "amount"}
    assert set(parsed["amount"]) == {"value", "currency"}
    assert parsed["amount"] == {"value": "89.52", "currency": "USD"}


@settings(max_examples=300, deadline=None)
@given(
    cents=st.one_of(st.integers(0, 99_999_999_999_999), st.integers(0, 10**20)),
    currency=st.sampled_from(ORIGINAL_CURRENCIES),
    via_minor=st.booleans(),
)
def test_every_amount_encodes_as_its_exact_two_decimal_string(
    cents: int, currency: Currency, via_minor: bool
) -> None:
    expected = f"{cents // 100}.{cents % 100:02d}"
    if via_minor:
        money = Money.from_minor(cents, currency)
    else:
        if cents > 99_999_999_999_999:
            return  # beyond MAX_AMOUNT, Money.of refuses it
        money = Money.of(expected, currency)
    data = encode_request(ChargeRequest(1, 2, money, "k"))

    def no_numbers(text: str) -> Any:
        raise AssertionError(f"a JSON number in the amount: {text}")

    parsed = json.loads(data, parse_float=no_numbers)
    value = parsed["amount"]["value"]
    assert isinstance(value, str)
    assert re.fullmatch(r"[0-9]+\.[0-9]{2}", value), value
    assert value == expected
    assert Decimal(value) == money.value
    assert parsed["amount"]["currency"] == currency.value


# ------------------------------------------------------------ a raw HTTP server


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


#: answers one request on its connection; returns whether to keep the connection open
Responder = Callable[[Request, asyncio.StreamWriter], Awaitable[bool]]


@dataclass
class RawServer:
    """An HTTP/1.1 server on 127.0.0.1 that writes exactly the bytes a test gives it."""

    respond: Responder
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    closing: bool = False
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                request = await read_request(reader)
                if request is None:
                    break
                self.requests.append(request)
                if not await self.respond(request, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            # `raw_server` cancels the conversations still running when it closes; ending
            # normally then keeps asyncio from logging the cancelled connection callback
            if not self.closing:
                raise
        finally:
            self._tasks.discard(task)
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    assert "transfer-encoding" not in headers, "the client should send a Content-Length"
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return Request(method, path, headers, body)


@asynccontextmanager
async def raw_server(respond: Responder) -> AsyncIterator[RawServer]:
    server = RawServer(respond)
    listener = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        server.closing = True
        listener.close()
        tasks = list(server._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await listener.wait_closed()


def http_answer(
    status: int,
    body: bytes | str | Any,
    headers: Mapping[str, str] | None = None,
    *,
    content_length: int | None = None,
) -> bytes:
    """The bytes of one HTTP/1.1 answer; a body that is not bytes or str is JSON."""
    if isinstance(body, str):
        data = body.encode()
    elif isinstance(body, bytes):
        data = body
    else:
        data = json.dumps(body).encode()
    all_headers = {
        "Content-Type": "application/json",
        "Content-Length": str(len(data) if content_length is None else content_length),
        **(headers or {}),
    }
    head = f"HTTP/1.1 {status} Whatever\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in all_headers.items()
    )
    return head.encode("latin-1") + b"\r\n" + data


def answering(data: bytes, *, keep_alive: bool = True) -> Responder:
    async def respond(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(data)
        await writer.drain()
        return keep_alive

    return respond


@contextmanager
def refused_port() -> Iterator[int]:
    """A port bound by nobody who listens: connecting is refused, and nobody can take it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


CLIENTS: list[ClientKind] = ["aiohttp", "httpx"]
CONNECT_TIMEOUT = 1.0
READ_TIMEOUT = 0.5
TOTAL_TIMEOUT = 2.0


@pytest.fixture(params=CLIENTS)
def client_kind(request: pytest.FixtureRequest) -> ClientKind:
    kind: ClientKind = request.param
    return kind


def settings_for(base_url: str, client: ClientKind, **overrides: Any) -> HttpProviderSettings:
    options: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT,
        "read_timeout": READ_TIMEOUT,
        "timeout": TOTAL_TIMEOUT,
        **overrides,
    }
    return HttpProviderSettings(base_url=base_url, client=client, **options)


async def charge_once(base_url: str, client: ClientKind, **overrides: Any) -> Charged | Declined:
    provider = HttpPaymentProvider(settings_for(base_url, client, **overrides))
    try:
        return await provider.charge(charge_request())
    finally:
        await provider.aclose()


async def expect_unknown(base_url: str, client: ClientKind) -> OutcomeUnknownError:
    """The charge ends in OutcomeUnknownError: no other exception, never a result."""
    try:
        result = await charge_once(base_url, client)
    except OutcomeUnknownError as exc:
        return exc
    raise AssertionError(f"expected an unknown outcome, got {result!r}")


# ------------------------------------------------------------ network: misbehaving


async def test_connection_closed_right_after_the_request(client_kind: ClientKind) -> None:
    async def close(request: Request, writer: asyncio.StreamWriter) -> bool:
        return False

    async with raw_server(close) as server:
        await expect_unknown(server.base_url, client_kind)
        assert len(server.requests) == 1  # sent once, not retried behind our back


async def test_body_shorter_than_its_content_length(client_kind: ClientKind) -> None:
    data = http_answer(200, b"0123456789", content_length=100)
    async with raw_server(answering(data, keep_alive=False)) as server:
        await expect_unknown(server.base_url, client_kind)


async def test_a_complete_charged_json_cut_short_of_its_content_length(
    client_kind: ClientKind,
) -> None:
    """A connection lost before the declared end: even a parseable body is not an answer."""
    data = http_answer(200, CHARGED, content_length=100)
    async with raw_server(answering(data, keep_alive=False)) as server:
        await expect_unknown(server.base_url, client_kind)


async def test_headers_cut_short(client_kind: ClientKind) -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Type: appli"
    async with raw_server(answering(data, keep_alive=False)) as server:
        await expect_unknown(server.base_url, client_kind)


async def test_not_http_at_all(client_kind: ClientKind) -> None:
    data = b"SSH-2.0-OpenSSH_9.6\r\n\r\n"
    async with raw_server(answering(data, keep_alive=False)) as server:
        await expect_unknown(server.base_url, client_kind)


async def test_200_with_an_html_body(client_kind: ClientKind) -> None:
    html = "<!doctype html><html><body><h1>Welcome to nginx!</h1></body></html>"
    data = http_answer(200, html, {"Content-Type": "text/html"})
    async with raw_server(answering(data)) as server:
        await expect_unknown(server.base_url, client_kind)


async def test_a_server_that_never_answers_times_out(client_kind: ClientKind) -> None:
    async def silence(request: Request, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(30)
        return False

    async with raw_server(silence) as server:
        started = time.monotonic()
        await expect_unknown(server.base_url, client_kind)
        assert time.monotonic() - started < TOTAL_TIMEOUT + 1.0


async def test_a_trickle_is_cut_by_the_total_deadline(client_kind: ClientKind) -> None:
    """One byte every 0.3 s: no read waits 0.5 s, so only the whole-call deadline stops it."""
    data = http_answer(200, CHARGED)

    async def trickle(request: Request, writer: asyncio.StreamWriter) -> bool:
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            await writer.drain()
            await asyncio.sleep(0.3)
        return True

    async with raw_server(trickle) as server:
        started = time.monotonic()
        await expect_unknown(server.base_url, client_kind)
        elapsed = time.monotonic() - started
        assert TOTAL_TIMEOUT - 0.2 <= elapsed < TOTAL_TIMEOUT + 1.0


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "close-delimited"])
async def test_an_answer_larger_than_the_limit(client_kind: ClientKind, declared: bool) -> None:
    """A valid 200 charged body padded past MAX_ANSWER_BYTES is not read as Charged."""
    body = json.dumps(CHARGED).encode() + b" " * (MAX_ANSWER_BYTES + 1024)
    if declared:
        data = http_answer(200, body)
    else:
        data = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
        data += body
    async with raw_server(answering(data, keep_alive=False)) as server:
        exc = await expect_unknown(server.base_url, client_kind)
        assert str(MAX_ANSWER_BYTES) in str(exc)


async def test_an_answer_of_exactly_the_limit_is_read(client_kind: ClientKind) -> None:
    head = json.dumps(CHARGED).encode()
    body = head + b" " * (MAX_ANSWER_BYTES - len(head))
    async with raw_server(answering(http_answer(200, body))) as server:
        assert await charge_once(server.base_url, client_kind) == Charged("ch_1")


async def test_connection_refused_is_not_sent(client_kind: ClientKind) -> None:
    """No connection: nothing left this process, so nothing can have been charged."""
    with refused_port() as port:
        started = time.monotonic()
        with pytest.raises(NotSentError):
            await charge_once(f"http://127.0.0.1:{port}", client_kind)
        assert time.monotonic() - started < TOTAL_TIMEOUT


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_unknown(client_kind: ClientKind, status: int) -> None:
    for body in ({"error": "unavailable"}, CHARGED, {"error": "insufficient_funds"}, ""):
        async with raw_server(answering(http_answer(status, body))) as server:
            await expect_unknown(server.base_url, client_kind)


async def test_503_with_retry_after_is_still_unknown(client_kind: ClientKind) -> None:
    data = http_answer(503, {"error": "unavailable"}, {"Retry-After": "1"})
    async with raw_server(answering(data)) as server:
        await expect_unknown(server.base_url, client_kind)


async def test_a_redirect_is_not_followed_into_a_charged(client_kind: ClientKind) -> None:
    """3xx is no answer of the protocol. Following it could report Charged for an answer
    the configured endpoint never gave; both clients must read it as unknown.
    (Fails with aiohttp while its requests follow redirects: `allow_redirects=False`.)"""

    async def redirect(request: Request, writer: asyncio.StreamWriter) -> bool:
        if request.path == "/v1/charges":
            writer.write(http_answer(307, b"", {"Location": "/elsewhere"}))
        else:
            writer.write(http_answer(200, CHARGED))
        await writer.drain()
        return True

    async with raw_server(redirect) as server:
        await expect_unknown(server.base_url, client_kind)
        assert [r.path for r in server.requests] == ["/v1/charges"]


async def test_a_compressed_answer_is_read_when_the_client_asked_for_it(
    client_kind: ClientKind,
) -> None:
    """If the client advertises an Accept-Encoding, a server may use it: the adapter must
    then read the compressed answer. (Or, better, it advertises only `identity`.)
    (Fails while both clients send `Accept-Encoding: gzip, deflate` and read raw bytes.)"""

    async def maybe_gzip(request: Request, writer: asyncio.StreamWriter) -> bool:
        accepted = request.headers.get("accept-encoding", "")
        if "gzip" in accepted:
            data = gzip.compress(json.dumps(CHARGED).encode())
            writer.write(http_answer(200, data, {"Content-Encoding": "gzip"}))
        else:
            writer.write(http_answer(200, CHARGED))
        await writer.drain()
        return True

    async with raw_server(maybe_gzip) as server:
        assert await charge_once(server.base_url, client_kind) == Charged("ch_1")


# ------------------------------------------------------------ network: the protocol


async def test_a_correct_200_is_charged(client_kind: ClientKind) -> None:
    data = http_answer(200, {"chargeId": "ch_861", "status": "charged"})
    async with raw_server(answering(data)) as server:
        assert await charge_once(server.base_url, client_kind) == Charged("ch_861")


async def test_a_replayed_200_is_a_replayed_charge(client_kind: ClientKind) -> None:
    data = http_answer(200, CHARGED, {"Idempotent-Replayed": "true"})
    async with raw_server(answering(data)) as server:
        assert await charge_once(server.base_url, client_kind) == Charged("ch_1", replayed=True)


async def test_402_is_declined(client_kind: ClientKind) -> None:
    data = http_answer(402, {"error": "insufficient_funds"})
    async with raw_server(answering(data)) as server:
        assert await charge_once(server.base_url, client_kind) == Declined()


async def test_429_is_rate_limited_with_its_retry_after(client_kind: ClientKind) -> None:
    data = http_answer(429, {"error": "rate_limited"}, {"Retry-After": "2"})
    async with raw_server(answering(data)) as server:
        with pytest.raises(RateLimitedError) as info:
            await charge_once(server.base_url, client_kind)
        assert info.value.retry_after == 2.0


async def test_404_is_customer_not_found(client_kind: ClientKind) -> None:
    data = http_answer(404, {"error": "customer_not_found"})
    async with raw_server(answering(data)) as server:
        with pytest.raises(CustomerNotFoundError):
            await charge_once(server.base_url, client_kind)


@pytest.mark.parametrize("api_key", ["sk_test_123", None])
async def test_the_request_on_the_wire(client_kind: ClientKind, api_key: str | None) -> None:
    async with raw_server(answering(http_answer(200, CHARGED))) as server:
        provider = HttpPaymentProvider(settings_for(server.base_url, client_kind, api_key=api_key))
        try:
            request = charge_request("89.52", Currency.USD, key="inv-861-attempt-1")
            assert await provider.charge(request) == Charged("ch_1")
        finally:
            await provider.aclose()

    [sent] = server.requests
    assert sent.method == "POST"
    assert sent.path == "/v1/charges"
    assert sent.headers["idempotency-key"] == "inv-861-attempt-1"
    assert sent.headers["content-type"] == "application/json"
    if api_key is None:
        assert "authorization" not in sent.headers
    else:
        assert sent.headers["authorization"] == f"Bearer {api_key}"
    assert int(sent.headers["content-length"]) == len(sent.body)
    parsed = json.loads(sent.body)
    assert parsed == {
        "invoiceId": 861,
        "customerId": 87,
        "amount": {"value": "89.52", "currency": "USD"},
    }
    assert isinstance(parsed["amount"]["value"], str)


@pytest.mark.parametrize(("suffix", "path"), [("/", "/v1/charges"), ("/pay", "/pay/v1/charges")])
async def test_the_base_url_may_have_a_slash_or_a_path(
    client_kind: ClientKind, suffix: str, path: str
) -> None:
    async with raw_server(answering(http_answer(200, CHARGED))) as server:
        assert await charge_once(server.base_url + suffix, client_kind) == Charged("ch_1")
    assert [r.path for r in server.requests] == [path]


async def test_connections_are_reused_across_calls(client_kind: ClientKind) -> None:
    data = http_answer(200, CHARGED, {"Connection": "keep-alive"})
    async with raw_server(answering(data)) as server:
        provider = HttpPaymentProvider(settings_for(server.base_url, client_kind))
        try:
            for i in range(20):
                result = await provider.charge(charge_request(key=f"k-{i}"))
                assert result == Charged("ch_1")
        finally:
            await provider.aclose()
    assert len(server.requests) == 20
    assert [r.headers["idempotency-key"] for r in server.requests] == [f"k-{i}" for i in range(20)]
    assert server.connections <= 2, f"{server.connections} connections for 20 calls"


async def test_a_dropped_connection_does_not_poison_the_next_call(client_kind: ClientKind) -> None:
    calls = 0

    async def first_drops(request: Request, writer: asyncio.StreamWriter) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            return False
        writer.write(http_answer(200, CHARGED))
        await writer.drain()
        return True

    async with raw_server(first_drops) as server:
        provider = HttpPaymentProvider(settings_for(server.base_url, client_kind))
        try:
            with pytest.raises(OutcomeUnknownError):
                await provider.charge(charge_request())
            assert await provider.charge(charge_request()) == Charged("ch_1")
        finally:
            await provider.aclose()


# ------------------------------------------------------------ check()


async def check(base_url: str, client: ClientKind, **overrides: Any) -> None:
    provider = HttpPaymentProvider(settings_for(base_url, client, **overrides))
    try:
        await provider.check()
    finally:
        await provider.aclose()


async def test_check_passes_for_a_healthy_provider(client_kind: ClientKind) -> None:
    data = http_answer(200, {"status": "ok"})
    async with raw_server(answering(data)) as server:
        await check(server.base_url, client_kind, api_key="sk_test_1")
    [sent] = server.requests
    assert sent.method == "GET"
    assert sent.path == "/v1/health"
    assert sent.headers["authorization"] == "Bearer sk_test_1"


async def test_check_refused(client_kind: ClientKind) -> None:
    with refused_port() as port, pytest.raises(ProviderUnreachableError):
        await check(f"http://127.0.0.1:{port}", client_kind)


@pytest.mark.parametrize(
    "data",
    [
        http_answer(500, {"status": "ok"}),
        http_answer(503, ""),
        http_answer(200, {"status": "down"}),
        http_answer(200, {"status": "OK"}),
        http_answer(200, {}),
        http_answer(200, [{"status": "ok"}]),
        http_answer(200, "<html>ok</html>", {"Content-Type": "text/html"}),
        http_answer(200, b""),
        http_answer(401, {"error": "unauthorized"}),
        http_answer(200, {"status": "ok"}, content_length=100),
    ],
    ids=[
        "500",
        "503-empty",
        "200-down",
        "200-OK",
        "200-empty-object",
        "200-array",
        "200-html",
        "200-empty",
        "401",
        "200-cut-short",
    ],
)
async def test_check_fails_for_anything_but_200_ok(client_kind: ClientKind, data: bytes) -> None:
    async with raw_server(answering(data, keep_alive=False)) as server:
        with pytest.raises(ProviderUnreachableError):
            await check(server.base_url, client_kind)


async def test_check_fails_for_a_silent_provider(client_kind: ClientKind) -> None:
    async def silence(request: Request, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(30)
        return False

    async with raw_server(silence) as server:
        started = time.monotonic()
        with pytest.raises(ProviderUnreachableError):
            await check(server.base_url, client_kind)
        assert time.monotonic() - started < CONNECT_TIMEOUT + READ_TIMEOUT + 1.0


@pytest.mark.parametrize("key", ["", "k" * 256, "clé", "a\r\nb", "tab\there"])
async def test_a_key_outside_the_protocol_is_refused_before_anything_is_sent(key: str) -> None:
    provider = HttpPaymentProvider(HttpProviderSettings(base_url="http://127.0.0.1:9"))
    try:
        request = ChargeRequest(1, 1, Money.of(Decimal("1.00"), Currency.EUR), key)
        with pytest.raises(RequestRejectedError):
            await provider.charge(request)
    finally:
        await provider.aclose()


@settings(max_examples=300, deadline=None)
@given(
    invoice_id=st.integers(-(2**63), 2**63 - 1),
    customer_id=st.integers(-(2**63), 2**63 - 1),
    minor=st.integers(0, 99_999_999_999_999),
    currency=st.sampled_from(CURRENCIES),
)
def test_the_body_is_byte_for_byte_what_json_dumps_writes(
    invoice_id: int, customer_id: int, minor: int, currency: Currency
) -> None:
    money = Money.from_minor(minor, currency)
    expected = json.dumps(
        {
            "invoiceId": invoice_id,
            "customerId": customer_id,
            "amount": {"value": f"{money.value:f}", "currency": currency.code},
        },
        separators=(",", ":"),
    ).encode()
    assert encode_request(ChargeRequest(invoice_id, customer_id, money, "k")) == expected


def test_a_non_integer_id_is_refused_not_written() -> None:
    with pytest.raises(ValueError, match="Unknown format code"):
        encode_request(ChargeRequest('1, "x": 2', 2, Money.of("1", Currency.EUR), "k"))  # type: ignore[arg-type]


def test_the_worker_need_not_ask_the_http_adapter_for_refusals() -> None:
    from antaeus.payments.provider import Refusal, never_refuses

    provider = HttpPaymentProvider(HttpProviderSettings(base_url="http://127.0.0.1:9"))
    assert never_refuses(provider)
    assert provider.refusal(ChargeRequest(1, 2, Money.of("1", Currency.EUR), "k")) is None

    class Picky(HttpPaymentProvider):
        def refusal(self, request: ChargeRequest) -> Refusal | None:
            return Refusal("payment_method_missing", "no card")

    assert not never_refuses(Picky(HttpProviderSettings(base_url="http://127.0.0.1:9")))
