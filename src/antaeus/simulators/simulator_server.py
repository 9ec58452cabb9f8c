"""The simulated provider behind HTTP: a server speaking the payment-provider protocol.

`antaeus provider serve` runs it (`../shared/payment-provider-protocol.md`), so
Antaeus's HTTP adapter, its contract tests and chaos tests have a real provider
to talk to, with faults on demand:

    POST /v1/charges      the protocol; answered by `SimulatedPaymentProvider`
    GET  /v1/charges?idempotencyKey=K   protocol 1.1: what was charged under K:
                          200 {"status": "charged", "chargeId", ...} or
                          {"status": "declined", "reason"}; 404 no_charge (the key
                          is known, nothing was charged); 404 unknown_key (never
                          seen, or beyond retention: proves nothing); 409 in use
    GET  /v1/health       200 {"status": "ok"} (never needs the API key)
    POST /admin/accounts  [{"customerId", "currency", "balance"}] -> load accounts
                          (from then on a customer not loaded has no account)
    GET  /admin/accounts/{customerId}       the account, or 404 no_account
    POST /admin/accounts/{customerId}       {"currency", "balance"} -> create or
                          replace it (either field may be left out of an existing one)
    POST /admin/accounts/{customerId}/fund  {"amount"} -> add to its balance
    GET  /admin/ledger    every charge made: {"charges": [...]}
    GET  /admin/stats     counts of /v1/charges answers, for chaos test summaries
    GET  /admin/faults    the requests that got a bad chargeId or a 400 after an
                          unknown outcome: {"badChargeId": [...], "rejectedAfterUnknown": [...]}

What the wrapped provider decides is mapped to the protocol's answers:

    Charged                 200 {"chargeId", "status": "charged"}
    Declined                402 insufficient_funds
    CustomerNotFoundError   404 customer_not_found
    CurrencyMismatchError   409 currency_mismatch
    KeyInUseError           409 idempotency_key_in_use + Retry-After
    KeyReusedError          422 idempotency_key_reused
    SimulatedNetworkError   503 (nothing happened)
    SimulatedLostAnswer     500, or the connection dropped after the status line
                            (the charge was made; a replay answers 200)
    SimulatedRefusedRepeat  400 invalid_request (a repeat after a lost answer, of a
                            customer whose answers are lost; not processed)

A replay of a remembered outcome carries `Idempotent-Replayed: true`. The server
itself adds 400 invalid_request (bad key or body), 401 unauthorized (`api_key`)
and 429 rate_limited (a token bucket of `rate_limit` requests per second on
/v1/charges). When the key's retention has passed, the provider has forgotten
it: the same key then charges again, like a new one.

A hostile provider (`HostileFaults`, the `--bad-retry-after-rate`,
`--key-in-use-rate`, `--bad-charge-id-rate`, `--reject-after-unknown-rate`,
`--unauthorized-every` and `--unauthorized-for` flags) also answers what a
client must survive without charging twice or losing an invoice:

    bad Retry-After         429 rate_limited or 409 idempotency_key_in_use whose
                            Retry-After is huge or malformed (1e300, a date in
                            year 9999, -5, nan, garbage, ...); nothing charged
    key in use              409 idempotency_key_in_use, Retry-After: 1; nothing
                            charged
    bad chargeId            the charge is made (it is in the ledger), but the 200
                            carries a chargeId longer than 255 characters or with
                            a control character (NUL, newline, tab); the next
                            request with the key replays the real chargeId
    400 after unknown       for a key whose last answer was lost (500 or dropped:
                            charged, answer lost), the next request is answered
                            400 invalid_request without being processed; like
                            every 400, not remembered
    401 bursts              for `unauthorized_for` seconds out of every
                            `unauthorized_every` (the first burst ends
                            `unauthorized_every` seconds after start), every
                            charge request gets 401 unauthorized; nothing charged

The first four are shares of the charge requests they can apply to, decided in
this order once the request is read: 400 after unknown (requests of a key whose
last answer was lost), bad Retry-After, key in use (every request), bad chargeId
(answers of a charge just made, never a replay). Counts are in GET /admin/stats
under "hostile"; GET /admin/faults lists the requests that got a bad chargeId or
a 400 after an unknown outcome (key and invoice), so a chaos test can check
what the client made of them.

The hot path, /v1/charges, is plain ASGI with a hand-written body parser (no
pydantic, no Starlette request objects); the rarely used routes are a small
Starlette app. Money is exact throughout: amounts are parsed to minor units.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from antaeus.domain.money import (
    CURRENCIES,
    MAX_DIGITS,
    Currency,
    Money,
    MoneyError,
    parse_amount,
)
from antaeus.payments.provider import (
    Charged,
    ChargeRequest,
    CurrencyMismatchError,
    CustomerNotFoundError,
    KeyInUseError,
    KeyReusedError,
    RequestRejectedError,
)
from antaeus.simulators.server import Faults, check_rate, drop_answer, read_body, respond
from antaeus.simulators.simulated import (
    CHARGED,
    DECLINED_KEY,
    KEY_IN_USE,
    NO_CHARGE,
    Account,
    LedgerEntry,
    ReplayedOutcome,
    SimulatedLostAnswer,
    SimulatedNetworkError,
    SimulatedPaymentProvider,
)

#: A charge request is about a hundred bytes; anything near this is not one.
MAX_CHARGE_BODY: Final = 64 * 1024
#: Room for about half a million accounts in one POST /admin/accounts.
MAX_ADMIN_BODY: Final = 32 * 1024 * 1024
#: Ids are stored as SQLite INTEGERs (signed 64 bits).
MAX_ID: Final = 2**63 - 1
MAX_KEY_LENGTH: Final = 255


def _value_text(minor_units: int) -> re.Pattern[str]:
    """A charge's amount: a non-negative decimal string with exactly `minor_units` decimals."""
    whole = f"[0-9]{{1,{MAX_DIGITS - minor_units}}}"
    return re.compile(whole if minor_units == 0 else rf"{whole}\.[0-9]{{{minor_units}}}")


_VALUE_TEXT: Final = {n: _value_text(n) for n in {c.minor_units for c in CURRENCIES}}

log = logging.getLogger("antaeus.provider")


class InvalidInput(ValueError):  # noqa: N818 (read as "an invalid input", like the 400's code)
    """A request the server refuses; `field` says where the problem is."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON value")


def loads(data: bytes) -> Any:
    """JSON with decimal numbers kept exact; ValueError for anything unusable."""
    try:
        return json.loads(data, parse_float=Decimal, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


def _id(doc: dict[str, Any], name: str, where: str = "") -> int:
    field = f"{where}{name}"
    if name not in doc:
        raise InvalidInput(field, f"{field} is required")
    value = doc[name]
    if type(value) is not int:  # bool is an int subclass, and is not an id
        raise InvalidInput(field, f"{field} must be an integer")
    if not 1 <= value <= MAX_ID:
        raise InvalidInput(field, f"{field} must be between 1 and {MAX_ID}")
    return value


def _currency(value: object, field: str) -> Currency:
    if not isinstance(value, str):
        raise InvalidInput(field, f"{field} must be a string, an ISO 4217 code such as EUR")
    try:
        return Currency(value)
    except MoneyError as exc:
        raise InvalidInput(field, f"{field}: {exc}") from None


def check_key(raw: bytes | None) -> str:
    """The Idempotency-Key header: 1 to 255 printable ASCII characters."""
    if raw is None:
        raise InvalidInput("Idempotency-Key", "the Idempotency-Key header is required")
    key = raw.decode("latin-1")
    if not key:
        raise InvalidInput("Idempotency-Key", "the Idempotency-Key header is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            "Idempotency-Key", f"the Idempotency-Key header is longer than {MAX_KEY_LENGTH}"
        )
    if not (key.isascii() and key.isprintable()):
        raise InvalidInput(
            "Idempotency-Key", "the Idempotency-Key header must be printable ASCII characters"
        )
    return key


def parse_charge(key: str, body: bytes) -> ChargeRequest:
    """The charge request of a /v1/charges body, or InvalidInput naming the problem.

    `amount.value` must be a string with exactly the currency's decimals (a JSON
    number, even an exact one, is refused: the protocol's client never sends
    one). Fields the protocol does not name are ignored.
    """
    try:
        doc = loads(body)
    except ValueError as exc:
        raise InvalidInput("body", f"the body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidInput("body", "the body must be a JSON object")
    invoice_id = _id(doc, "invoiceId")
    customer_id = _id(doc, "customerId")
    amount = doc.get("amount")
    if amount is None:
        raise InvalidInput("amount", "amount is required")
    if not isinstance(amount, dict):
        raise InvalidInput("amount", 'amount must be an object {"value", "currency"}')
    if "currency" not in amount:
        raise InvalidInput("amount.currency", "amount.currency is required")
    currency = _currency(amount["currency"], "amount.currency")
    if "value" not in amount:
        raise InvalidInput("amount.value", "amount.value is required")
    value = amount["value"]
    if not isinstance(value, str):
        raise InvalidInput(
            "amount.value", 'amount.value must be a decimal string (like "89.52"), not a number'
        )
    if not _VALUE_TEXT[currency.minor_units].fullmatch(value):
        raise InvalidInput(
            "amount.value",
            f"amount.value {value[:40]!r} must be a non-negative decimal string with exactly "
            f"{currency.minor_units} decimals for {currency.value}",
        )
    minor = int(value.replace(".", "", 1))
    return ChargeRequest(invoice_id, customer_id, Money.from_minor(minor, currency), key)


def _balance(value: object, field: str, currency: Currency) -> int:
    """A non-negative amount with at most the currency's decimals, in minor units."""
    try:
        amount = parse_amount(value, currency)
    except MoneyError as exc:
        raise InvalidInput(field, f"{field}: {exc}") from None
    if amount < 0:
        raise InvalidInput(field, f"{field} must not be negative")
    return int(amount.scaleb(currency.minor_units))


def parse_account(customer_id: int, doc: object, current: Account | None) -> Account:
    """The account `{"currency", "balance"}` sets for `customer_id`, or InvalidInput.

    Either field may be left out when the customer has an account (`current`):
    it keeps its currency or balance.
    """
    if not isinstance(doc, dict):
        raise InvalidInput("body", 'the body must be a JSON object {"currency", "balance"}')
    if "currency" in doc:
        currency = _currency(doc["currency"], "currency")
    elif current is not None:
        currency = current.currency
    else:
        raise InvalidInput("currency", "currency is required (the customer has no account)")
    if "balance" in doc:
        balance = _balance(doc["balance"], "balance", currency)
    elif current is not None:
        balance = current.balance_minor
    else:
        raise InvalidInput("balance", "balance is required (the customer has no account)")
    return Account(customer_id, currency, balance)


def parse_funding(doc: object, currency: Currency) -> int:
    """The amount `{"amount"}` adds to a balance in `currency`, in minor units (more than 0)."""
    if not isinstance(doc, dict):
        raise InvalidInput("body", 'the body must be a JSON object {"amount"}')
    if "amount" not in doc:
        raise InvalidInput("amount", "amount is required")
    minor = _balance(doc["amount"], "amount", currency)
    if minor == 0:
        raise InvalidInput("amount", "amount must be more than 0")
    return minor


def account_json(account: Account) -> dict[str, Any]:
    """An account as the admin API writes it: `{"customerId", "currency", "balance"}`."""
    balance = Money.from_minor(account.balance_minor, account.currency)
    return {
        "customerId": account.customer_id,
        "currency": account.currency.value,
        "balance": f"{balance.value:f}",
    }


def ledger_json(entry: LedgerEntry) -> dict[str, Any]:
    """A charge as `GET /admin/ledger` writes it."""
    return {
        "chargeId": entry.charge_id,
        "idempotencyKey": entry.idempotency_key,
        "invoiceId": entry.invoice_id,
        "customerId": entry.customer_id,
        "value": f"{entry.amount.value:f}",
        "currency": entry.amount.currency.value,
    }


def parse_accounts(doc: object) -> list[Account]:
    """Accounts from `[{"customerId", "currency", "balance"}]`, or InvalidInput naming the field.

    A balance is a decimal string or an exact JSON number with at most the
    currency's decimals, not negative. A customer may appear only once.
    """
    if not isinstance(doc, list):
        raise InvalidInput(
            "body", 'the body must be a JSON list of {"customerId", "currency", "balance"}'
        )
    accounts: list[Account] = []
    seen: set[int] = set()
    for i, item in enumerate(doc):
        where = f"[{i}]"
        if not isinstance(item, dict):
            raise InvalidInput(where, f"{where} must be an object")
        customer_id = _id(item, "customerId", f"{where}.")
        if customer_id in seen:
            raise InvalidInput(
                f"{where}.customerId", f"{where}.customerId: customer {customer_id} appears twice"
            )
        seen.add(customer_id)
        if "currency" not in item:
            raise InvalidInput(f"{where}.currency", f"{where}.currency is required")
        currency = _currency(item["currency"], f"{where}.currency")
        field = f"{where}.balance"
        if "balance" not in item:
            raise InvalidInput(field, f"{field} is required")
        minor = _balance(item["balance"], field, currency)
        accounts.append(Account(customer_id, currency, minor))
    return accounts


class TokenBucket:
    """`rate` tokens a second, holding at most `max(rate, 1)` (one second's burst)."""

    def __init__(self, rate: float, clock: Any = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self.tokens = self.capacity
        self._clock = clock
        self._last = clock()

    def take(self) -> float:
        """0 when a token was taken, else the seconds until one is available."""
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._last) * self.rate)
        self._last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


def _retry_after(seconds: float) -> bytes:
    """A Retry-After value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds))).encode()


#: Retry-After values of the bad-Retry-After fault: huge, far away, negative,
#: not a number, or not a value at all. A client must wait a bounded time.
HOSTILE_RETRY_AFTER: Final[tuple[bytes, ...]] = (
    b"1e300",
    b"99999999999999999999999999",
    b"Fri, 31 Dec 9999 23:59:59 GMT",
    b"-5",
    b"nan",
    b"inf",
    b"soon, maybe",
    b"",
)
#: How a real chargeId is spoiled by the bad-chargeId fault.
HOSTILE_CHARGE_IDS: Final[tuple[str, ...]] = ("too_long", "nul", "newline", "tab")


def spoil_charge_id(charge_id: str, how: str) -> str:
    """A malformed variant of `charge_id`: over 255 characters, or with a control character."""
    if how == "too_long":
        return charge_id + "_" + "x" * (MAX_KEY_LENGTH + 1 - len(charge_id))
    control = {"nul": "\x00", "newline": "\n", "tab": "\t"}[how]
    middle = len(charge_id) // 2
    return charge_id[:middle] + control + charge_id[middle:]


@dataclass(frozen=True, slots=True)
class HostileFaults:
    """Faults of a hostile provider (see the module doc); all off by default.

    Rates are shares (0 to 1) of the requests each fault can apply to;
    `unauthorized_every` 0 means no 401 bursts.
    """

    bad_retry_after_rate: float = 0.0
    key_in_use_rate: float = 0.0
    bad_charge_id_rate: float = 0.0
    reject_after_unknown_rate: float = 0.0
    unauthorized_every: float = 0.0
    unauthorized_for: float = 1.5

    def __post_init__(self) -> None:
        for name in (
            "bad_retry_after_rate",
            "key_in_use_rate",
            "bad_charge_id_rate",
            "reject_after_unknown_rate",
        ):
            check_rate(name, getattr(self, name))
        every, length = self.unauthorized_every, self.unauthorized_for
        if not (math.isfinite(every) and every >= 0):
            raise ValueError(f"unauthorized_every must be 0 or more seconds, not {every}")
        if every and not (math.isfinite(length) and 0 < length < every):
            raise ValueError(
                f"unauthorized_for must be more than 0 and less than unauthorized_every "
                f"({every:g}), not {length}"
            )

    @property
    def enabled(self) -> bool:
        return bool(
            self.bad_retry_after_rate
            or self.key_in_use_rate
            or self.bad_charge_id_rate
            or self.reject_after_unknown_rate
            or self.unauthorized_every
        )

    def describe(self) -> list[str]:
        """Each fault that is on, in words (for the server's start-up line)."""
        out = []
        if self.bad_retry_after_rate:
            out.append(f"bad Retry-After {self.bad_retry_after_rate * 100:g}%")
        if self.key_in_use_rate:
            out.append(f"key in use {self.key_in_use_rate * 100:g}%")
        if self.bad_charge_id_rate:
            out.append(f"bad chargeId {self.bad_charge_id_rate * 100:g}%")
        if self.reject_after_unknown_rate:
            out.append(f"400 after unknown {self.reject_after_unknown_rate * 100:g}%")
        if self.unauthorized_every:
            out.append(f"401 for {self.unauthorized_for:g} s every {self.unauthorized_every:g} s")
        return out


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


_REPLAYED: Final = (b"idempotent-replayed", b"true")
_UNAUTHORIZED: Final = b'{"error":"unauthorized"}'
_RATE_LIMITED: Final = b'{"error":"rate_limited"}'
_DECLINED: Final = b'{"error":"insufficient_funds"}'
_NOT_FOUND: Final = b'{"error":"customer_not_found"}'
_MISMATCH: Final = b'{"error":"currency_mismatch"}'
_KEY_IN_USE: Final = b'{"error":"idempotency_key_in_use"}'
_KEY_REUSED: Final = b'{"error":"idempotency_key_reused"}'
_NETWORK: Final = _json(
    {"error": "service_unavailable", "message": "simulated network error: nothing happened"}
)
_LOST: Final = _json(
    {"error": "internal_error", "message": "simulated lost answer: the charge may have happened"}
)
_FAILED: Final = _json({"error": "internal_error", "message": "the simulator failed"})
_REJECTED_AFTER_UNKNOWN: Final = _json(
    {
        "error": "invalid_request",
        "message": "simulated refusal after an unknown outcome: this request moved nothing",
    }
)
_REFUSED_REPEAT: Final = _json(
    {
        "error": "invalid_request",
        "message": "simulated refusal of a repeat after a lost answer: this request moved "
        "nothing (the first one may have charged)",
    }
)
_METHOD: Final = _json(
    {
        "error": "method_not_allowed",
        "message": "use POST /v1/charges, or GET /v1/charges?idempotencyKey=...",
    }
)


class SimulatorStats:
    """Counts of /v1/charges answers since the server started (this process only)."""

    def __init__(self) -> None:
        self.by_status: Counter[str] = Counter()
        self.replays = 0
        self.network_errors = 0
        self.ambiguous_500 = 0
        self.dropped = 0
        self.rate_limited = 0
        self.key_in_use = 0
        self.key_reused = 0
        self.unauthorized = 0
        self.invalid_requests = 0
        self.refused_repeats = 0  # of customers whose answers are lost (seeded profiles)
        self.lookups = 0  # GET /v1/charges?idempotencyKey=... (protocol 1.1)
        # injected by HostileFaults (also counted above, by the kind of answer)
        self.hostile_unauthorized = 0
        self.unauthorized_bursts = 0
        self.bad_retry_after: Counter[str] = Counter()  # by status, "429" and "409"
        self.hostile_key_in_use = 0
        self.bad_charge_ids: Counter[str] = Counter()  # by how the chargeId was spoiled
        self.rejected_after_unknown = 0

    def hostile_json(self) -> dict[str, Any]:
        return {
            "unauthorized": self.hostile_unauthorized,
            "unauthorizedBursts": self.unauthorized_bursts,
            "badRetryAfter": sum(self.bad_retry_after.values()),
            "badRetryAfterByStatus": dict(sorted(self.bad_retry_after.items())),
            "keyInUse": self.hostile_key_in_use,
            "badChargeId": sum(self.bad_charge_ids.values()),
            "badChargeIdByKind": dict(sorted(self.bad_charge_ids.items())),
            "rejectedAfterUnknown": self.rejected_after_unknown,
        }

    def as_json(self, store: dict[str, int]) -> dict[str, Any]:
        return {
            "requests": sum(self.by_status.values()),
            "byStatus": dict(sorted(self.by_status.items())),
            "replays": self.replays,
            "networkErrors": self.network_errors,
            "ambiguous": self.ambiguous_500 + self.dropped,
            "ambiguous500": self.ambiguous_500,
            "dropped": self.dropped,
            "rateLimited": self.rate_limited,
            "keyInUse": self.key_in_use,
            "keyReused": self.key_reused,
            "unauthorized": self.unauthorized,
            "invalidRequests": self.invalid_requests,
            "refusedRepeats": self.refused_repeats,
            "lookups": self.lookups,
            "hostile": self.hostile_json(),
            # outcomes the simulator's store recorded: every process sharing its state
            "store": dict(sorted(store.items())),
        }


class SimulatorApp:
    """The ASGI app: /v1/charges by hand, everything else through Starlette."""

    def __init__(
        self,
        provider: SimulatedPaymentProvider,
        *,
        api_key: str | None = None,
        rate_limit: float = 0.0,
        seed: int = 0,
        hostile: HostileFaults | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if api_key is not None and not (api_key and api_key.isascii() and api_key.isprintable()):
            raise ValueError("the API key must be printable ASCII characters")
        if not (math.isfinite(rate_limit) and rate_limit >= 0):
            raise ValueError("rate_limit must be a number of requests per second, 0 or more")
        self.provider = provider
        self.api_key = api_key.encode() if api_key is not None else None
        self.bucket = TokenBucket(rate_limit) if rate_limit else None
        self.stats = SimulatorStats()
        self._rng = Faults(seed)
        self.hostile = hostile or HostileFaults()
        # its own generator, so turning hostile faults on does not change the others' choices
        self._hostile_rng = Faults(f"hostile:{seed}")
        self._clock = clock
        self._started = clock()
        self._last_burst = -1
        #: keys whose last answer was lost (charged, then 500 or dropped)
        self._lost: set[str] = set()
        #: the requests that got a bad chargeId or a 400 after an unknown outcome
        self.faults: dict[str, list[dict[str, Any]]] = {
            "badChargeId": [],
            "rejectedAfterUnknown": [],
        }
        self._routes = Starlette(
            routes=[
                Route("/v1/health", self._health, methods=["GET"]),
                Route("/admin/accounts", self._accounts, methods=["POST"]),
                Route("/admin/accounts/{customer_id}", self._account, methods=["GET", "POST"]),
                Route("/admin/accounts/{customer_id}/fund", self._fund, methods=["POST"]),
                Route("/admin/ledger", self._ledger, methods=["GET"]),
                Route("/admin/stats", self._stats, methods=["GET"]),
                Route("/admin/faults", self._faults, methods=["GET"]),
            ],
            exception_handlers={HTTPException: self._http_error},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/v1/charges":
            if scope["method"] == "POST":
                await self._charge(scope, receive, send)
            elif scope["method"] == "GET":
                await self._lookup(scope, send)
            else:
                await respond(send, 405, _METHOD, [(b"allow", b"GET, POST")])
            return
        await self._routes(scope, receive, send)

    # --- /v1/charges -----------------------------------------------------------------

    def _authorized(self, value: bytes | None) -> bool:
        if self.api_key is None:
            return True
        if value is None:
            return False
        scheme, _, token = value.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.api_key)

    async def _charge(self, scope: Scope, receive: Receive, send: Send) -> None:
        stats = self.stats
        key: bytes | None = None
        auth: bytes | None = None
        length: bytes | None = None
        keys = 0
        for name, value in scope["headers"]:
            if name == b"idempotency-key":
                key = value
                keys += 1
            elif name == b"authorization":
                auth = value
            elif name == b"content-length":
                length = value
        if self._in_unauthorized_burst():
            stats.unauthorized += 1
            stats.hostile_unauthorized += 1
            await self._send(send, 401, _UNAUTHORIZED, [(b"www-authenticate", b"Bearer")])
            return
        if not self._authorized(auth):
            stats.unauthorized += 1
            await self._send(send, 401, _UNAUTHORIZED, [(b"www-authenticate", b"Bearer")])
            return
        if self.bucket is not None:
            wait = self.bucket.take()
            if wait:
                stats.rate_limited += 1
                await self._send(send, 429, _RATE_LIMITED, [(b"retry-after", _retry_after(wait))])
                return
        try:
            if keys > 1:
                raise InvalidInput("Idempotency-Key", "send one Idempotency-Key header, not more")
            idempotency_key = check_key(key)
            body = await read_body(receive, MAX_CHARGE_BODY, _body_problem, length)
            if body is None:
                return  # the client went away
            request = parse_charge(idempotency_key, body)
        except InvalidInput as exc:
            stats.invalid_requests += 1
            await self._send(send, 400, _invalid("invalid_request", exc))
            return
        if self.hostile.enabled and await self._hostile_refusal(send, request):
            return
        await self._answer(send, request)

    async def _lookup(self, scope: Scope, send: Send) -> None:
        """GET /v1/charges?idempotencyKey=K (protocol 1.1): what was charged under K."""
        stats = self.stats
        auth: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
        if not self._authorized(auth):
            stats.unauthorized += 1
            await self._send(send, 401, _UNAUTHORIZED, [(b"www-authenticate", b"Bearer")])
            return
        try:
            keys = parse_qs(
                scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
            ).get("idempotencyKey", [])
            if len(keys) != 1:
                raise InvalidInput(
                    "idempotencyKey", "give exactly one idempotencyKey query parameter"
                )
            key = check_key(keys[0].encode("utf-8"))
        except InvalidInput as exc:
            stats.invalid_requests += 1
            await self._send(send, 400, _invalid("invalid_request", exc))
            return
        stats.lookups += 1
        try:
            found = await self.provider.lookup(key)
        except Exception:
            log.exception("lookup_failed")
            await self._send(send, 500, _FAILED)
            return
        if found.kind == CHARGED and found.charge_id is not None and found.amount is not None:
            body: dict[str, Any] = {
                "idempotencyKey": key,
                "status": "charged",
                "chargeId": found.charge_id,
                "invoiceId": found.invoice_id,
                "amount": {
                    "value": f"{found.amount.value:f}",
                    "currency": found.amount.currency.value,
                },
            }
            await self._send(send, 200, _json(body))
        elif found.kind == DECLINED_KEY:
            body = {"idempotencyKey": key, "status": "declined", "reason": found.outcome}
            await self._send(send, 200, _json(body))
        elif found.kind == NO_CHARGE:
            body = {
                "error": "no_charge",
                "message": "the key is known and nothing was charged under it",
            }
            await self._send(send, 404, _json(body))
        elif found.kind == KEY_IN_USE:
            await self._send(send, 409, _KEY_IN_USE, [(b"retry-after", b"1")])
        else:
            body = {
                "error": "unknown_key",
                "message": "the key is not known (never seen, or beyond retention): "
                "this answer proves nothing",
            }
            await self._send(send, 404, _json(body))

    def _in_unauthorized_burst(self) -> bool:
        every = self.hostile.unauthorized_every
        if not every:
            return False
        elapsed = self._clock() - self._started
        burst = int(elapsed // every)
        if elapsed - burst * every < every - self.hostile.unauthorized_for:
            return False
        if burst != self._last_burst:
            self._last_burst = burst
            self.stats.unauthorized_bursts += 1
        return True

    async def _hostile_refusal(self, send: Send, request: ChargeRequest) -> bool:
        """Answer a hostile refusal that moves nothing (True), or leave the request be."""
        hostile, stats, rng = self.hostile, self.stats, self._hostile_rng
        key = request.idempotency_key
        if key in self._lost:
            self._lost.discard(key)  # a chance for the first request after the lost answer
            if rng.hits(hostile.reject_after_unknown_rate):
                stats.invalid_requests += 1
                stats.rejected_after_unknown += 1
                self.faults["rejectedAfterUnknown"].append(_fault(request))
                await self._send(send, 400, _REJECTED_AFTER_UNKNOWN)
                return True
        if rng.hits(hostile.bad_retry_after_rate):
            retry = [(b"retry-after", rng.choice(HOSTILE_RETRY_AFTER))]
            if rng.random() < 0.5:
                stats.rate_limited += 1
                stats.bad_retry_after["429"] += 1
                await self._send(send, 429, _RATE_LIMITED, retry)
            else:
                stats.key_in_use += 1
                stats.bad_retry_after["409"] += 1
                await self._send(send, 409, _KEY_IN_USE, retry)
            return True
        if rng.hits(hostile.key_in_use_rate):
            stats.key_in_use += 1
            stats.hostile_key_in_use += 1
            await self._send(send, 409, _KEY_IN_USE, [(b"retry-after", b"1")])
            return True
        return False

    async def _answer(self, send: Send, request: ChargeRequest) -> None:
        stats = self.stats
        try:
            result = await self.provider.charge(request)
        except CustomerNotFoundError as exc:
            await self._definite(send, 404, _NOT_FOUND, exc)
        except CurrencyMismatchError as exc:
            await self._definite(send, 409, _MISMATCH, exc)
        except KeyInUseError as exc:
            stats.key_in_use += 1
            retry = [(b"retry-after", _retry_after(exc.retry_after))]
            await self._send(send, 409, _KEY_IN_USE, retry)
        except KeyReusedError:
            stats.key_reused += 1
            await self._send(send, 422, _KEY_REUSED)
        except RequestRejectedError:
            stats.invalid_requests += 1
            stats.refused_repeats += 1
            await self._send(send, 400, _REFUSED_REPEAT)
        except SimulatedNetworkError:
            stats.network_errors += 1
            await self._send(send, 503, _NETWORK)
        except SimulatedLostAnswer:
            if self.hostile.reject_after_unknown_rate:
                self._lost.add(request.idempotency_key)
            if self._rng.random() < 0.5:
                stats.ambiguous_500 += 1
                await self._send(send, 500, _LOST)
            else:
                stats.dropped += 1
                stats.by_status["dropped"] += 1
                await drop_answer(send)
        except Exception:
            log.exception("charge_failed invoice_id=%s", request.invoice_id)
            await self._send(send, 500, _FAILED)
        else:
            if isinstance(result, Charged):
                rate = self.hostile.bad_charge_id_rate
                if rate and not result.replayed and self._hostile_rng.hits(rate):
                    how = self._hostile_rng.choice(HOSTILE_CHARGE_IDS)
                    stats.bad_charge_ids[how] += 1
                    self.faults["badChargeId"].append({**_fault(request), "kind": how})
                    spoiled = spoil_charge_id(result.charge_id, how)
                    await self._send(send, 200, _json({"chargeId": spoiled, "status": "charged"}))
                    return
                body = b'{"chargeId":"%s","status":"charged"}' % result.charge_id.encode()
                status = 200
            else:
                body, status = _DECLINED, 402
            if result.replayed:
                stats.replays += 1
                await self._send(send, status, body, [_REPLAYED])
            else:
                await self._send(send, status, body)

    async def _definite(self, send: Send, status: int, body: bytes, exc: Exception) -> None:
        if isinstance(exc, ReplayedOutcome):
            self.stats.replays += 1
            await self._send(send, status, body, [_REPLAYED])
        else:
            await self._send(send, status, body)

    async def _send(
        self,
        send: Send,
        status: int,
        body: bytes,
        headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        self.stats.by_status[str(status)] += 1
        await respond(send, status, body, headers)

    # --- the other routes ------------------------------------------------------------

    async def _health(self, _request: Request) -> Response:
        return _JSONResponse({"status": "ok"})

    def _refuse(self, request: Request) -> Response | None:
        if self._authorized(request.headers.get("authorization", "").encode("latin-1") or None):
            return None
        return Response(
            _UNAUTHORIZED,
            status_code=401,
            media_type="application/json",
            headers={"WWW-Authenticate": "Bearer"},
        )

    async def _accounts(self, request: Request) -> Response:
        if (refused := self._refuse(request)) is not None:
            return refused
        # the main API's shapes: 400 for a body that is not JSON, 422 naming a bad field
        try:
            accounts = parse_accounts(await self._json_body(request))
        except _BadBody as exc:
            return exc.response
        except InvalidInput as exc:
            return _JSONResponse(_invalid_doc("validation_error", exc), 422)
        await asyncio.to_thread(self.provider.store.set_accounts, accounts)
        return _JSONResponse({"accounts": len(accounts)})

    async def _json_body(self, request: Request) -> Any:
        """The request's JSON (InvalidInput with `field` "body" and a 400's code as message)."""
        try:
            length = _header(request, "content-length")
            body = await read_body(request.receive, MAX_ADMIN_BODY, _body_problem, length)
        except InvalidInput as exc:
            raise _BadBody(_error(400, "body_too_large", exc.message, "body")) from None
        if body is None:
            raise _BadBody(Response(status_code=400))  # the client went away
        try:
            return loads(body)
        except ValueError as exc:
            raise _BadBody(
                _error(400, "invalid_json", f"the body is not valid JSON: {exc}", "body")
            ) from None

    def _customer_id(self, request: Request) -> int:
        text = request.path_params["customer_id"]
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_ID:
            raise InvalidInput("customerId", f"customerId must be between 1 and {MAX_ID}")
        return int(text)

    async def _account(self, request: Request) -> Response:
        """GET: the customer's account; POST {"currency", "balance"}: create or replace it."""
        if (refused := self._refuse(request)) is not None:
            return refused
        store = self.provider.store
        try:
            customer_id = self._customer_id(request)
            current = await asyncio.to_thread(store.account, customer_id)
            if request.method == "GET":
                if current is None:
                    return _no_account(customer_id)
                return _JSONResponse(account_json(current))
            account = parse_account(customer_id, await self._json_body(request), current)
        except _BadBody as exc:
            return exc.response
        except InvalidInput as exc:
            return _JSONResponse(_invalid_doc("validation_error", exc), 422)
        await asyncio.to_thread(store.put_account, account)
        return _JSONResponse(account_json(account), 200 if current is not None else 201)

    async def _fund(self, request: Request) -> Response:
        """POST {"amount"}: add to the customer's balance (404 when it has no account)."""
        if (refused := self._refuse(request)) is not None:
            return refused
        store = self.provider.store
        try:
            customer_id = self._customer_id(request)
            current = await asyncio.to_thread(store.account, customer_id)
            doc = await self._json_body(request)
            if current is None:
                return _no_account(customer_id)
            amount = parse_funding(doc, current.currency)
        except _BadBody as exc:
            return exc.response
        except InvalidInput as exc:
            return _JSONResponse(_invalid_doc("validation_error", exc), 422)
        funded = await asyncio.to_thread(store.fund, customer_id, amount)
        if funded is None:  # removed meanwhile: accounts are never removed, but say so
            return _no_account(customer_id)
        return _JSONResponse(account_json(funded))

    async def _ledger(self, request: Request) -> Response:
        if (refused := self._refuse(request)) is not None:
            return refused
        entries = await asyncio.to_thread(self.provider.store.ledger)
        charges = [ledger_json(e) for e in entries]
        return _JSONResponse({"charges": charges})

    async def _stats(self, request: Request) -> Response:
        if (refused := self._refuse(request)) is not None:
            return refused
        store = await asyncio.to_thread(self.provider.store.stats)
        return _JSONResponse(self.stats.as_json(store))

    async def _faults(self, request: Request) -> Response:
        if (refused := self._refuse(request)) is not None:
            return refused
        return _JSONResponse(self.faults)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return _error(404, "not_found", f"no route {request.method} {request.url.path}")
        if exc.status_code == 405:
            return _error(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed on {request.url.path}",
                headers=exc.headers,
            )
        return _error(exc.status_code, "http_error", str(exc.detail), headers=exc.headers)


def create_simulator_app(
    provider: SimulatedPaymentProvider,
    *,
    api_key: str | None = None,
    rate_limit: float = 0.0,
    seed: int = 0,
    hostile: HostileFaults | None = None,
) -> SimulatorApp:
    """The ASGI app serving `provider` over the payment-provider protocol.

    `api_key`: when set, /v1/charges and /admin/* need `Authorization: Bearer <key>`.
    `rate_limit`: requests a second on /v1/charges (0: unlimited).
    `seed`: picks, for each lost answer, a 500 or a dropped connection, and each
    hostile fault.
    `hostile`: the faults of a hostile provider (see the module doc); none by default.
    The caller owns `provider` and closes it after the server stops.
    """
    return SimulatorApp(
        provider, api_key=api_key, rate_limit=rate_limit, seed=seed, hostile=hostile
    )


# --- plain ASGI helpers ------------------------------------------------------------------


class _JSONResponse(Response):
    media_type = "application/json"

    def __init__(self, content: Any, status_code: int = 200, **kwargs: Any) -> None:
        super().__init__(_json(content), status_code=status_code, **kwargs)


def _error(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    doc = {"error": code, "message": message}
    if field is not None:
        doc["field"] = field
    return _JSONResponse(doc, status, headers=headers)


class _BadBody(Exception):  # noqa: N818 (carries the answer to a body that is not usable)
    def __init__(self, response: Response) -> None:
        super().__init__("bad body")
        self.response = response


def _no_account(customer_id: int) -> Response:
    return _error(
        404,
        "no_account",
        f"customer {customer_id} has no account; create one with "
        f'POST /admin/accounts/{customer_id} {{"currency", "balance"}}',
    )


def _fault(request: ChargeRequest) -> dict[str, Any]:
    return {"idempotencyKey": request.idempotency_key, "invoiceId": request.invoice_id}


def _invalid_doc(code: str, exc: InvalidInput) -> dict[str, str]:
    return {"error": code, "message": exc.message, "field": exc.field}


def _invalid(code: str, exc: InvalidInput) -> bytes:
    return _json(_invalid_doc(code, exc))


def _body_problem(message: str) -> InvalidInput:
    return InvalidInput("body", message)


def _header(request: Request, name: str) -> bytes | None:
    value = request.headers.get(name)
    return value.encode("latin-1") if value is not None else None
