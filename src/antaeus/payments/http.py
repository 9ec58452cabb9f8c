"""The HTTP payment provider adapter (`../shared/payment-provider-protocol.md`, version 1.1).

`ANTAEUS_PAYMENT_PROVIDER_URL` selects it. One client session per process keeps
connections alive across calls. Every answer is read into one of the outcomes
of the protocol, and anything that is not the protocol is an unknown outcome:

    200 {"chargeId", "status": "charged"}           Charged (replayed per header)
    402 insufficient_funds                           Declined
    404 customer_not_found                           CustomerNotFoundError
    409 currency_mismatch                            CurrencyMismatchError
    409 idempotency_key_in_use + Retry-After         KeyInUseError
    422 idempotency_key_reused                       KeyReusedError
    400 invalid_request                              RequestRejectedError
    401 unauthorized                                 UnauthorizedError
    429 rate_limited + Retry-After                   RateLimitedError
    5xx, timeout, reset, HTML, an unknown error
    code, a 200 without a well-formed chargeId
    (1-255 printable characters), a trickle, ...    OutcomeUnknownError
    connection refused or not made in time          NotSentError (nothing sent)

Reconciliation (protocol 1.1, `find_charge`): `GET /v1/charges?idempotencyKey=K`

    200 {"status": "charged", "chargeId", ...}       ChargeFound (when the invoice and
                                                     amount, if given, are the lookup's)
    200 {"status": "declined"}, 404 no_charge        NothingCharged
    404 unknown_key, a 1.0 provider's 404/405,
    anything else, no answer                         CannotTell

Every value of an answer is bounded where it enters: `Retry-After` is clamped to
`retry_after_max` (`ANTAEUS_RETRY_AFTER_MAX_SECONDS`), a charge id must have the
documented shape. A hostile or broken provider can then cost an unknown
outcome, never a crash of the code that records the answers.

A call has a connect timeout, a read timeout (silence between bytes) and a
deadline for the whole call, so a provider that trickles bytes cannot hold a
worker. Answers are read up to `MAX_ANSWER_BYTES`.

Two client libraries are supported (`ANTAEUS_PAYMENT_PROVIDER_HTTP_CLIENT`):
aiohttp, the default because it costs about half the CPU per call
(`benchmarks/http_provider.py` measures both), and httpx.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any, Final, Literal, Protocol
from urllib.parse import urlencode

import aiohttp
import httpx

from antaeus.payments.provider import (
    CannotTell,
    Charged,
    ChargeFound,
    ChargeLookup,
    ChargeRequest,
    CurrencyMismatchError,
    CustomerNotFoundError,
    Declined,
    KeyInUseError,
    KeyReusedError,
    LookupResult,
    NothingCharged,
    NotSentError,
    OutcomeUnknownError,
    ProviderError,
    RateLimitedError,
    Refusal,
    RequestRejectedError,
    UnauthorizedError,
    refuses_nothing,
    valid_charge_id,
)
from antaeus.security import mask_url, scrub

_KEY: Final = re.compile(r"[\x20-\x7e]{1,255}")
MAX_ANSWER_BYTES: Final = 64 * 1024  # answers are asked for and read uncompressed
DEFAULT_RETRY_AFTER: Final = 1.0
DEFAULT_RETRY_AFTER_MAX: Final = 60.0
ClientKind = Literal["aiohttp", "httpx"]


class ProviderUnreachableError(Exception):
    """The provider's health endpoint did not answer `200 {"status": "ok"}`."""


@dataclass(frozen=True, slots=True)
class HttpProviderSettings:
    base_url: str
    api_key: str | None = None
    key_retention: timedelta = timedelta(hours=24)
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    timeout: float = 60.0
    max_connections: int = 200
    client: ClientKind = "aiohttp"
    retry_after_max: float = DEFAULT_RETRY_AFTER_MAX  # Retry-After is clamped to this


@dataclass(frozen=True, slots=True)
class RawAnswer:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes


class _AnswerTooLargeError(Exception):
    pass


class _Transport(Protocol):
    async def post(self, url: str, headers: dict[str, str], body: bytes) -> RawAnswer: ...

    async def get(self, url: str, headers: dict[str, str]) -> RawAnswer: ...

    async def aclose(self) -> None: ...


class _AiohttpTransport:
    def __init__(self, settings: HttpProviderSettings) -> None:
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # created lazily: a session belongs to the running event loop
        if self._session is None:
            s = self._settings
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=s.max_connections, limit_per_host=0),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=s.connect_timeout, sock_read=s.read_timeout
                ),
                skip_auto_headers=("User-Agent",),
                headers={"User-Agent": "antaeus", "Accept-Encoding": "identity"},
                auto_decompress=False,
            )
        return self._session

    async def _read(self, response: aiohttp.ClientResponse) -> RawAnswer:
        body = await response.content.read(MAX_ANSWER_BYTES + 1)
        if len(body) > MAX_ANSWER_BYTES:
            raise _AnswerTooLargeError
        # the body may come in pieces: read until the end or the limit
        while not response.content.at_eof():
            more = await response.content.read(MAX_ANSWER_BYTES + 1 - len(body))
            if not more:
                break
            body += more
            if len(body) > MAX_ANSWER_BYTES:
                raise _AnswerTooLargeError
        headers = {k.lower(): v for k, v in response.headers.items()}
        return RawAnswer(response.status, headers, body)

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> RawAnswer:
        async with self._open().post(
            url, data=body, headers=headers, allow_redirects=False
        ) as response:
            return await self._read(response)

    async def get(self, url: str, headers: dict[str, str]) -> RawAnswer:
        async with self._open().get(url, headers=headers, allow_redirects=False) as response:
            return await self._read(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _HttpxTransport:
    def __init__(self, settings: HttpProviderSettings) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=settings.connect_timeout,
                read=settings.read_timeout,
                write=settings.read_timeout,
                pool=None,
            ),
            limits=httpx.Limits(
                max_connections=settings.max_connections,
                max_keepalive_connections=settings.max_connections,
            ),
            headers={"User-Agent": "antaeus", "Accept-Encoding": "identity"},
        )

    async def _send(self, request: httpx.Request) -> RawAnswer:
        response = await self._client.send(request, stream=True)
        try:
            body = b""
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise _AnswerTooLargeError
        finally:
            await response.aclose()
        headers = {k.lower(): v for k, v in response.headers.items()}
        return RawAnswer(response.status_code, headers, body)

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> RawAnswer:
        return await self._send(
            self._client.build_request("POST", url, headers=headers, content=body)
        )

    async def get(self, url: str, headers: dict[str, str]) -> RawAnswer:
        return await self._send(self._client.build_request("GET", url, headers=headers))

    async def aclose(self) -> None:
        await self._client.aclose()


# Raised when no connection could be made: the request was never sent.
_NOT_SENT_ERRORS: Final = (
    aiohttp.ClientConnectorError,  # refused, DNS, TLS handshake
    aiohttp.ConnectionTimeoutError,  # no connection within the connect timeout
    httpx.ConnectError,
    httpx.ConnectTimeout,
)

# Everything a client library raises for a call that went wrong on the way:
# connection refused or reset, timeouts, protocol errors, a payload cut short.
_TRANSPORT_ERRORS: Final = (
    aiohttp.ClientError,
    httpx.HTTPError,
    httpx.StreamError,
    OSError,
    TimeoutError,
    asyncio.IncompleteReadError,
    _AnswerTooLargeError,
)


class HttpPaymentProvider:
    """A payment provider reached over HTTP, speaking protocol version 1."""

    deduplicates_keys = True

    def __init__(self, settings: HttpProviderSettings) -> None:
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.shown_url = mask_url(self.base_url)  # what logs and errors show: no password
        self._charges_url = f"{self.base_url}/v1/charges"
        self._auth = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self._transport: _Transport = (
            _HttpxTransport(settings) if settings.client == "httpx" else _AiohttpTransport(settings)
        )

    @property
    def key_retention(self) -> timedelta:
        return self.settings.key_retention

    def describe(self) -> str:
        return f"HTTP provider at {self.shown_url} ({self.settings.client})"

    @refuses_nothing
    def refusal(self, request: ChargeRequest) -> Refusal | None:
        return None  # charges any customer by Antaeus' own id

    async def find_charge(self, lookup: ChargeLookup) -> LookupResult:
        """Protocol 1.1: `GET /v1/charges?idempotencyKey=K`; anything else is CannotTell.

        `detail` says what was asked and answered (the path, never the base URL,
        which may hold a password).
        """
        key = lookup.idempotency_key
        asked = f"asked GET /v1/charges?idempotencyKey={key}"
        if not _KEY.fullmatch(key):
            return CannotTell(f"{asked}: not asked, the key is not 1..255 printable ASCII")
        url = f"{self._charges_url}?{urlencode({'idempotencyKey': key})}"
        try:
            async with asyncio.timeout(self.settings.timeout):
                answer = await self._transport.get(url, dict(self._auth))
        except _AnswerTooLargeError:
            return CannotTell(f"{asked}: the answer was longer than {MAX_ANSWER_BYTES} bytes")
        except TimeoutError:
            return CannotTell(f"{asked}: no complete answer in time")
        except _TRANSPORT_ERRORS as exc:
            why = scrub(f"{type(exc).__name__}: {exc}".rstrip(": "), self.base_url)
            return CannotTell(f"{asked}: no answer ({why})")
        return interpret_lookup(answer, lookup, asked)

    async def charge(self, request: ChargeRequest) -> Charged | Declined:
        if not _KEY.fullmatch(request.idempotency_key):
            raise RequestRejectedError("the idempotency key is not 1..255 printable ASCII")
        body = encode_request(request)
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": request.idempotency_key,
            **self._auth,
        }
        try:
            async with asyncio.timeout(self.settings.timeout):
                answer = await self._transport.post(self._charges_url, headers, body)
        except _AnswerTooLargeError:
            raise OutcomeUnknownError(
                f"the answer was longer than {MAX_ANSWER_BYTES} bytes"
            ) from None
        except _NOT_SENT_ERRORS as exc:
            raise NotSentError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        except TimeoutError:
            raise OutcomeUnknownError("no complete answer in time") from None
        except _TRANSPORT_ERRORS as exc:
            raise OutcomeUnknownError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        return interpret(answer, self.settings.retry_after_max)

    async def check(self) -> None:
        """Raise ProviderUnreachableError unless `GET /v1/health` answers 200 ok."""
        try:
            async with asyncio.timeout(self.settings.connect_timeout + self.settings.read_timeout):
                answer = await self._transport.get(f"{self.base_url}/v1/health", dict(self._auth))
        except (*_TRANSPORT_ERRORS, TimeoutError) as exc:
            detail = scrub(str(exc), self.base_url) or type(exc).__name__
            raise ProviderUnreachableError(f"{self.shown_url} does not answer: {detail}") from None
        parsed = _json_object(answer.body)
        if answer.status != 200 or parsed is None or parsed.get("status") != "ok":
            raise ProviderUnreachableError(
                f"{self.shown_url}/v1/health answered {answer.status} {_snippet(answer.body)}"
            )

    async def aclose(self) -> None:
        await self._transport.aclose()


def encode_request(request: ChargeRequest) -> bytes:
    """The request body; the amount is a decimal string, never a float.

    Written from a template (a fifth of `json.dumps`' cost per call): the ids are
    integers (`:d` refuses anything else), the amount is digits and a point, and the
    currency is an ISO 4217 code, so nothing in it needs JSON escaping. The same bytes
    as `json.dumps(..., separators=(",", ":"))` (a test holds them equal).
    """
    amount = request.amount
    return (
        f'{{"invoiceId":{request.invoice_id:d},"customerId":{request.customer_id:d},'
        f'"amount":{{"value":"{amount.value:f}","currency":"{amount.currency.code}"}}}}'
    ).encode()


def interpret(
    answer: RawAnswer, retry_after_max: float = DEFAULT_RETRY_AFTER_MAX
) -> Charged | Declined:
    """Read one answer of the protocol; raise the provider error it means.

    The body's `error` is authoritative and the status must agree with it;
    anything else is not the protocol and so an unknown outcome. A
    `Retry-After` is clamped to `retry_after_max` seconds.
    """
    status = answer.status
    body = _json_object(answer.body)
    replayed = answer.headers.get("idempotent-replayed", "").strip().lower() == "true"
    if body is None:
        raise OutcomeUnknownError(
            f"{status} with a body that is not the protocol: {_snippet(answer.body)}"
        )
    if status == 200:
        charge_id = body.get("chargeId")
        if (
            body.get("status") != "charged"
            or not valid_charge_id(charge_id)
            or "error" in body  # the error is authoritative: the status disagrees with it
        ):
            raise OutcomeUnknownError(
                f"200 without a well-formed charge id: {_snippet(answer.body)}"
            )
        assert isinstance(charge_id, str)
        return Charged(charge_id, replayed=replayed)
    error = body.get("error")
    expected = _ERRORS.get((status, error if isinstance(error, str) else ""))
    if expected is None:
        raise OutcomeUnknownError(f"{status} {error!r} is not an answer of the protocol")
    if expected is Declined:
        return Declined(replayed=replayed)
    if expected in (RateLimitedError, KeyInUseError):
        wait = retry_after(answer.headers.get("retry-after"), max_seconds=retry_after_max)
        raise expected(wait, str(error))
    message = body.get("message")
    raise expected(message if isinstance(message, str) and message else str(error))


_ERRORS: Final[dict[tuple[int, str], Any]] = {
    (402, "insufficient_funds"): Declined,
    (404, "customer_not_found"): CustomerNotFoundError,
    (409, "currency_mismatch"): CurrencyMismatchError,
    (409, "idempotency_key_in_use"): KeyInUseError,
    (422, "idempotency_key_reused"): KeyReusedError,
    (400, "invalid_request"): RequestRejectedError,
    (401, "unauthorized"): UnauthorizedError,
    (429, "rate_limited"): RateLimitedError,
}


def interpret_lookup(answer: RawAnswer, lookup: ChargeLookup, asked: str) -> LookupResult:
    """Read an answer to `GET /v1/charges?idempotencyKey=K` (protocol 1.1).

    Only the answers the protocol names settle anything: 200 `charged` with a
    well-formed charge id (and, when the provider says them, the lookup's
    invoice and amount) is ChargeFound; 200 `declined` and 404 `no_charge` are
    NothingCharged. Everything else, 404 `unknown_key` and whatever a 1.0
    provider answers included, is CannotTell: nothing is reconciled on a guess.
    """
    status = answer.status
    body = _json_object(answer.body)
    said = f"answered {status} {_snippet(answer.body, 200)}"
    if body is None:
        return CannotTell(f"{asked}; {said}: not protocol 1.1")
    error = body.get("error")
    if status == 200 and error is None:
        state = body.get("status")
        if state == "charged":
            charge_id = body.get("chargeId")
            if not valid_charge_id(charge_id):
                return CannotTell(f"{asked}; {said}: charged, without a well-formed charge id")
            assert isinstance(charge_id, str)
            mismatch = _lookup_mismatch(body, lookup)
            if mismatch:
                return CannotTell(f"{asked}; {said}: charged, but {mismatch}")
            return ChargeFound(charge_id, f"{asked}; answered 200 charged {charge_id}")
        if state == "declined":
            reason = body.get("reason")
            shown = reason if isinstance(reason, str) else "no reason given"
            return NothingCharged(f"{asked}; answered 200 declined ({shown[:64]!r})")
        return CannotTell(f"{asked}; {said}: not an answer of protocol 1.1")
    if status == 404 and error == "no_charge":
        return NothingCharged(f"{asked}; answered 404 no_charge: the key is known, nothing charged")
    if status == 404 and error == "unknown_key":
        return CannotTell(
            f"{asked}; answered 404 unknown_key: the provider does not know the key "
            "(never seen, or beyond its retention)"
        )
    if status in (404, 405, 501):
        return CannotTell(f"{asked}; {said}: the provider does not look up keys (protocol 1.0?)")
    return CannotTell(f"{asked}; {said}")


def _lookup_mismatch(body: dict[str, Any], lookup: ChargeLookup) -> str:
    """What in a `charged` lookup answer is not the lookup's invoice or amount ("" if none)."""
    invoice_id = body.get("invoiceId")
    if invoice_id is not None and (type(invoice_id) is not int or invoice_id != lookup.invoice_id):
        return f"for invoice {invoice_id!r}, not {lookup.invoice_id}"
    amount = body.get("amount")
    if amount is None:
        return ""
    expected = lookup.amount
    if not isinstance(amount, dict):
        return "with an amount that is not an object"
    value, currency = amount.get("value"), amount.get("currency")
    if currency != expected.currency.value:
        return f"in {currency!r}, not {expected.currency.value}"
    try:
        same = isinstance(value, str) and Decimal(value) == expected.value
    except ArithmeticError:
        same = False
    return "" if same else f"of {value!r}, not {expected.value:f}"


def retry_after(
    value: str | None,
    now: float | None = None,
    max_seconds: float = DEFAULT_RETRY_AFTER_MAX,
) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date).

    Always finite, between 0 and `max_seconds`: `1e300` or a date in year 9999
    waits `max_seconds`; what cannot be read waits `DEFAULT_RETRY_AFTER`.
    """
    if value is None:
        return min(DEFAULT_RETRY_AFTER, max_seconds)
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, OverflowError):
            return min(DEFAULT_RETRY_AFTER, max_seconds)
        if when.tzinfo is None:
            return min(DEFAULT_RETRY_AFTER, max_seconds)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return min(DEFAULT_RETRY_AFTER, max_seconds)
    return min(max(0.0, seconds), max_seconds)


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _snippet(body: bytes, limit: int = 120) -> str:
    text = body[:limit].decode("utf-8", "replace")
    return repr(text + ("…" if len(body) > limit else ""))


__all__ = [
    "HttpPaymentProvider",
    "HttpProviderSettings",
    "ProviderError",
    "ProviderUnreachableError",
    "RawAnswer",
    "encode_request",
    "interpret",
    "interpret_lookup",
    "retry_after",
]
