"""The simulated payment provider: the embedded default.

It behaves like a real provider that honours idempotency keys: it remembers
each key's outcome (for `key_retention`), replays it for the same request, and
refuses the key with another body. Its accounts, keys and ledger of charges
live in a SQLite store of its own (`ANTAEUS_SIMULATED_STATE`), shared by every
process that opens it and kept through crashes, so tests can compare its
ledger with Antaeus's database.

**What decides a charge is the customer's account**, as at a real provider:
none (customer not found), one in another currency than the charge's
(currency mismatch, and only then), one whose balance is below the amount
(insufficient funds), or a funded one, which the charge debits. Where the
accounts come from:

- **Loaded** (`set_accounts`: `POST /admin/accounts`, `--accounts`,
  `--accounts-from-db`): the list is the provider's customers; a customer not
  in it has no account.
- **Seeded profiles** (`failure_rate` r > 0 and nothing loaded: the default of
  `antaeus serve` and `antaeus bill`): each customer is a stable function of
  (seed, customer id). The first charge the simulator sees for a customer
  opens its account (in that store, for every process): about 0.5 r of the
  customers get one in the charge's currency with less than the amount; 0.1 r
  have none; 0.1 r get one in another currency; 0.1 r get a funded one whose
  answers are lost (see below); the rest a funded one (1,000,000.00).
- **Neither** (r = 0, nothing loaded): every charge of a customer without an
  account is made.

An account set on its own (`put_account`, `fund`: `POST
/admin/accounts/{customerId}`, `.../fund`, `antaeus provider account`,
`antaeus provider fund`) decides for its customer in every mode, so fixing the
cause (creating the account, funding it, setting its currency) and retrying is
what makes the next charge succeed.

Faults: a network error before anything happens is a function of (seed, key,
how many times the key was sent), about `network_error_rate` of the sends
(0.2 r unless given); a lost answer of a charge made (`ambiguous_rate`, 0.1 r
unless given) of (seed, key, sends), after which the repeat with the key
replays the charge. The "answers lost" customers of the seeded profiles are
charged on a key's first send but never get the answer, and every repeat of
that key is refused as malformed (`RequestRejectedError`, the server's 400),
without being processed: Antaeus cannot know whether it was charged, so the
invoice goes to `REVIEW`, and the ledger shows the charge. A request whose key
is still being processed is refused with `KeyInUseError`, as a real provider
answers 409.

An outage (`outage = True`) answers every charge request with a network error
before anything happens, a repeat of a charged key included; lookups of keys
(`find_charge`, `GET /v1/charges?idempotencyKey=`) still answer.

Concurrent charges are written in one transaction per batch (group commit), so
the simulator is never the bottleneck of a benchmark.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, Protocol

from antaeus.domain.money import ORIGINAL_CURRENCIES, Currency, Money
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
    OutcomeUnknownError,
    ProviderError,
    Refusal,
    RequestRejectedError,
    refuses_nothing,
)
from antaeus.simulators.server import check_rate

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS keys (
    key TEXT PRIMARY KEY, request_hash TEXT NOT NULL, outcome TEXT NOT NULL,
    charge_id TEXT, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sends (key TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, first_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS charges (
    charge_id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL, invoice_id INTEGER NOT NULL,
    customer_id INTEGER NOT NULL, value_minor INTEGER NOT NULL, currency TEXT NOT NULL,
    created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    customer_id INTEGER PRIMARY KEY, currency TEXT NOT NULL, balance_minor INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS stats (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
#: A store made before `meta` existed had its accounts loaded if it had any.
_LOADED_FLAG: Final = (
    "INSERT OR IGNORE INTO meta (name, value) SELECT 'accounts_loaded', "
    "CASE WHEN EXISTS (SELECT 1 FROM accounts) THEN '1' ELSE '0' END"
)

CHARGED: Final = "charged"
INSUFFICIENT: Final = "insufficient_funds"
NOT_FOUND: Final = "customer_not_found"
MISMATCH: Final = "currency_mismatch"

#: The seeded profiles of customers (see the module doc).
PROFILE_FUNDED: Final = "funded"
PROFILE_LOW: Final = "low_balance"
PROFILE_NONE: Final = "no_account"
PROFILE_OTHER_CURRENCY: Final = "other_currency"
PROFILE_ANSWERS_LOST: Final = "answers_lost"
#: The balance of an account opened funded by a seeded profile: 1,000,000.00.
FUNDED_BALANCE_MINOR: Final = 100_000_000


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    charge_id: str
    idempotency_key: str
    invoice_id: int
    customer_id: int
    amount: Money


@dataclass(frozen=True, slots=True)
class Account:
    customer_id: int
    currency: Currency
    balance_minor: int


Result = Charged | Declined | ProviderError

#: What a lookup of a key finds (`SimulatorStore.lookup`, protocol 1.1).
DECLINED_KEY: Final = "declined"  # processed under the key; nothing moved (`outcome` says why)
NO_CHARGE: Final = "no_charge"  # received under the key, never processed: nothing moved
UNKNOWN_KEY: Final = "unknown_key"  # never seen, or forgotten (beyond retention)
KEY_IN_USE: Final = "key_in_use"  # a request under the key is being processed right now


@dataclass(frozen=True, slots=True)
class KeyLookup:
    """What the simulator knows of one idempotency key: `kind` is CHARGED, DECLINED_KEY,
    NO_CHARGE, UNKNOWN_KEY or KEY_IN_USE."""

    kind: str
    charge_id: str | None = None
    invoice_id: int | None = None
    amount: Money | None = None
    outcome: str | None = None  # of DECLINED_KEY: insufficient_funds, customer_not_found, ...


class SimulatedNetworkError(OutcomeUnknownError):
    """A fault before anything happened (the server answers 503)."""


class SimulatedLostAnswer(OutcomeUnknownError):  # noqa: N818 (a lost answer, not an error of ours)
    """The charge was made, then the answer was lost (the server answers 500 or drops)."""


class SimulatedRefusedRepeat(RequestRejectedError):  # noqa: N818 (a refusal, like the 400)
    """A repeat of a key whose answer was lost, refused as malformed and not processed."""


class ReplayedOutcome:
    """Marks an error that replays a remembered definite outcome (a key seen before).

    `Charged` and `Declined` say so with their `replayed` field; the errors say
    it by their class, so the simulator server can add `Idempotent-Replayed: true`.
    """


class ReplayedCustomerNotFoundError(CustomerNotFoundError, ReplayedOutcome):
    pass


class ReplayedCurrencyMismatchError(CurrencyMismatchError, ReplayedOutcome):
    pass


def _unit(*parts: object) -> float:
    """A stable pseudo-random number in [0, 1) from `parts`."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class Rules(Protocol):
    """What the provider decides for the store, per request (see the module doc)."""

    @property
    def profiled(self) -> bool:
        """True when a customer without an account has a seeded profile."""
        ...

    @property
    def outage(self) -> bool:
        """True while every send is received and answered 503 before anything happens."""
        ...

    def network_error(self, req: ChargeRequest, sends: int) -> bool: ...

    def answer_lost(self, req: ChargeRequest, sends: int) -> bool: ...

    def profile(self, customer_id: int) -> str: ...

    def open_account(self, req: ChargeRequest, profile: str) -> Account | None: ...


def _request_hash(req: ChargeRequest, minor: int | None = None) -> str:
    """What identifies a request's body (`minor`: its amount's, when known already)."""
    amount = req.amount
    if minor is None:
        minor = amount.minor
    return f"{req.invoice_id}:{req.customer_id}:{minor}:{amount.currency.code}"


class SimulatorStore:
    """The simulator's own SQLite store. Every method is one transaction."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn = sqlite3.connect(
            path, timeout=30, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.Lock()
        with self._lock:
            if path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA busy_timeout=30000")
            # a simulator: surviving a process crash (WAL) is enough, power loss is not modelled
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            self._conn.execute(_LOADED_FLAG)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _begin(self) -> sqlite3.Cursor:
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        return cur

    def process(
        self,
        requests: list[ChargeRequest],
        rules: Rules,
        now: float,
        retention_seconds: float,
    ) -> list[Result]:
        """Charge `requests` in one transaction; one result per request, in order.

        Reads every key, send count and account the batch needs up front, decides
        in memory (later requests of the batch see the earlier ones), and writes
        with one executemany per table.
        """
        with self._lock:
            cur = self._begin()
            try:
                out = self._process(cur, requests, rules, now, retention_seconds)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return out

    @staticmethod
    def _fetch(cur: sqlite3.Cursor, sql: str, ids: list[Any]) -> list[Any]:
        rows: list[Any] = []
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows.extend(cur.execute(sql.format(marks=marks), chunk).fetchall())
        return rows

    def _process(
        self,
        cur: sqlite3.Cursor,
        requests: list[ChargeRequest],
        rules: Rules,
        now: float,
        retention_seconds: float,
    ) -> list[Result]:
        keys = list({r.idempotency_key for r in requests})
        known = {
            row[0]: (row[1], row[2], row[3], row[4])
            for row in self._fetch(
                cur,
                "SELECT key, request_hash, outcome, charge_id, created_at FROM keys "
                "WHERE key IN ({marks})",
                keys,
            )
        }
        sends = dict(self._fetch(cur, "SELECT key, n FROM sends WHERE key IN ({marks})", keys))
        loaded = _loaded(cur)
        profiled = rules.profiled and not loaded
        with_accounts = (
            loaded
            or profiled
            or cur.execute("SELECT 1 FROM accounts LIMIT 1").fetchone() is not None
        )
        accounts: dict[int, tuple[str, int]] = {}
        if with_accounts:
            customers = list({r.customer_id for r in requests})
            accounts = {
                row[0]: (row[1], row[2])
                for row in self._fetch(
                    cur,
                    "SELECT customer_id, currency, balance_minor FROM accounts "
                    "WHERE customer_id IN ({marks})",
                    customers,
                )
            }
        changed: set[int] = set()
        sent: set[str] = set()
        out: list[Result] = []
        new_keys: dict[str, tuple[str, str, str | None, float]] = {}
        charges: list[tuple[Any, ...]] = []
        stats: dict[str, int] = {}
        stamp = f":{now}"  # (what each charge id hashes after its key and send)
        # Charge ids begin with the moment in microseconds, so that the ledger's index
        # grows at its end (random ids dirtied a page of it per charge at each commit).
        prefix = f"ch_{max(0, int(now * 1_000_000)):013x}"
        for req in requests:
            key = req.idempotency_key
            customer = req.customer_id
            amount = req.amount
            minor = amount.minor  # (once: a Decimal's scaling)
            currency = amount.currency.code
            digest = _request_hash(req, minor)
            profile = rules.profile(customer) if profiled else None
            seen = known.get(key)
            if rules.outage:  # received, and nothing done: not even a replay
                sends[key] = sends.get(key, 0) + 1
                sent.add(key)
                stats["outage"] = stats.get("outage", 0) + 1
                out.append(SimulatedNetworkError("simulated outage (nothing happened)"))
                continue
            if seen is not None and now - seen[3] < retention_seconds:
                if seen[0] != digest:
                    out.append(KeyReusedError(f"key {key} was used with another request"))
                    continue
                if profile == PROFILE_ANSWERS_LOST and seen[1] == CHARGED:
                    stats["refused_repeats"] = stats.get("refused_repeats", 0) + 1
                    out.append(
                        SimulatedRefusedRepeat(
                            "simulated refusal of a repeat after a lost answer (not processed)"
                        )
                    )
                    continue
                stats["replays"] = stats.get("replays", 0) + 1
                out.append(_result(seen[1], seen[2], replayed=True))
                continue
            n = sends[key] = sends.get(key, 0) + 1
            sent.add(key)
            if rules.network_error(req, n):
                stats["network_errors"] = stats.get("network_errors", 0) + 1
                out.append(SimulatedNetworkError("simulated network error (nothing happened)"))
                continue
            account = accounts.get(customer)
            if account is None and profile is not None:
                opened = rules.open_account(req, profile)
                if opened is not None:
                    account = accounts[customer] = (opened.currency.value, opened.balance_minor)
                    changed.add(customer)
                    stats["accounts_opened"] = stats.get("accounts_opened", 0) + 1
            if account is None:
                outcome = NOT_FOUND if loaded or profiled else CHARGED
            elif account[0] != currency:
                outcome = MISMATCH
            elif account[1] < minor:
                outcome = INSUFFICIENT
            else:
                outcome = CHARGED
            charge_id = None
            if outcome == CHARGED:
                charge_id = prefix + hashlib.sha256(f"{key}:{n}{stamp}".encode()).hexdigest()[:24]
                charges.append((charge_id, key, req.invoice_id, customer, minor, currency, now))
                if account is not None:
                    accounts[customer] = (account[0], account[1] - minor)
                    changed.add(customer)
            known[key] = new_keys[key] = (digest, outcome, charge_id, now)
            stats[outcome] = stats.get(outcome, 0) + 1
            ambiguous = outcome == CHARGED and (
                profile == PROFILE_ANSWERS_LOST or rules.answer_lost(req, n)
            )
            if ambiguous:
                stats["ambiguous"] = stats.get("ambiguous", 0) + 1
                out.append(SimulatedLostAnswer("simulated lost answer (the charge was made)"))
            else:
                out.append(_result(outcome, charge_id, replayed=False))
        # (the counts of the keys sent in this batch: the others' did not change)
        cur.executemany("INSERT OR REPLACE INTO sends VALUES (?, ?)", [(k, sends[k]) for k in sent])
        # When the provider first heard of each key sent and not processed (again after
        # it forgot it): `lookup` reads it only for a key without an outcome in `keys`,
        # so a key processed now needs none (a row of `keys` is never removed).
        cur.executemany(
            "INSERT INTO seen VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
            "SET first_at = excluded.first_at WHERE seen.first_at <= ?",
            [(k, now, now - retention_seconds) for k in sent if k not in new_keys],
        )
        cur.executemany(
            "INSERT OR REPLACE INTO keys VALUES (?, ?, ?, ?, ?)",
            [(k, *v) for k, v in new_keys.items()],
        )
        cur.executemany("INSERT INTO charges VALUES (?, ?, ?, ?, ?, ?, ?)", charges)
        if changed:
            cur.executemany(
                "INSERT OR REPLACE INTO accounts VALUES (?, ?, ?)",
                [(cid, *accounts[cid]) for cid in changed],
            )
        cur.executemany(
            "INSERT INTO stats (name, n) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET n = n + excluded.n",
            list(stats.items()),
        )
        return out

    def lookup(self, key: str, now: float, retention_seconds: float) -> KeyLookup:
        """What the provider knows of `key` (protocol 1.1's GET /v1/charges).

        A key it processed within its retention answers its outcome; a key it
        received but never processed (every send failed before anything
        happened), within its retention and with no charge in the ledger,
        answers that nothing was charged; any other key is unknown (never
        seen, or forgotten): it proves nothing.
        """
        with self._lock:
            cur = self._conn.cursor()
            row = cur.execute(
                "SELECT outcome, charge_id, created_at FROM keys WHERE key = ?", (key,)
            ).fetchone()
            if row is not None:
                if now - row[2] >= retention_seconds:
                    return KeyLookup(UNKNOWN_KEY)
                if row[0] != CHARGED:
                    return KeyLookup(DECLINED_KEY, outcome=row[0])
                charge = cur.execute(
                    "SELECT invoice_id, customer_id, value_minor, currency FROM charges "
                    "WHERE charge_id = ?",
                    (row[1],),
                ).fetchone()
                if charge is None:  # a charge the ledger lost cannot be vouched for
                    return KeyLookup(UNKNOWN_KEY)
                amount = Money.from_minor(charge[2], Currency(charge[3]))
                return KeyLookup(CHARGED, charge_id=row[1], invoice_id=charge[0], amount=amount)
            first = cur.execute("SELECT first_at FROM seen WHERE key = ?", (key,)).fetchone()
            if first is None or now - first[0] >= retention_seconds:
                return KeyLookup(UNKNOWN_KEY)
            if cur.execute(
                "SELECT 1 FROM charges WHERE idempotency_key = ? LIMIT 1", (key,)
            ).fetchone():
                return KeyLookup(UNKNOWN_KEY)  # charged once, then forgotten: not "none"
            return KeyLookup(NO_CHARGE)

    def ledger(self) -> list[LedgerEntry]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT charge_id, idempotency_key, invoice_id, customer_id, value_minor, currency "
                "FROM charges ORDER BY created_at, charge_id"
            ).fetchall()
        return [
            LedgerEntry(r[0], r[1], r[2], r[3], Money.from_minor(r[4], Currency(r[5])))
            for r in rows
        ]

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._conn.execute("SELECT name, n FROM stats").fetchall())

    def set_accounts(self, accounts: Iterable[Account]) -> None:
        """Load accounts: from now on a customer not among them has no account."""
        with self._lock:
            cur = self._begin()
            cur.executemany(
                "INSERT OR REPLACE INTO accounts VALUES (?, ?, ?)",
                [(a.customer_id, a.currency.value, a.balance_minor) for a in accounts],
            )
            cur.execute("UPDATE meta SET value = '1' WHERE name = 'accounts_loaded'")
            cur.execute("COMMIT")

    def put_account(self, account: Account) -> None:
        """Create or replace one customer's account (the others keep what they had)."""
        with self._lock:
            cur = self._begin()
            cur.execute(
                "INSERT OR REPLACE INTO accounts VALUES (?, ?, ?)",
                (account.customer_id, account.currency.value, account.balance_minor),
            )
            cur.execute("COMMIT")

    def fund(self, customer_id: int, amount_minor: int) -> Account | None:
        """Add `amount_minor` to the customer's balance; None when it has no account."""
        with self._lock:
            cur = self._begin()
            cur.execute(
                "UPDATE accounts SET balance_minor = balance_minor + ? WHERE customer_id = ?",
                (amount_minor, customer_id),
            )
            found = self._account(cur, customer_id)
            cur.execute("COMMIT")
        return found

    def account(self, customer_id: int) -> Account | None:
        """The customer's account, if it has one (a seeded profile opens it at its first charge)."""
        with self._lock:
            return self._account(self._conn.cursor(), customer_id)

    @staticmethod
    def _account(cur: sqlite3.Cursor, customer_id: int) -> Account | None:
        row = cur.execute(
            "SELECT currency, balance_minor FROM accounts WHERE customer_id = ?", (customer_id,)
        ).fetchone()
        return None if row is None else Account(customer_id, Currency(row[0]), row[1])

    def accounts_loaded(self) -> bool:
        """True when accounts were loaded (`set_accounts`): the others have none."""
        with self._lock:
            return _loaded(self._conn.cursor())

    def has_accounts(self) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1 FROM accounts LIMIT 1").fetchone() is not None


def lookup_result(found: KeyLookup, lookup: ChargeLookup, asked: str) -> LookupResult:
    """The reconciliation answer of what the simulator found under the lookup's key.

    A charge of another invoice or amount under the key is not taken on trust.
    """
    if found.kind == CHARGED and found.charge_id is not None:
        if found.invoice_id != lookup.invoice_id or found.amount != lookup.amount:
            return CannotTell(
                f"{asked}: charged {found.charge_id}, but for invoice {found.invoice_id} "
                f"and {found.amount}, not invoice {lookup.invoice_id} and {lookup.amount}"
            )
        return ChargeFound(found.charge_id, f"{asked}: charged, {found.charge_id}")
    if found.kind == DECLINED_KEY:
        return NothingCharged(f"{asked}: processed and not charged ({found.outcome})")
    if found.kind == NO_CHARGE:
        return NothingCharged(f"{asked}: received, never processed: nothing charged")
    if found.kind == KEY_IN_USE:
        return CannotTell(f"{asked}: a request under the key is being processed")
    return CannotTell(f"{asked}: the key is unknown (never seen, or beyond retention)")


def _loaded(cur: sqlite3.Cursor) -> bool:
    row = cur.execute("SELECT value FROM meta WHERE name = 'accounts_loaded'").fetchone()
    return row is not None and row[0] == "1"


def _result(outcome: str, charge_id: str | None, *, replayed: bool) -> Result:
    if outcome == CHARGED:
        assert charge_id is not None
        return Charged(charge_id, replayed=replayed)
    if outcome == INSUFFICIENT:
        return Declined(replayed=replayed)
    if outcome == NOT_FOUND:
        not_found = ReplayedCustomerNotFoundError if replayed else CustomerNotFoundError
        return not_found("no such customer at the provider")
    mismatch = ReplayedCurrencyMismatchError if replayed else CurrencyMismatchError
    return mismatch("the amount's currency is not the account's")


class SimulatedPaymentProvider:
    """A provider with idempotency keys, faults on demand, and a durable ledger."""

    deduplicates_keys = True

    def __init__(
        self,
        state: str = ":memory:",
        *,
        failure_rate: float = 0.0,
        network_error_rate: float | None = None,
        ambiguous_rate: float | None = None,
        seed: int = 0,
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        key_retention: timedelta = timedelta(hours=24),
        clock: Callable[[], float] = time.time,
    ) -> None:
        for name, rate in (
            ("failure_rate", failure_rate),
            ("network_error_rate", network_error_rate),
            ("ambiguous_rate", ambiguous_rate),
        ):
            if rate is not None:
                check_rate(name, rate)
        self.store = SimulatorStore(state)
        self.failure_rate = failure_rate
        self.network_error_rate = (
            failure_rate * 0.2 if network_error_rate is None else network_error_rate
        )
        self.ambiguous_rate = failure_rate * 0.1 if ambiguous_rate is None else ambiguous_rate
        self.seed = seed
        self.latency = latency_ms / 1000
        self.jitter = jitter_ms / 1000
        self._retention = key_retention
        self._clock = clock
        self._rng = random.Random(seed)
        self._queue: list[tuple[ChargeRequest, asyncio.Future[Result]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._inflight: set[str] = set()
        #: an outage: every charge request is received and answered as a network error
        #: (503) before anything happens, replays included; lookups still answer
        self.outage = False

    @property
    def key_retention(self) -> timedelta:
        return self._retention

    @refuses_nothing
    def refusal(self, request: ChargeRequest) -> Refusal | None:
        return None  # charges any customer by Antaeus' own id

    async def lookup(self, key: str) -> KeyLookup:
        """What this provider knows of `key` (what GET /v1/charges answers)."""
        if key in self._inflight:
            return KeyLookup(KEY_IN_USE)
        return await asyncio.to_thread(
            self.store.lookup, key, self._clock(), self._retention.total_seconds()
        )

    async def find_charge(self, lookup: ChargeLookup) -> LookupResult:
        key = lookup.idempotency_key
        asked = f"asked the simulated provider for key {key}"
        try:
            found = await self.lookup(key)
        except Exception as exc:  # the store failed: nothing is known
            return CannotTell(f"{asked}: the simulator's store failed ({type(exc).__name__})")
        return lookup_result(found, lookup, asked)

    async def charge(self, request: ChargeRequest) -> Charged | Declined:
        key = request.idempotency_key
        if key in self._inflight:
            raise KeyInUseError(max(self.latency, 0.01), f"key {key} is being processed")
        self._inflight.add(key)
        try:
            if self.latency or self.jitter:
                spread = self._rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0
                await asyncio.sleep(max(0.0, self.latency + spread))
            future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
            self._queue.append((request, future))
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush())
            result = await future
        finally:
            self._inflight.discard(key)
        if isinstance(result, ProviderError):
            raise result
        return result

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the other charges of this tick join the batch
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                results = await asyncio.to_thread(
                    self.store.process,
                    [req for req, _ in batch],
                    self,
                    self._clock(),
                    self._retention.total_seconds(),
                )
            except Exception as exc:  # the store failed: nobody knows what happened
                results = [OutcomeUnknownError(f"simulator store failed: {exc}")] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    @property
    def profiled(self) -> bool:
        return bool(self.failure_rate)

    def network_error(self, req: ChargeRequest, sends: int) -> bool:
        """A fault before anything happens: of (seed, key, how many times it was sent)."""
        rate = self.network_error_rate
        return bool(rate) and _unit(self.seed, req.idempotency_key, "fault", sends) < rate

    def answer_lost(self, req: ChargeRequest, sends: int) -> bool:
        """The answer of a charge just made is lost: of (seed, key, sends)."""
        rate = self.ambiguous_rate
        return bool(rate) and _unit(self.seed, req.idempotency_key, "ambiguous", sends) < rate

    def profile(self, customer_id: int) -> str:
        """The seeded profile of a customer: a stable function of (seed, customer id)."""
        if not self.failure_rate:
            return PROFILE_FUNDED
        u = _unit(self.seed, "customer", customer_id) / self.failure_rate
        if u < 0.5:
            return PROFILE_LOW
        if u < 0.6:
            return PROFILE_NONE
        if u < 0.7:
            return PROFILE_OTHER_CURRENCY
        if u < 0.8:
            return PROFILE_ANSWERS_LOST
        return PROFILE_FUNDED

    def open_account(self, req: ChargeRequest, profile: str) -> Account | None:
        """The account a seeded profile opens at the customer's first charge, `req`."""
        customer, currency = req.customer_id, req.amount.currency
        if profile == PROFILE_NONE:
            return None
        if profile == PROFILE_LOW:  # less than the amount: 0 to 90% of it
            share = _unit(self.seed, "balance", customer) * 0.9
            return Account(customer, currency, int(req.amount.minor * share))
        if profile == PROFILE_OTHER_CURRENCY:
            others = [c for c in ORIGINAL_CURRENCIES if c is not currency]
            other = others[int(_unit(self.seed, "currency", customer) * len(others))]
            return Account(customer, other, FUNDED_BALANCE_MINOR)
        return Account(customer, currency, FUNDED_BALANCE_MINOR)

    async def aclose(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        self.store.close()
