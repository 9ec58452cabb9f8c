"""A local fake of the part of Stripe's API that Antaeus uses, for tests, demos and benchmarks.

`antaeus provider serve --stripe` runs it; tests start it in-process
(`FakeStripe` is a plain ASGI app). It reproduces what Stripe documents for the
calls Antaeus makes, in Stripe's form encoding (`metadata[antaeus_key]=…`) and
with Stripe's objects and error objects (`{"error": {"type", "code",
"decline_code", "message", "param", "payment_intent"}}`):

    POST /v1/customers                          create a customer (metadata, name, email)
    GET  /v1/customers/{id}                     a customer, or 404 resource_missing
    POST /v1/customers/{id}                     update its metadata / name / email
    POST /v1/payment_methods/{id}/attach        attach a test payment method (pm_card_visa, …)
                                                to a customer: answers a new pm_… of that card
    POST /v1/payment_intents                    create (and with confirm=true, confirm) one
    GET  /v1/payment_intents                    list: customer, created[gte|gt|lte|lt], limit,
                                                starting_after; newest first
    GET  /v1/payment_intents/{id}               one PaymentIntent
    GET  /_fake/stats                           counts of answers (the fake's own endpoint)
    GET  /_fake/ledger                          succeeded PaymentIntents with what each is
                                                worth ("value": "5.00" for 500 ugx), by the
                                                fake's own reading of Stripe's currency page

Every `/v1` request needs `Authorization: Bearer <key>`: the key given
(`api_key`), or without one any test-mode key (`sk_test_…`, `rk_test_…`);
otherwise 401. A `read_only_key` may read but not write (403 permission_error).

Idempotency, as Stripe documents it: a POST (creating a customer or a
PaymentIntent, attaching a payment method) with an `Idempotency-Key` that
started executing is remembered for `key_retention` seconds (Stripe: 24 h),
its answer (a 200 or a 402 card error) replayed with `Idempotent-Replayed:
true`; other parameters (or another endpoint) under the key answer 400
`idempotency_error`; a request while another with the key is executing answers
409 `idempotency_key_in_use`. Requests refused before executing (a malformed
parameter, an unknown customer or payment method, an amount Stripe refuses, a
fault injected before executing) are not remembered. A key longer than 255
characters is a 400.

Test payment methods follow Stripe's documented test cards:

    pm_card_visa, pm_card_mastercard, …           succeeds
    pm_card_chargeDeclinedInsufficientFunds     402 card_declined / insufficient_funds
    pm_card_chargeDeclined                      402 card_declined / generic_decline
    pm_card_chargeDeclinedExpiredCard           402 expired_card
    pm_card_chargeDeclinedIncorrectCvc          402 incorrect_cvc
    pm_card_chargeDeclinedProcessingError       402 processing_error
    pm_card_chargeDeclinedLostCard / StolenCard / Fraudulent   402 card_declined / lost_card …
    pm_card_authenticationRequired              402 authentication_required (an off-session
                                                charge of a card that always asks for 3-D
                                                Secure); the PaymentIntent is
                                                requires_payment_method
    pm_card_threeDSecureRequired                200 PaymentIntent requires_action (the fake
                                                answers this on-session shape off session too,
                                                so that answer can be tested)

A card error creates the PaymentIntent (status requires_payment_method, with
`last_payment_error`) and names it in the error's `payment_intent`, as Stripe
does. A customer whose metadata has `fake_balance` (minor units; the fake's own
extension, Stripe has no balances) declines with insufficient_funds any
succeeding charge beyond it, and is debited otherwise: the provider contract
suite's balance cases run against it.

Amounts follow Stripe's "Supported currencies" page as the fake reads it itself
(never through the adapter's `stripe_rules`): zero-decimal, two-decimal ISK
and UGX divisible by 100, three-decimal with a last 0, the page's minimums, and
its digit maximums (12 IDR, 10 COP, 9 INR, else 8; 9 for `pm_card_amex`).

Faults (rates between 0 and 1, drawn from a generator seeded with `seed`):
`server_error_rate` answers 500/503 `api_error` before anything happens (not
remembered); `lost_answer_rate` executes the request (remembered: a replay
reveals it), then answers 500 or drops the connection after the status line;
`rate_limit_rate` answers 429 `rate_limit` (`Retry-After: 1`) before anything
happens. `latency_ms` is added to every `/v1` request. `state` (a JSON file)
keeps customers, payment methods, PaymentIntents and keys across restarts.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl

from starlette.types import Receive, Scope, Send

from antaeus.simulators.server import (
    Faults,
    check_rate,
    drop_answer,
    lifespan,
    read_body,
    respond,
)

MAX_BODY: Final = 64 * 1024
MAX_KEY_LENGTH: Final = 255
STRIPE_VERSION: Final = b"2025-01-01.fake"

#: Stripe's test payment methods: what confirming a PaymentIntent with each answers.
#: (error code, decline code); None: succeeds; "requires_action": answers that status.
SUCCEEDING: Final = frozenset(
    {
        "pm_card_visa",
        "pm_card_visa_debit",
        "pm_card_mastercard",
        "pm_card_amex",
        "pm_card_discover",
        "pm_card_jcb",
        "pm_card_unionpay",
        "pm_card_bypassPending",
    }
)
DECLINES: Final[dict[str, tuple[str, str]]] = {
    "pm_card_chargeDeclined": ("card_declined", "generic_decline"),
    "pm_card_chargeDeclinedInsufficientFunds": ("card_declined", "insufficient_funds"),
    "pm_card_chargeDeclinedExpiredCard": ("expired_card", "expired_card"),
    "pm_card_chargeDeclinedIncorrectCvc": ("incorrect_cvc", "incorrect_cvc"),
    "pm_card_chargeDeclinedProcessingError": ("processing_error", "processing_error"),
    "pm_card_chargeDeclinedLostCard": ("card_declined", "lost_card"),
    "pm_card_chargeDeclinedStolenCard": ("card_declined", "stolen_card"),
    "pm_card_chargeDeclinedFraudulent": ("card_declined", "fraudulent"),
    "pm_card_authenticationRequired": ("authentication_required", "authentication_required"),
}
REQUIRES_ACTION: Final = frozenset({"pm_card_threeDSecureRequired"})
TEST_PAYMENT_METHODS: Final = SUCCEEDING | DECLINES.keys() | REQUIRES_ACTION
_DECLINE_MESSAGES: Final = {
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "Your card's security code is incorrect.",
    "processing_error": "An error occurred while processing your card. Try again in a little bit.",
    "authentication_required": "Your card was declined. This transaction requires authentication.",
}


class _Refused(Exception):  # noqa: N818 (carries the answer)
    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", ""))
        self.status = status
        self.error = error


def _invalid(message: str, param: str | None = None, code: str | None = None) -> _Refused:
    error: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if param is not None:
        error["param"] = param
    if code is not None:
        error["code"] = code
    return _Refused(400, error)


def _missing(kind: str, value: str, param: str) -> _Refused:
    refused = _invalid(f"No such {kind}: '{value}'", param, "resource_missing")
    refused.status = 404 if param == "id" else 400
    return refused


def decode_form(body: bytes) -> dict[str, Any]:
    """Stripe's form encoding: `a=1&metadata[k]=v` -> {"a": "1", "metadata": {"k": "v"}}."""
    out: dict[str, Any] = {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid("The request body is not UTF-8.") from None
    for name, value in parse_qsl(text, keep_blank_values=True):
        if "[" in name and name.endswith("]"):
            outer, _, inner = name[:-1].partition("[")
            nested = out.setdefault(outer, {})
            if not isinstance(nested, dict) or "[" in inner:
                raise _invalid(f"Invalid parameter: {name}", name)
            nested[inner] = value
        else:
            out[name] = value
    return out


def _int(params: Mapping[str, Any], name: str, *, required: bool = False) -> int | None:
    value = params.get(name)
    if value is None:
        if required:
            raise _invalid(f"Missing required param: {name}.", name, "parameter_missing")
        return None
    if not isinstance(value, str) or not value.isdigit() or len(value) > 18:
        raise _invalid(f"Invalid integer: {str(value)[:40]}", name, "parameter_invalid_integer")
    return int(value)


# -- currencies ------------------------------------------------------------------------
#
# The fake's own reading of Stripe's "Supported currencies" page
# (https://docs.stripe.com/currencies), written apart from the adapter's table
# (`antaeus.payments.stripe_rules`, which this module must never import): the fake
# checks the adapter, so a wrong row there must show here as a refusal or as a
# wrong value in `ledger()`. Amounts are Stripe's `amount` integers; values are
# what they are worth in the currency, as the page writes them.

#: "Supported presentment currencies" (card payments), lower case as requests give them.
CURRENCIES: Final = frozenset(
    """
    aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd
    bwp byn bzd cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp
    gbp gel gip gmd gnf gtq gyd hkd hnl htg huf idr ils inr isk jmd jod jpy kes kgs khr
    kmf krw kwd kyd kzt lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mur mvr mwk mxn
    myr mzn nad ngn nio nok npr nzd omr pab pen pgk php pkr pln pyg qar ron rsd rub rwf
    sar sbd scr sek sgd shp sle sos srd std szl thb tjs tnd top try ttd twd tzs uah ugx
    usd uyu uzs vnd vuv wst xaf xcd xof xpf yer zar zmw
    """.split()  # noqa: SIM905 (the list as a reader checks it against the page)
)
#: "the charge and the amount are the same, without requiring multiplication" (the page's
#: zero-decimal list, less UGX: its special case says "to charge 5 UGX, provide 500")
NO_DECIMALS: Final = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf vnd vuv xaf xof xpf".split()  # noqa: SIM905 (as listed)
)
#: "the least-significant (last) digit to be 0 ... 5.124 KWD must be rounded to 5120 or 5130"
THREE_DECIMALS: Final = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
#: "ISK [UGX] transitioned to a zero-decimal currency, but backward compatibility requires
#: you to represent it as a two-decimal value, where the decimal amount is always 00"
ALWAYS_00: Final = frozenset({"isk", "ugx"})
#: "Use these minimum amounts by currency", as the page writes them
MINIMUMS: Final = {
    line.split()[1].lower(): Decimal(line.split()[0])
    for line in """
    0.50 USD; 2.00 AED; 0.50 ARS; 0.50 AUD; 0.50 BRL; 0.50 CAD; 0.50 CHF; 0.50 COP;
    15.00 CZK; 2.50 DKK; 0.50 EUR; 0.30 GBP; 4.00 HKD; 175.00 HUF; 0.50 IDR; 0.50 ILS;
    0.50 INR; 50 JPY; 50 KRW; 10 MXN; 2.00 MYR; 3.00 NOK; 0.50 NZD; 0.50 PHP; 2.00 PLN;
    2.00 RON; 0.50 RUB; 3.00 SEK; 0.50 SGD; 10 THB; 0.50 ZAR
    """.split(";")  # noqa: SIM905 (the page's list, as it writes it)
}
#: "The amount value supports up to: 12 digits for IDR ... 10 digits for COP ... 9 digits
#: for INR ... 8 digits for all other currencies"
DIGITS: Final = {"idr": 12, "cop": 10, "inr": 9}
#: "9 digits for American Express in most currencies"
AMEX_DIGITS: Final = 9


def exponent(currency: str) -> int:
    """How many decimals the `amount` of a charge in `currency` has, by the page."""
    if currency in NO_DECIMALS:
        return 0
    if currency in THREE_DECIMALS:
        return 3
    return 2  # "Currencies are two-decimal currencies unless otherwise specified"


def value_of(amount: int, currency: str) -> Decimal:
    """What a Stripe `amount` is worth: `value_of(500, "ugx") == Decimal("5.00")`."""
    return Decimal(amount).scaleb(-exponent(currency))


def amount_problem(amount: int, currency: str, card: str | None = None) -> _Refused | None:
    """What Stripe answers to an amount it refuses (None: it takes it)."""
    code = currency.upper()
    if currency in THREE_DECIMALS and amount % 10:
        return _invalid(
            f"Invalid amount: {code} amounts must be divisible by 10 (the last digit 0).",
            "amount",
            "invalid_amount",
        )
    if currency in ALWAYS_00 and amount % 100:
        return _invalid(
            f"Invalid amount. Currency {code} has become effectively zero-decimal and charged "
            "amounts must be evenly divisible by 100. See "
            "https://stripe.com/docs/currencies#special-cases for more information.",
            "amount",
            "invalid_charge_amount_no_decimal_compatible",
        )
    minimum = MINIMUMS.get(currency)
    if minimum is not None and value_of(amount, currency) < minimum:
        return _invalid(f"Amount must be at least {minimum} {code}.", "amount", "amount_too_small")
    digits = AMEX_DIGITS if card == "pm_card_amex" else DIGITS.get(currency, 8)
    if len(str(amount)) > digits:
        return _invalid(
            f"Amount must be no more than {'9' * digits}.", "amount", "amount_too_large"
        )
    return None


@dataclass
class _Key:
    fingerprint: str
    created: float
    status: int
    body: bytes


@dataclass
class FakeStripeState:
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    payment_methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)  # in creation order
    keys: dict[str, _Key] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "customers": self.customers,
            "paymentMethods": self.payment_methods,
            "paymentIntents": list(self.intents.values()),
            "keys": {
                k: {
                    "fingerprint": v.fingerprint,
                    "created": v.created,
                    "status": v.status,
                    "body": v.body.decode(),
                }
                for k, v in self.keys.items()
            },
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> FakeStripeState:
        return cls(
            customers=dict(doc.get("customers", {})),
            payment_methods=dict(doc.get("paymentMethods", {})),
            intents={pi["id"]: pi for pi in doc.get("paymentIntents", [])},
            keys={
                k: _Key(v["fingerprint"], v["created"], v["status"], v["body"].encode())
                for k, v in doc.get("keys", {}).items()
            },
        )


@dataclass
class FakeStripeStats:
    created: int = 0
    succeeded: int = 0
    declined: int = 0
    replayed: int = 0
    idempotency_errors: int = 0
    in_use: int = 0
    server_errors: int = 0
    lost_answers: int = 0
    rate_limited: int = 0
    unauthorized: int = 0
    invalid: int = 0
    lists: int = 0


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(18).replace('-', 'x').replace('_', 'y')[:24]}"


class FakeStripe:
    """The ASGI app of the fake Stripe."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        read_only_key: str | None = None,
        key_retention: float = 86_400.0,
        latency_ms: float = 0.0,
        server_error_rate: float = 0.0,
        lost_answer_rate: float = 0.0,
        rate_limit_rate: float = 0.0,
        seed: int = 0,
        state: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not latency_ms >= 0 or not key_retention > 0:
            raise ValueError("latency_ms must be 0 or more and key_retention more than 0")
        self.api_key = api_key
        self.read_only_key = read_only_key
        self.key_retention = key_retention
        self.latency = latency_ms / 1000.0
        self.server_error_rate = check_rate("server_error_rate", server_error_rate)
        self.lost_answer_rate = check_rate("lost_answer_rate", lost_answer_rate)
        self.rate_limit_rate = check_rate("rate_limit_rate", rate_limit_rate)
        self._rng = Faults(seed)
        self._clock = clock
        self._state_path = Path(state) if state and state != ":memory:" else None
        self.state = self._load()
        self.stats = FakeStripeStats()
        self._in_flight: set[str] = set()

    # -- state --------------------------------------------------------------------------

    def _load(self) -> FakeStripeState:
        if self._state_path is None or not self._state_path.exists():
            return FakeStripeState()
        return FakeStripeState.from_json(json.loads(self._state_path.read_text()))

    def _save(self) -> None:
        if self._state_path is None:
            return
        directory = self._state_path.parent
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".fake-stripe-")
        with os.fdopen(fd, "w") as handle:
            json.dump(self.state.to_json(), handle)
        os.replace(tmp, self._state_path)

    def add_customer(
        self,
        metadata: Mapping[str, str] | None = None,
        *,
        customer_id: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        customer: dict[str, Any] = {
            "id": customer_id or _new_id("cus"),
            "object": "customer",
            "created": int(self._clock()),
            "livemode": False,
            "name": name,
            "email": None,
            "metadata": dict(metadata or {}),
            "invoice_settings": {"default_payment_method": None},
        }
        self.state.customers[customer["id"]] = customer
        self._save()
        return customer

    def attach(self, payment_method: str, customer: str) -> dict[str, Any]:
        """Attach a test payment method (a new pm_… of that card) or an existing one."""
        if customer not in self.state.customers:
            raise _missing("customer", customer, "customer")
        if payment_method in TEST_PAYMENT_METHODS:
            pm: dict[str, Any] = {
                "id": _new_id("pm"),
                "object": "payment_method",
                "type": "card",
                "created": int(self._clock()),
                "livemode": False,
                "customer": customer,
                "card": {"test_card": payment_method},
            }
        elif payment_method in self.state.payment_methods:
            pm = self.state.payment_methods[payment_method]
            if pm["customer"] not in (None, customer):
                raise _invalid(
                    "The payment method you provided has already been attached to a customer.",
                    "payment_method",
                )
            pm["customer"] = customer
        else:
            raise _missing("PaymentMethod", payment_method, "payment_method")
        self.state.payment_methods[pm["id"]] = pm
        self._save()
        return pm

    def ledger(self) -> list[dict[str, Any]]:
        """Every succeeded PaymentIntent, with what its amount is worth by the fake's own
        reading of Stripe's currency rules (`value`, a decimal string: "5.00" for 500 ugx)."""
        return [
            {
                "id": pi["id"],
                "amount": pi["amount"],
                "currency": pi["currency"],
                "value": str(value_of(pi["amount"], pi["currency"])),
                "customer": pi.get("customer"),
                "metadata": pi.get("metadata") or {},
            }
            for pi in self.state.intents.values()
            if pi.get("status") == "succeeded"
        ]

    # -- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/_fake/stats" and method == "GET":
            await _respond(send, 200, json.dumps(self.stats.__dict__).encode())
            return
        if path == "/_fake/ledger" and method == "GET":
            await _respond(send, 200, json.dumps({"charges": self.ledger()}).encode())
            return
        if not path.startswith("/v1/"):
            await self._error(
                send, 404, _invalid(f"Unrecognized request URL ({method}: {path}).").error
            )
            return
        headers = {name.decode("latin-1").lower(): value for name, value in scope["headers"]}
        try:
            writing = method == "POST"
            self._authorize(headers.get("authorization"), writing)
            body = await read_body(receive, MAX_BODY, _invalid) if writing else b""
            if body is None:
                return  # the client went away
            if self.latency and not writing:
                await asyncio.sleep(self.latency)  # a POST waits while it holds its key
            fault = self._fault_before()
            if fault is not None:
                await fault(send)
                return
            await self._route(send, method, path, scope.get("query_string", b""), body, headers)
        except _Refused as refused:
            if refused.status == 401:
                self.stats.unauthorized += 1
            elif refused.status == 400:
                self.stats.invalid += 1
            await self._error(send, refused.status, refused.error)

    def _authorize(self, value: bytes | None, writing: bool) -> None:
        token = b""
        if value is not None:
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"basic":  # curl -u sk_test_…: as Stripe's examples do
                try:
                    token = base64.b64decode(token.strip(), validate=True).partition(b":")[0]
                except ValueError:
                    token = b""
            elif scheme.lower() != b"bearer":
                token = b""
        key = token.strip().decode("latin-1")
        shown = f"{key[:8]}****{key[-4:]}" if len(key) > 16 else "****"
        if self.read_only_key is not None and hmac.compare_digest(
            key.encode(), self.read_only_key.encode()
        ):
            if writing:
                raise _Refused(
                    403,
                    {
                        "type": "invalid_request_error",
                        "code": "secret_key_required",
                        "message": f"The provided key '{shown}' does not have the required "
                        "permissions for this endpoint.",
                    },
                )
            return
        if self.api_key is not None:
            good = hmac.compare_digest(key.encode(), self.api_key.encode())
        else:
            good = key.startswith(("sk_test_", "rk_test_")) and len(key) > 8
        if not good:
            raise _Refused(
                401,
                {
                    "type": "invalid_request_error",
                    "message": f"Invalid API Key provided: {shown}"
                    if key
                    else "You did not provide an API key.",
                },
            )

    def _fault_before(self) -> Callable[[Send], Any] | None:
        if self._rng.hits(self.server_error_rate):
            self.stats.server_errors += 1
            status = self._rng.choice((500, 503))

            async def server_error(send: Send) -> None:
                await self._error(
                    send,
                    status,
                    {"type": "api_error", "message": "An unknown error occurred (simulated)."},
                )

            return server_error
        if self._rng.hits(self.rate_limit_rate):
            self.stats.rate_limited += 1

            async def rate_limited(send: Send) -> None:
                await self._error(
                    send,
                    429,
                    {
                        "type": "invalid_request_error",
                        "code": "rate_limit",
                        "message": "Too many requests hit the API too quickly (simulated).",
                    },
                    [(b"retry-after", b"1")],
                )

            return rate_limited
        return None

    async def _route(
        self,
        send: Send,
        method: str,
        path: str,
        query: bytes,
        body: bytes,
        headers: Mapping[str, bytes],
    ) -> None:
        parts = path.strip("/").split("/")
        if parts[1:2] == ["payment_intents"]:
            if len(parts) == 2 and method == "POST":
                await self._idempotent(send, path, body, headers, self._create_intent)
                return
            if len(parts) == 2 and method == "GET":
                await _respond(send, 200, self._list_intents(decode_form(query)))
                return
            if len(parts) == 3 and method == "GET":
                intent = self.state.intents.get(parts[2])
                if intent is None:
                    raise _missing("payment_intent", parts[2], "id")
                await _respond(send, 200, json.dumps(intent).encode())
                return
        if parts[1:2] == ["customers"]:
            if len(parts) == 2 and method == "POST":
                await self._idempotent(send, path, body, headers, self._create_customer)
                return
            if len(parts) == 3:
                customer = self.state.customers.get(parts[2])
                if customer is None:
                    raise _missing("customer", parts[2], "id")
                if method == "POST":
                    self._update_customer(customer, decode_form(body))
                await _respond(send, 200, json.dumps(customer).encode())
                return
        attach = parts[1:2] == ["payment_methods"] and len(parts) == 4 and parts[3] == "attach"
        if attach and method == "POST":

            def attach_to(params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
                customer = params.get("customer")
                if not isinstance(customer, str) or not customer:
                    raise _invalid("Missing required param: customer.", "customer")
                return 200, self.attach(parts[2], customer)

            await self._idempotent(send, path, body, headers, attach_to)
            return
        raise _Refused(
            404,
            {
                "type": "invalid_request_error",
                "message": f"Unrecognized request URL ({method}: {path}).",
            },
        )

    # -- idempotency --------------------------------------------------------------------

    async def _idempotent(
        self,
        send: Send,
        path: str,
        body: bytes,
        headers: Mapping[str, bytes],
        execute: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]],
    ) -> None:
        params = decode_form(body)
        raw_key = headers.get("idempotency-key")
        if raw_key is None:
            status, doc = execute(params)
            await _respond(send, status, json.dumps(doc).encode())
            return
        key = raw_key.decode("latin-1")
        if len(key) > MAX_KEY_LENGTH:
            raise _invalid(
                f"Keys for idempotent requests can only be {MAX_KEY_LENGTH} characters long.",
                "idempotency_key",
            )
        fingerprint = hashlib.sha256(path.encode() + b"\0" + _canonical(params)).hexdigest()
        echo = [(b"idempotency-key", raw_key)]
        now = self._clock()
        stored = self.state.keys.get(key)
        if stored is not None and now - stored.created > self.key_retention:
            del self.state.keys[key]  # forgotten: the key is new again
            stored = None
        if key in self._in_flight:
            self.stats.in_use += 1
            await self._error(
                send,
                409,
                {
                    "type": "invalid_request_error",
                    "code": "idempotency_key_in_use",
                    "message": "There is currently another in-progress request using this "
                    "idempotency key. Try again later.",
                },
                echo,
            )
            return
        if stored is not None:
            if stored.fingerprint != fingerprint:
                self.stats.idempotency_errors += 1
                await self._error(
                    send,
                    400,
                    {
                        "type": "idempotency_error",
                        "message": "Keys for idempotent requests can only be used with the same "
                        f"parameters they were first used with. Try using a key other than "
                        f"'{key}' if you meant to execute a different request.",
                    },
                    echo,
                )
                return
            self.stats.replayed += 1
            await _respond(
                send, stored.status, stored.body, [*echo, (b"idempotent-replayed", b"true")]
            )
            return
        self._in_flight.add(key)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)  # the key is held while Stripe works
            status, doc = execute(params)  # a _Refused is not remembered
            answer = json.dumps(doc).encode()
            self.state.keys[key] = _Key(fingerprint, now, status, answer)
            self._save()
        finally:
            self._in_flight.discard(key)
        if self._rng.hits(self.lost_answer_rate):
            self.stats.lost_answers += 1
            if self._rng.random() < 0.5:
                await self._error(
                    send, 500, {"type": "api_error", "message": "simulated: answer lost"}
                )
                return
            await drop_answer(send, promised=2048)
        await _respond(send, status, answer, echo)

    # -- the objects --------------------------------------------------------------------

    def _create_customer(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        metadata = params.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise _invalid("Invalid hash", "metadata")
        customer = self.add_customer(metadata, name=params.get("name"))
        if isinstance(params.get("email"), str):
            customer["email"] = params["email"]
        return 200, customer

    def _update_customer(self, customer: dict[str, Any], params: dict[str, Any]) -> None:
        metadata = params.get("metadata")
        if isinstance(metadata, dict):
            for k, v in metadata.items():
                if v == "":
                    customer["metadata"].pop(k, None)
                else:
                    customer["metadata"][k] = v
        for name in ("name", "email"):
            if isinstance(params.get(name), str):
                customer[name] = params[name]
        settings = params.get("invoice_settings")
        if isinstance(settings, dict) and "default_payment_method" in settings:
            customer["invoice_settings"]["default_payment_method"] = settings[
                "default_payment_method"
            ]
        self._save()

    def _create_intent(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        amount = _int(params, "amount", required=True)
        assert amount is not None
        currency = params.get("currency")
        if not isinstance(currency, str) or not currency:
            raise _invalid("Missing required param: currency.", "currency", "parameter_missing")
        if currency not in CURRENCIES:
            raise _invalid(
                f"Invalid currency: {currency}. Stripe currently supports these currencies: "
                "usd, eur, …",
                "currency",
            )
        if amount < 1:
            raise _invalid("This value must be greater than or equal to 1.", "amount")
        problem = amount_problem(amount, currency)
        if problem is not None:
            raise problem
        metadata = params.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise _invalid("Invalid hash", "metadata")
        customer_id = params.get("customer")
        customer = self.state.customers.get(customer_id) if isinstance(customer_id, str) else None
        if customer_id is not None and customer is None:
            raise _missing("customer", str(customer_id), "customer")
        pm_id = params.get("payment_method")
        if not isinstance(pm_id, str) or not pm_id:
            raise _invalid(
                "You must provide a payment_method to confirm this PaymentIntent off session.",
                "payment_method",
            )
        if pm_id in TEST_PAYMENT_METHODS:
            card = pm_id
        elif pm_id in self.state.payment_methods:
            pm = self.state.payment_methods[pm_id]
            if pm.get("customer") != customer_id:
                raise _invalid(
                    f"The provided PaymentMethod {pm_id} does not belong to the customer.",
                    "payment_method",
                )
            card = str(pm["card"]["test_card"])
        else:
            raise _missing("PaymentMethod", pm_id, "payment_method")
        if card == "pm_card_amex":
            problem = amount_problem(amount, currency, card)
            if problem is not None:
                raise problem
        self.stats.created += 1
        intent: dict[str, Any] = {
            "id": _new_id("pi"),
            "object": "payment_intent",
            "amount": amount,
            "amount_received": 0,
            "capture_method": "automatic_async",
            "confirmation_method": "automatic",
            "created": int(self._clock()),
            "currency": currency,
            "customer": customer_id,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": metadata,
            "payment_method": pm_id,
            "status": "requires_confirmation",
        }
        intent["client_secret"] = f"{intent['id']}_secret_{secrets.token_hex(8)}"
        self.state.intents[intent["id"]] = intent
        if params.get("confirm") != "true":
            return 200, intent
        if card in REQUIRES_ACTION:
            intent["status"] = "requires_action"
            intent["next_action"] = {"type": "use_stripe_sdk"}
            return 200, intent
        decline = DECLINES.get(card)
        balance = (customer or {}).get("metadata", {}).get("fake_balance")
        if decline is None and balance is not None and balance.isdigit():
            if amount > int(balance):
                decline = ("card_declined", "insufficient_funds")
            else:
                customer["metadata"]["fake_balance"] = str(int(balance) - amount)  # type: ignore[index]
        if decline is not None:
            self.stats.declined += 1
            code, decline_code = decline
            error: dict[str, Any] = {
                "type": "card_error",
                "code": code,
                "decline_code": decline_code,
                "message": _DECLINE_MESSAGES.get(decline_code, "Your card was declined."),
                "param": "",
                "charge": _new_id("ch"),
                "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}",
            }
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = {k: v for k, v in error.items() if k != "charge"}
            error["payment_intent"] = intent
            return 402, {"error": error}
        self.stats.succeeded += 1
        intent["status"] = "succeeded"
        intent["amount_received"] = amount
        intent["latest_charge"] = _new_id("ch")
        return 200, intent

    def _list_intents(self, params: dict[str, Any]) -> bytes:
        self.stats.lists += 1
        limit = _int(params, "limit") or 10
        if not 1 <= limit <= 100:
            raise _invalid("This value must be between 1 and 100.", "limit")
        customer = params.get("customer")
        created = params.get("created")
        bounds: dict[str, int] = {}
        if isinstance(created, dict):
            for op in ("gte", "gt", "lte", "lt"):
                if op in created:
                    value = _int(created, op)
                    assert value is not None
                    bounds[op] = value
        elif created is not None:
            value = _int(params, "created")
            assert value is not None
            bounds["gte"] = bounds["lte"] = value
        after = params.get("starting_after")
        if after is not None and after not in self.state.intents:
            raise _missing("payment_intent", str(after), "starting_after")
        newest_first: Iterable[dict[str, Any]] = reversed(list(self.state.intents.values()))
        if after is not None:
            items = list(newest_first)
            index = next(i for i, pi in enumerate(items) if pi["id"] == after)
            newest_first = items[index + 1 :]
        page: list[dict[str, Any]] = []
        has_more = False
        for pi in newest_first:
            if customer is not None and pi.get("customer") != customer:
                continue
            if not _within(pi["created"], bounds):
                continue
            if len(page) == limit:
                has_more = True
                break
            page.append(pi)
        return json.dumps(
            {"object": "list", "url": "/v1/payment_intents", "has_more": has_more, "data": page}
        ).encode()

    async def _error(
        self,
        send: Send,
        status: int,
        error: dict[str, Any],
        headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        await _respond(send, status, json.dumps({"error": error}).encode(), headers)


def _within(created: int, bounds: Mapping[str, int]) -> bool:
    return (
        created >= bounds.get("gte", created)
        and created > bounds.get("gt", created - 1)
        and created <= bounds.get("lte", created)
        and created < bounds.get("lt", created + 1)
    )


def _canonical(params: Mapping[str, Any]) -> bytes:
    return json.dumps(params, sort_keys=True, separators=(",", ":")).encode()


async def _respond(
    send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """An answer with the headers Stripe adds to each (a request id, the API version)."""
    stripe = [(b"request-id", _new_id("req").encode()), (b"stripe-version", STRIPE_VERSION)]
    await respond(send, status, body, [*stripe, *headers])
