"""The Stripe adapter: one PaymentIntent per charge, through the official `stripe` library.

`ANTAEUS_PAYMENT_PROVIDER=stripe` selects it. A charge is one
`POST /v1/payment_intents` with `confirm=true`, `off_session=true`, the
customer's `customer` (cus_…) and `payment_method` (pm_…), `amount` in Stripe's
smallest unit of the currency (`stripe_rules.to_stripe`), the lower-case
`currency`, `metadata` {antaeus_invoice, antaeus_attempt, antaeus_key} and the
attempt's idempotency key as Stripe's `Idempotency-Key`. The library's own
retries are off (`max_network_retries=0`): Antaeus repeats with the same key
itself, as its policy decides. Stripe's answer maps onto the protocol's outcomes:

    PaymentIntent succeeded                       Charged(PaymentIntent id), replayed
                                                  per `Idempotent-Replayed`
    PaymentIntent requires_action                 AuthenticationRequiredError
    402 card_error, decline insufficient_funds    Declined
    402 card_error authentication_required        AuthenticationRequiredError
    402 card_error, any other decline             CardDeclinedError(decline code)
    400/404 resource_missing on customer or
      payment_method                              CustomerNotFoundError
    400/404 other invalid_request_error           RequestRejectedError
    400 idempotency_error                         KeyReusedError
    409 (idempotency_key_in_use, lock_timeout)    KeyInUseError(Retry-After or 1 s)
    429 (rate_limit, lock_timeout)                RateLimitedError(Retry-After or 1 s)
    401 authentication / 403 permission error     UnauthorizedError
    5xx, a timeout, a dropped connection, an
      unreadable answer, any other PaymentIntent
      status (processing, requires_capture, …)    OutcomeUnknownError
    no connection could be made                   NotSentError

A 200 PaymentIntent must be the one asked for (its `metadata.antaeus_key` is
the key, its amount and currency the request's); anything else is unknown.

`find_charge` lists the customer's PaymentIntents created since the attempt
opened (the list endpoint is consistent at once; Search is not) and matches
`metadata.antaeus_key`.

The API key is a secret: `describe()`, errors and logs show it masked
(`sk_test_****wxyz`).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, Literal

import aiohttp
import httpx
import stripe

from antaeus.payments.http import DEFAULT_RETRY_AFTER_MAX, retry_after
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
    LookupResult,
    NothingCharged,
    NotSentError,
    OutcomeUnknownError,
    RateLimitedError,
    Refusal,
    RequestRejectedError,
    UnauthorizedError,
    valid_charge_id,
)
from antaeus.payments.stripe_account import DEFAULT_API_BASE, mask_key, stripe_key_problem
from antaeus.payments.stripe_rules import NotChargeable, to_stripe

#: Stripe keeps an idempotency key (and its answer) for at least 24 hours.
STRIPE_KEY_RETENTION: Final = timedelta(hours=24)
#: How far before `attempt_open_since` find_charge looks: clocks of two systems differ.
CLOCK_SKEW: Final = timedelta(minutes=5)
LIST_PAGE: Final = 100
MAX_LIST_PAGES: Final = 50  # 5,000 PaymentIntents of one customer since the attempt opened
ClientKind = Literal["aiohttp", "httpx"]
#: PaymentIntent statuses in which no money moved and none will under this PaymentIntent.
_NOT_CHARGED: Final = frozenset({"canceled", "requires_payment_method"})


@dataclass(frozen=True, slots=True)
class StripeProviderSettings:
    api_key: str
    api_base: str = DEFAULT_API_BASE
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    timeout: float = 60.0
    max_connections: int = 200
    client: ClientKind = "aiohttp"  # several times less CPU per call than httpx (benchmark)
    retry_after_max: float = DEFAULT_RETRY_AFTER_MAX

    def __repr__(self) -> str:  # never the key
        return (
            f"StripeProviderSettings(api_key={mask_key(self.api_key)!r}, "
            f"api_base={self.api_base!r}, client={self.client!r})"
        )


class _HTTPXClient(stripe.HTTPXClient):
    """The library's httpx client with Antaeus's timeouts and connection pool."""

    def __init__(self, settings: StripeProviderSettings) -> None:
        timeout = httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.read_timeout,
            pool=None,
        )
        super().__init__(timeout=timeout)
        limits = httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=settings.max_connections,
        )
        # the library's own AsyncClient (never opened) keeps 20 connections alive: too few
        # for a worker with hundreds of calls in flight
        self._client_async = httpx.AsyncClient(
            verify=ssl.create_default_context(cafile=stripe.ca_bundle_path), limits=limits
        )

    def _get_request_args_kwargs(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any
    ) -> list[Any]:
        # the library hands httpx its form-encoded body as `data=` (a str), which httpx
        # deprecates for raw content (a DeprecationWarning per call): send it as `content=`
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        data = kwargs.pop("data", None)
        if data:
            kwargs["content"] = data.encode() if isinstance(data, str) else data
        return [args, kwargs]


def make_http_client(settings: StripeProviderSettings) -> stripe.HTTPClient:
    if settings.client == "httpx":
        return _HTTPXClient(settings)
    # created inside the running loop (first call): an aiohttp connector belongs to it
    return stripe.AIOHTTPClient(
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=settings.connect_timeout, sock_read=settings.read_timeout
        ),
        connector=aiohttp.TCPConnector(limit=settings.max_connections, limit_per_host=0),
    )


# raised by the transports when no connection could be made: nothing was sent
_NOT_SENT: Final = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
    httpx.ConnectError,
    httpx.ConnectTimeout,
    ConnectionRefusedError,
)
# what a transport may raise past the library (aiohttp reads the body outside its guard)
_TRANSPORT: Final = (
    aiohttp.ClientError,
    httpx.HTTPError,
    httpx.StreamError,
    OSError,
    asyncio.IncompleteReadError,
)


class StripePaymentProvider:
    """Charges saved cards of Stripe customers, off session."""

    deduplicates_keys = True

    def __init__(self, settings: StripeProviderSettings) -> None:
        problem = stripe_key_problem(settings.api_key)
        if problem is not None:
            raise ValueError(f"the Stripe API key {mask_key(settings.api_key)}: {problem}")
        self.settings = settings
        self.shown_key = mask_key(settings.api_key)
        self._client: stripe.StripeClient | None = None
        self._http: stripe.HTTPClient | None = None

    @property
    def key_retention(self) -> timedelta:
        return STRIPE_KEY_RETENTION

    def describe(self) -> str:
        s = self.settings
        return f"Stripe at {s.api_base} (key {self.shown_key}, {s.client})"

    def __repr__(self) -> str:
        return f"<StripePaymentProvider {self.describe()}>"

    def _open(self) -> stripe.StripeClient:
        if self._client is None:
            self._http = make_http_client(self.settings)
            self._client = stripe.StripeClient(
                self.settings.api_key,
                base_addresses={"api": self.settings.api_base},
                max_network_retries=0,
                http_client=self._http,
            )
        return self._client

    # -- before a call ----------------------------------------------------------------

    def refusal(self, request: ChargeRequest) -> Refusal | None:
        missing = [
            name
            for name, value in (
                ("providerCustomerId", request.provider_customer_id),
                ("providerPaymentMethodId", request.provider_payment_method_id),
            )
            if not value
        ]
        if missing:
            return Refusal(
                "payment_method_missing",
                f"Stripe charges a customer's saved payment method: customer "
                f"{request.customer_id} has no {' and no '.join(missing)}",
            )
        try:
            to_stripe(request.amount.minor, _code(request), _decimals(request))
        except NotChargeable as exc:
            return Refusal("amount_not_chargeable", str(exc))
        return None

    # -- a charge -----------------------------------------------------------------------

    def params(self, request: ChargeRequest) -> dict[str, Any]:
        """The PaymentIntent's parameters (NotChargeable if Stripe would refuse the amount)."""
        amount = to_stripe(request.amount.minor, _code(request), _decimals(request))
        return {
            "amount": amount.amount,
            "currency": amount.currency,
            "customer": request.provider_customer_id or "",
            "payment_method": request.provider_payment_method_id or "",
            "confirm": True,
            "off_session": True,
            "metadata": {
                "antaeus_invoice": str(request.invoice_id),
                "antaeus_attempt": str(request.attempt),
                "antaeus_key": request.idempotency_key,
            },
        }

    async def charge(self, request: ChargeRequest) -> Charged | Declined:
        refused = self.refusal(request)
        if refused is not None:  # the worker asks first; never send what Stripe refuses
            raise RequestRejectedError(refused.detail)
        params = self.params(request)
        client = self._open()
        try:
            async with asyncio.timeout(self.settings.timeout):
                intent = await client.v1.payment_intents.create_async(
                    params,  # type: ignore[arg-type]
                    options={"idempotency_key": request.idempotency_key},
                )
        except stripe.StripeError as exc:
            return self._stripe_error(exc)
        except TimeoutError:
            raise OutcomeUnknownError("no complete answer from Stripe in time") from None
        except _NOT_SENT as exc:
            raise NotSentError(self._scrub(f"{type(exc).__name__}: {exc}")) from None
        except _TRANSPORT as exc:
            raise OutcomeUnknownError(self._scrub(f"{type(exc).__name__}: {exc}")) from None
        return self._intent(_data(intent), params, _replayed(intent))

    def _intent(
        self, intent: Mapping[str, Any], params: Mapping[str, Any], replayed: bool
    ) -> Charged | Declined:
        pid = intent.get("id")
        metadata = intent.get("metadata") or {}
        if (
            not valid_charge_id(pid)
            or not isinstance(metadata, Mapping)
            or metadata.get("antaeus_key") != params["metadata"]["antaeus_key"]
            or intent.get("amount") != params["amount"]
            or intent.get("currency") != params["currency"]
        ):
            raise OutcomeUnknownError(
                f"Stripe answered a PaymentIntent that is not the one asked for: {_brief(intent)}"
            )
        assert isinstance(pid, str)
        status = intent.get("status")
        if status == "succeeded":
            return Charged(pid, replayed=replayed)
        if status == "requires_action":
            raise AuthenticationRequiredError(
                f"PaymentIntent {pid} requires_action: the customer must authenticate"
            )
        if status == "requires_payment_method":
            error = intent.get("last_payment_error") or {}
            if isinstance(error, Mapping) and error:
                return self._card_error(error, replayed)
        raise OutcomeUnknownError(f"PaymentIntent {pid} is {status!r}, not succeeded")

    def _card_error(self, error: Mapping[str, Any], replayed: bool) -> Declined:
        code = error.get("code")
        decline = error.get("decline_code") or code or "card_declined"
        message = self._scrub(str(error.get("message") or ""))
        if decline == "insufficient_funds":
            return Declined(replayed=replayed)
        if code == "authentication_required" or decline == "authentication_required":
            raise AuthenticationRequiredError(message or "authentication_required")
        raise CardDeclinedError(str(decline), message)

    def _stripe_error(self, exc: stripe.StripeError) -> Declined:
        status = exc.http_status
        body = exc.json_body if isinstance(exc.json_body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        assert isinstance(error, dict)
        kind = error.get("type")
        code = error.get("code") or exc.code
        message = self._scrub(str(error.get("message") or exc.user_message or type(exc).__name__))
        headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
        replayed = headers.get("idempotent-replayed", "").strip().lower() == "true"
        if isinstance(exc, stripe.APIConnectionError):
            cause = exc.__cause__
            if isinstance(cause, _NOT_SENT):
                raise NotSentError(f"no connection to Stripe: {type(cause).__name__}") from None
            raise OutcomeUnknownError(
                f"the connection to Stripe failed: {type(cause).__name__ if cause else message}"
            ) from None
        if status == 402 and kind == "card_error":
            return self._card_error(error, replayed)
        if status in (401, 403):
            raise UnauthorizedError(f"{status} {kind or ''}: {message}".replace("  ", " "))
        if status == 429:
            wait = retry_after(
                headers.get("retry-after"), max_seconds=self.settings.retry_after_max
            )
            raise RateLimitedError(wait, f"429 {code or 'rate_limit'}: {message}")
        if status == 409:
            wait = retry_after(
                headers.get("retry-after"), max_seconds=self.settings.retry_after_max
            )
            raise KeyInUseError(wait, f"409 {code or 'conflict'}: {message}")
        if status in (400, 404) and kind == "idempotency_error":
            raise KeyReusedError(f"idempotency_error: {message}")
        if status in (400, 404) and kind == "invalid_request_error":
            if code == "resource_missing" and error.get("param") in ("customer", "payment_method"):
                raise CustomerNotFoundError(f"resource_missing ({error.get('param')}): {message}")
            raise RequestRejectedError(f"{status} {code or kind}: {message}")
        raise OutcomeUnknownError(f"Stripe answered {status} {kind or ''} {code or ''}: {message}")

    def _scrub(self, text: str) -> str:
        key = self.settings.api_key
        return text.replace(key, self.shown_key) if key else text

    # -- reconciliation -----------------------------------------------------------------

    async def find_charge(self, lookup: ChargeLookup) -> LookupResult:
        customer = lookup.provider_customer_id
        key = lookup.idempotency_key
        if not customer:
            return CannotTell(
                f"asked nothing: customer {lookup.customer_id} has no providerCustomerId, "
                "so its Stripe PaymentIntents cannot be listed"
            )
        since = lookup.attempt_open_since - CLOCK_SKEW
        asked = (
            f"listed PaymentIntents of {customer} created since "
            f"{since.isoformat(timespec='seconds')} for metadata.antaeus_key={key}"
        )
        matches: list[Mapping[str, Any]] = []
        seen = 0
        params: dict[str, Any] = {
            "customer": customer,
            "created": {"gte": int(since.timestamp())},
            "limit": LIST_PAGE,
        }
        client = self._open()
        try:
            for _ in range(MAX_LIST_PAGES):
                async with asyncio.timeout(self.settings.timeout):
                    page = await client.v1.payment_intents.list_async(params)  # type: ignore[arg-type]
                listed = _data(page)
                data = [pi for pi in listed.get("data") or () if isinstance(pi, Mapping)]
                seen += len(data)
                matches.extend(pi for pi in data if _metadata(pi).get("antaeus_key") == key)
                if listed.get("has_more") is not True or not data:
                    break
                params["starting_after"] = data[-1].get("id")
            else:
                return CannotTell(f"{asked}: more than {seen} PaymentIntents, stopped listing")
        except stripe.StripeError as exc:
            return CannotTell(f"{asked}: Stripe answered {self._error_text(exc)}")
        except (TimeoutError, *_TRANSPORT) as exc:
            return CannotTell(
                f"{asked}: {self._scrub(type(exc).__name__ + ' ' + str(exc))}".strip()
            )
        try:
            amount = to_stripe(lookup.amount.minor, _code(lookup), _decimals(lookup))
            expected: tuple[int, str] | None = (amount.amount, amount.currency)
        except NotChargeable:
            expected = None
        return _verdict(asked, seen, matches, expected)

    def _error_text(self, exc: stripe.StripeError) -> str:
        body = exc.json_body if isinstance(exc.json_body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        assert isinstance(error, dict)
        code = error.get("code") or error.get("type") or type(exc).__name__
        status = exc.http_status if exc.http_status is not None else "no answer"
        return self._scrub(f"{status} {code}")

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close_async()  # type: ignore[no-untyped-call]
            self._http = None
            self._client = None


def _verdict(
    asked: str, seen: int, matches: list[Mapping[str, Any]], expected: tuple[int, str] | None
) -> LookupResult:
    """What the PaymentIntents carrying the key say: one succeeded (and the rest never
    charged) is the charge; none, or only ones that never charged, is nothing charged;
    anything else (two succeeded, one still processing, another amount) is for a person."""
    answered = f"{seen} PaymentIntent{'s' if seen != 1 else ''}"
    if not matches:
        return NothingCharged(f"{asked}: {answered}, none with the key")
    statuses = "; ".join(
        f"{pi.get('id')} {pi.get('status')} {pi.get('amount')} {pi.get('currency')}"
        for pi in matches
    )
    succeeded = [pi for pi in matches if pi.get("status") == "succeeded"]
    others_uncharged = all(
        pi.get("status") in _NOT_CHARGED for pi in matches if pi.get("status") != "succeeded"
    )
    if len(succeeded) == 1 and others_uncharged:
        pi = succeeded[0]
        pid = pi.get("id")
        if expected is not None and (pi.get("amount"), pi.get("currency")) != expected:
            return CannotTell(f"{asked}: {answered}; {statuses}: not the amount asked for")
        if valid_charge_id(pid):
            return ChargeFound(str(pid), f"{asked}: {answered}; {statuses}")
    if not succeeded and others_uncharged:
        return NothingCharged(f"{asked}: {answered}; {statuses} (nothing charged)")
    return CannotTell(f"{asked}: {answered}; {statuses}")


def _code(request: ChargeRequest | ChargeLookup) -> str:
    return request.amount.currency.code


def _decimals(request: ChargeRequest | ChargeLookup) -> int:
    """The ISO minor units Antaeus's Money holds the amount in."""
    return request.amount.currency.minor_units


def _data(obj: object) -> Mapping[str, Any]:
    """The JSON object Stripe answered (what the library read it from), exactly."""
    response = getattr(obj, "last_response", None)
    data = getattr(response, "data", None)
    return data if isinstance(data, Mapping) else {}


def _metadata(intent: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = intent.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _replayed(intent: Any) -> bool:
    response = getattr(intent, "last_response", None)
    headers = getattr(response, "headers", None) or {}
    for name, value in headers.items():
        if name.lower() == "idempotent-replayed":
            return str(value).strip().lower() == "true"
    return False


def _brief(intent: Mapping[str, Any]) -> str:
    fields = ("id", "status", "amount", "currency")
    return ", ".join(f"{f}={intent.get(f)!r}" for f in fields)[:200]


__all__ = [
    "CLOCK_SKEW",
    "DEFAULT_API_BASE",
    "STRIPE_KEY_RETENTION",
    "StripePaymentProvider",
    "StripeProviderSettings",
    "mask_key",
]
