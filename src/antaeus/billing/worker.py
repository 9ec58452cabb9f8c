"""The charge flow (docs/architecture.md, "How a charge happens").

A worker keeps up to `concurrency` provider calls in flight:

1. claim a batch of due invoices of open runs under a lease, writing their
   attempts ahead (one transaction);
2. call the provider for each, outside any transaction, with the attempt's key;
3. record the answers in batches: one transaction writes the invoices, the
   attempts, the run membership and the outbox events, conditionally on the
   lease still being this worker's.

A crash anywhere leaves either nothing, or an open attempt that the next claim
repeats with the same key. Leases are renewed while calls are in flight.

Charging pauses everywhere (one row in the database, read by every worker):

- `provider_unauthorized`: the provider refused the credential. Nothing is
  claimed but one probe invoice every `pause_probe` seconds.
- `provider_unavailable`: most recent calls of a worker ended in unknown
  outcomes (`breaker_threshold` of the last `breaker_window`). No new invoice
  is claimed, but the ones with an open attempt keep being repeated with
  their keys as their backoff comes due, plus one new invoice every
  `breaker_probe` seconds.

Either pause ends when a batch of answers is mostly definite outcomes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import math
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import structlog

from antaeus.billing.attention import WAITING, NeedsPerson, announce
from antaeus.clock import Clock
from antaeus.config import Settings
from antaeus.domain.events import AnsweredTemplate, ChargeAnswered, ChargeRefused, payload
from antaeus.domain.policy import (
    ChargeOutcome,
    Decision,
    InvoiceProgress,
    PolicySettings,
    backoff,
    decide,
    decide_refusal,
    decided_alike,
)
from antaeus.observability import metrics
from antaeus.owners import bounded_owner, new_owner_id
from antaeus.payments.provider import (
    AuthenticationRequiredError,
    CardDeclinedError,
    Charged,
    ChargeRequest,
    CurrencyMismatchError,
    CustomerNotFoundError,
    KeyInUseError,
    KeyReusedError,
    NotSentError,
    OutcomeUnknownError,
    PaymentProvider,
    RateLimitedError,
    Refusal,
    RequestRejectedError,
    UnauthorizedError,
    never_refuses,
    valid_charge_id,
)
from antaeus.storage.database import Database
from antaeus.storage.repositories.billing import BillingRepository, Claimed, OutcomeRow
from antaeus.storage.repositories.charges import RefusedRow
from antaeus.storage.repositories.installation import InstallationRepository

log = structlog.get_logger("antaeus.worker")


def new_worker_id() -> str:
    return new_owner_id()


def _default(name: str) -> Any:
    return Settings.model_fields[name].default


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker runs with; the defaults are `Settings`' own (one home for each)."""

    batch_size: int = _default("BATCH_SIZE")
    concurrency: int = _default("WORKER_CONCURRENCY")
    lease: timedelta = timedelta(seconds=_default("LEASE_SECONDS"))
    poll_interval: float = _default("WORKER_POLL_INTERVAL")
    flush_interval: float = 0.05  # how long a small batch of answers waits for company
    retry_after_max: float = _default("RETRY_AFTER_MAX_SECONDS")
    pause_probe: float = _default("PAUSE_PROBE_SECONDS")
    breaker_window: int = _default("BREAKER_WINDOW")
    breaker_threshold: float = _default("BREAKER_THRESHOLD")
    breaker_probe: float = _default("BREAKER_PROBE_SECONDS")
    provider_check_max_interval: float = 30.0  # the longest wait between health checks


def worker_settings(settings: Settings, concurrency: int | None = None) -> WorkerSettings:
    return WorkerSettings(
        batch_size=settings.BATCH_SIZE,
        concurrency=concurrency or settings.WORKER_CONCURRENCY,
        lease=timedelta(seconds=settings.LEASE_SECONDS),
        poll_interval=settings.WORKER_POLL_INTERVAL,
        retry_after_max=settings.RETRY_AFTER_MAX_SECONDS,
        pause_probe=settings.PAUSE_PROBE_SECONDS,
        breaker_window=settings.BREAKER_WINDOW,
        breaker_threshold=settings.BREAKER_THRESHOLD,
        breaker_probe=settings.BREAKER_PROBE_SECONDS,
    )


_NEVER: Final = datetime.max.replace(tzinfo=UTC)

UNAUTHORIZED = "provider_unauthorized"
UNAVAILABLE = "provider_unavailable"


@dataclass(slots=True)  # not frozen: one per call, on the hot path (never changed)
class Answer:
    """What one call learned: an outcome, or nothing (release / pause)."""

    claimed: Claimed
    outcome: ChargeOutcome | None
    charge_id: str | None = None
    replayed: bool = False
    release_after: float = 0.0  # seconds, when outcome is None
    unauthorized: str | None = None  # the provider refused our credential
    not_sent: bool = False  # no connection to the provider: the call never left
    decline_code: str | None = None  # the provider's, for outcome card_declined
    refusal: Refusal | None = None  # refused before any call (no call was made)


@dataclass
class WorkerStats:
    claimed: int = 0
    recorded: int = 0
    lost_leases: int = 0
    released: int = 0
    handed_back: int = 0  # claimed ahead, never sent, given back at a graceful stop
    unrecordable: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)


class _Decided:
    """One decision as an outcome row and its event take it (`Worker._row`): built once
    per batch for every invoice alike (`decided_alike`), else once per answer."""

    __slots__ = (
        "closes_attempt",
        "dunning_count",
        "eligible_at",
        "event_type",
        "last_failure",
        "next_attempt_at",
        "outcome",
        "run_outcome",
        "run_unknown_since",
        "status",
        "template",
        "unknown_repeats",
    )

    def __init__(self, decision: Decision, outcome: ChargeOutcome, now: datetime) -> None:
        rule = decision.rule
        self.status: str = decision.status.value
        self.last_failure = rule.reason.value if rule.reason else None
        self.next_attempt_at = decision.next_attempt_at
        self.eligible_at = decision.next_attempt_at or now
        self.closes_attempt = rule.closes_attempt
        self.dunning_count = decision.dunning_count
        self.unknown_repeats = decision.unknown_repeats
        self.run_unknown_since = decision.run_unknown_since
        self.run_outcome = rule.run_outcome.value if decision.leaves_run else None
        self.event_type = rule.event_type
        self.outcome: str = outcome.value
        self.template = AnsweredTemplate(
            self.status, self.outcome, self.last_failure, self.next_attempt_at
        )


# Hooks for crash-point tests: called with the batch at each step when set.
CrashHook = Callable[[str, list[Claimed]], None]


class Worker:
    def __init__(
        self,
        db: Database,
        provider: PaymentProvider,
        clock: Clock,
        policy: PolicySettings,
        settings: WorkerSettings | None = None,
        worker_id: str | None = None,
        crash_hook: CrashHook | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.provider = provider
        self.clock = clock
        self.policy = policy
        self.settings = settings or WorkerSettings()
        self.id = bounded_owner(worker_id) if worker_id else new_worker_id()
        self.stats = WorkerStats()
        self._crash_hook = crash_hook
        self._monotonic = monotonic  # probe and pause-check intervals (tests move it by hand)
        self._installation_id: str | None = None
        self._inflight: set[asyncio.Task[Answer]] = set()
        # claimed ahead of a free call slot, so a finished call is replaced at once
        self._ready: collections.deque[Claimed] = collections.deque()
        self._answers: list[Answer] = []
        # Every invoice this worker has a claim on and no recorded answer yet (claimed
        # ahead, in flight, or answered): its claim's token and when its lease ends.
        # Only these leases are renewed, and none of them is ever claimed again.
        self._held: dict[int, tuple[int, datetime]] = {}
        # no lease of `_held` ends before this (lowered by every lease written; a claim
        # looks for expired leases only once it has passed, not at every claim)
        self._held_until = _NEVER
        self._claim_tokens = itertools.count(1)
        self._not_sent_in_a_row = 0
        self._recording = False  # a batch of answers is being written
        self._record_error: Exception | None = None
        self._pause_changes = 0  # bumped by every `_set_paused`
        self._rng = random.Random()
        # the batch's decisions for every invoice alike (`_row`), and the batch's `now`
        self._decided: dict[tuple[ChargeOutcome, int, bool], _Decided] = {}
        self._decided_now: datetime | None = None
        self._decided_policy: PolicySettings | None = None
        self._paused: str | None = None
        self._paused_checked = 0.0
        self._last_probe = 0.0
        # True for each recent call that ended in an unknown outcome (the breaker's window)
        self._recent: collections.deque[bool] = collections.deque(
            maxlen=self.settings.breaker_window
        )
        self.log = log.bind(worker=self.id)
        # a provider whose `refusal` never refuses is not asked (one call less per invoice)
        self._asks_refusal = not never_refuses(provider)

    # -- the loop -------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, until_idle: bool = False) -> None:
        """Charge until `stop` is set; then finish the calls in flight and record them.

        Claiming and recording run as two pipelined loops, so the provider calls in
        flight are topped up while earlier answers are being written. Up to
        `concurrency` invoices are claimed ahead, so a call that ends is replaced at
        once instead of waiting for the next claim.

        With `until_idle`, also return once nothing is due now and every answer is
        recorded (`antaeus bill`'s direct mode and the tests).

        The shape of a small job queue's manager: one `async with` stack of a lease
        heartbeat and an answer recorder (a buffer that flushes on size or time) around
        the claim loop, and one shutdown event, `stop`.
        """
        self.log.info("worker_started", concurrency=self.settings.concurrency)
        if not until_idle:  # (until idle, an unreachable provider's calls end as unknowns)
            await self.wait_for_provider(stop)
        self._room = asyncio.Event()
        self._answered = asyncio.Event()
        self._recorded = asyncio.Event()
        self._record_error = None
        try:
            # The heartbeat is outermost: leases are renewed until the last answer is
            # recorded, not just until `stop`; the recorder's exit records that last one.
            async with self._lease_heartbeat(), self._answer_recorder():
                try:
                    await self._claim_loop(stop, until_idle)
                finally:
                    await self._release_ready()
        finally:
            # debug: the commands print one line of their own at a graceful stop
            self.log.debug("worker_stopped", **self.stats.__dict__)
        if until_idle and self._record_error is not None:
            raise self._record_error  # a caller waiting for idleness must not miss it

    @contextlib.asynccontextmanager
    async def _lease_heartbeat(self) -> AsyncIterator[None]:
        """Renew the leases of every claim held, every third of a lease, while open."""
        done = asyncio.Event()
        renewer = asyncio.create_task(self._renew_leases(done))
        try:
            yield
        finally:
            done.set()
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def _answer_recorder(self) -> AsyncIterator[None]:
        """Record answers as they come, in batches that flush on size or time; on
        exit, wait for the calls still in flight and record every answer left."""
        closing = asyncio.Event()
        recorder = asyncio.create_task(self._record_loop(closing))
        try:
            yield
        finally:
            closing.set()
            self._answered.set()
            await recorder

    async def run_until_idle(self) -> None:
        """Charge until no open run has work left that is due now."""
        await self.run(asyncio.Event(), until_idle=True)

    def _busy(self) -> bool:
        """Calls in flight, claimed ahead, or answers not yet recorded."""
        return bool(self._inflight or self._ready or self._answers or self._recording)

    def _start_call(self, item: Claimed) -> None:
        task = asyncio.get_running_loop().create_task(self._call(item))  # (one frame less)
        self._inflight.add(task)
        task.add_done_callback(self._call_done)

    def _call_done(self, task: asyncio.Task[Answer]) -> None:
        self._inflight.discard(task)
        if not task.cancelled():
            self._answers.append(task.result())
        self._fill()
        self._room.set()
        self._answered.set()

    def _fill(self) -> None:
        """Start calls for invoices claimed ahead, while there are free slots."""
        while self._ready and len(self._inflight) < self.settings.concurrency:
            self._start_call(self._ready.popleft())

    async def _release_ready(self) -> None:
        """Give back invoices claimed ahead but never sent (a graceful stop)."""
        if not self._ready:
            return
        items = list(self._ready)
        self._ready.clear()
        now = self.clock.now()
        try:
            async with self.db.write() as conn:
                await BillingRepository(conn).release(
                    self.id, [(i.invoice_id, i.attempt) for i in items], now, now
                )
            self.stats.handed_back += len(items)
        except Exception:  # their leases expire and another claim takes them
            self.log.exception("release_failed", invoices=len(items))
        self._unhold(items)

    def _unhold(self, items: list[Claimed]) -> None:
        """Forget claims that are answered, released or given up on."""
        for item in items:
            held = self._held.get(item.invoice_id)
            if held is not None and held[0] == item.lease_token:
                del self._held[item.invoice_id]

    async def _claim_loop(self, stop: asyncio.Event, until_idle: bool) -> None:
        concurrency = self.settings.concurrency
        threshold = max(1, min(self.settings.batch_size, concurrency) // 2)
        # answers waiting to be recorded hold claims back beyond this (backpressure)
        backlog = max(self.settings.batch_size, concurrency)
        failures = 0
        while not stop.is_set():
            # room for calls, plus as many claimed ahead
            free = 2 * concurrency - len(self._inflight) - len(self._ready)
            if len(self._answers) >= backlog:
                free = 0
            if free >= threshold or not self._busy():
                self._recorded.clear()
                try:
                    claimed = await self._claim_planned(free)
                except Exception:
                    if until_idle:
                        raise
                    # the database is away for a moment: calls out go on; try again soon
                    failures += 1
                    delay = min(self.settings.poll_interval * 2**failures, 30.0)
                    self.log.exception("claim_failed", retry_in=delay)
                    await _wait(stop, delay)
                    continue
                failures = 0
                self._ready.extend(claimed)
                self._fill()
                if claimed or self._recorded.is_set():
                    continue  # (a batch recorded during the claim may have lifted a pause)
                if not self._busy():
                    if until_idle:
                        return
                    await _wait(stop, self.settings.poll_interval)  # nothing due: poll
                    continue
                # nothing due now, calls still out: look again once answers are recorded
                await _wait_any(stop, self._recorded, self.settings.poll_interval)
                continue
            self._room.clear()
            await _wait_any(stop, self._room, self.settings.poll_interval)

    async def _record_loop(self, closing: asyncio.Event) -> None:
        # enough answers for one efficient transaction, or wait `flush_interval` for more
        enough = max(1, min(self.settings.batch_size, self.settings.concurrency) // 2)
        while True:
            if not self._answers:
                if closing.is_set() and not self._inflight:
                    return
                self._answered.clear()
                await _wait_any(closing, self._answered, self.settings.poll_interval)
                if closing.is_set() and self._inflight and not self._answers:
                    await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
                continue
            if len(self._answers) < enough and self._inflight:
                await asyncio.sleep(self.settings.flush_interval)  # let more answers join
            size = self.settings.batch_size
            batch, self._answers = self._answers[:size], self._answers[size:]
            self._recording = True
            try:
                await self._record_isolating(batch)
            except Exception as exc:
                # The database is away: leases expire and another claim repeats
                # these with their keys (the provider answers what it did).
                self.log.exception("record_failed", invoices=len(batch))
                self._record_error = self._record_error or exc
                await asyncio.sleep(self.settings.poll_interval)
            finally:
                self._recording = False
            self._room.set()
            self._recorded.set()

    async def _record_isolating(self, batch: list[Answer]) -> None:
        """Record `batch`; when that fails, record all that can be and give up only
        on the answers that cannot (each alone in a failed transaction).

        Raises when the database itself is away (nothing can be recorded). An
        answer given up on keeps its invoice PROCESSING under a lease that is no
        longer renewed: it expires, and the next claim repeats the call with the
        attempt's key (the provider answers what it did), or the scheduler sends
        the invoice to REVIEW before the key's retention ends.
        """
        try:
            await self.record(batch)
            return
        except Exception as exc:
            if not await self._database_answers():
                self._unhold([a.claimed for a in batch])
                raise
            if len(batch) == 1:
                self._give_up(batch[0], exc)
                return
        half = len(batch) // 2
        await self._record_isolating(batch[:half])
        await self._record_isolating(batch[half:])

    async def _database_answers(self) -> bool:
        try:
            async with self.db.write() as conn:
                await BillingRepository(conn).pause_state()
        except Exception:
            return False
        return True

    def _give_up(self, answer: Answer, exc: Exception) -> None:
        item = answer.claimed
        self._unhold([item])
        self._record_error = self._record_error or exc  # until idle, the caller hears of it
        self.stats.unrecordable += 1
        metrics.ANSWERS_UNRECORDABLE.inc()
        self.log.error(
            "answer_unrecordable",
            invoice_id=item.invoice_id,
            attempt=item.attempt,
            idempotency_key=item.idempotency_key,
            outcome=answer.outcome.value if answer.outcome else None,
            error=f"{type(exc).__name__}: {exc}"[:500],
            action="left to its lease: the next claim repeats the call with the same key",
        )

    # -- the three steps --------------------------------------------------------

    async def _claim_planned(self, free: int) -> list[Claimed]:
        """Claim what the pause state allows into `free` slots (see the module's doc)."""
        limit = min(free, self.settings.batch_size)
        if limit <= 0:
            return []
        if not await self._is_paused():
            # tripped here but not yet recorded as a pause: hold new claims already
            tripped = self._breaker_trips() is not None
            return await self.claim(limit, open_attempts_only=tripped)
        assert self._paused is not None
        unavailable = self._paused.startswith(UNAVAILABLE)
        claimed = await self.claim(limit, open_attempts_only=True) if unavailable else []
        probe_every = self.settings.breaker_probe if unavailable else self.settings.pause_probe
        if (
            not claimed
            and not self._inflight
            and self._monotonic() - self._last_probe >= probe_every
        ):
            self._last_probe = self._monotonic()
            claimed = await self.claim(1)
        return claimed

    async def claim(self, limit: int, *, open_attempts_only: bool = False) -> list[Claimed]:
        now = self.clock.now()
        lease_until = now + self.settings.lease
        token = next(self._claim_tokens)
        # Leases this worker could not renew in time (the database was away) have
        # expired, but their calls are still out: never claim those again.
        expired: list[int] = []
        if now >= self._held_until:
            expired = [i for i, (_, until) in self._held.items() if until <= now]
            self._held_until = min(
                (until for _, until in self._held.values() if until > now), default=_NEVER
            )
        async with self.db.write() as conn:
            if self._installation_id is None:
                self._installation_id = await InstallationRepository(conn).installation_id()
            claimed = await BillingRepository(conn).claim(
                self.id,
                now,
                lease_until,
                self.policy.repeat_cut(now),
                limit,
                self._installation_id,
                token=token,
                exclude=expired,
                open_attempts_only=open_attempts_only,
            )
        for item in claimed:
            self._held[item.invoice_id] = (token, lease_until)
        if claimed and lease_until < self._held_until:
            self._held_until = lease_until
        self.stats.claimed += len(claimed)
        if claimed and self._crash_hook:
            self._crash_hook("after_claim", claimed)
        return claimed

    async def _call(self, item: Claimed) -> Answer:
        request = ChargeRequest(
            item.invoice_id,
            item.customer_id,
            item.amount,
            item.idempotency_key,
            attempt=item.attempt,
            provider_customer_id=item.provider_customer_id,
            provider_payment_method_id=item.provider_payment_method_id,
        )
        if self._asks_refusal:
            try:
                refusal = self.provider.refusal(request)
            except Exception:  # a provider bug: ask it (the call decides, as for any provider)
                self.log.exception("refusal_crashed", invoice_id=item.invoice_id)
                refusal = None
            if refusal is not None:
                # No call, not a provider answer: neither timed nor counted by the breaker.
                return Answer(item, None, refusal=_bounded(refusal))
        started = time.perf_counter()  # (what CHARGE_SECONDS.time() does, without its object)
        try:
            answer = await self._charge(item, request)
        finally:
            metrics.CHARGE_SECONDS.observe(time.perf_counter() - started)
        # the breaker's window counts each answer as it comes, not when it is recorded;
        # a provider that cannot be reached counts as one that does not answer
        if answer.outcome is not None:
            self._recent.append(answer.outcome is ChargeOutcome.UNKNOWN)
        elif answer.not_sent:
            self._recent.append(True)
        return answer

    async def _charge(self, item: Claimed, request: ChargeRequest) -> Answer:
        waited = 0.0
        while True:
            try:
                result = await self.provider.charge(request)
            except (RateLimitedError, KeyInUseError) as exc:
                # Nothing happened: wait and repeat with the same key (not an attempt).
                # Bounded whatever the provider said (a provider may not clamp it).
                most = self.settings.retry_after_max
                delay = exc.retry_after if math.isfinite(exc.retry_after) else math.inf
                delay = max(delay, 0.05)
                if waited + delay > most:  # give the invoice back for a while instead
                    return Answer(item, None, release_after=min(delay, max(most, 0.05)))
                waited += delay
                await asyncio.sleep(delay)
                continue
            except UnauthorizedError as exc:
                return Answer(item, None, unauthorized=str(exc) or "unauthorized")
            except NotSentError as exc:
                # Nothing left this process: as if never claimed, back in a moment.
                self._not_sent_in_a_row += 1
                wait = backoff(self.policy, self._not_sent_in_a_row, self._rng.random())
                self.log.debug("charge_not_sent", invoice_id=item.invoice_id, error=str(exc))
                return Answer(item, None, release_after=wait.total_seconds(), not_sent=True)
            except CustomerNotFoundError:
                return Answer(item, ChargeOutcome.CUSTOMER_NOT_FOUND)
            except CurrencyMismatchError:
                return Answer(item, ChargeOutcome.CURRENCY_MISMATCH)
            except RequestRejectedError as exc:
                self.log.error("charge_rejected", invoice_id=item.invoice_id, error=str(exc))
                return Answer(item, ChargeOutcome.REJECTED)
            except KeyReusedError:
                return Answer(item, ChargeOutcome.KEY_REUSED)
            except CardDeclinedError as exc:
                code: str | None = exc.decline_code
                if not valid_charge_id(code):  # bounded like a charge id; the outcome stands
                    self.log.warning(
                        "decline_code_malformed",
                        invoice_id=item.invoice_id,
                        decline_code=repr(code)[:80],
                    )
                    code = None
                return Answer(item, ChargeOutcome.CARD_DECLINED, decline_code=code)
            except AuthenticationRequiredError:
                return Answer(item, ChargeOutcome.AUTHENTICATION_REQUIRED)
            except OutcomeUnknownError as exc:
                self.log.debug("charge_unknown", invoice_id=item.invoice_id, error=str(exc))
                return Answer(item, ChargeOutcome.UNKNOWN)
            except Exception:  # a provider bug: nobody knows whether money moved
                self.log.exception("charge_crashed", invoice_id=item.invoice_id)
                return Answer(item, ChargeOutcome.UNKNOWN)
            self._not_sent_in_a_row = 0
            if isinstance(result, Charged):
                if not valid_charge_id(result.charge_id):
                    # whatever the provider: a charge id we cannot store is no answer
                    self.log.warning(
                        "charge_id_malformed",
                        invoice_id=item.invoice_id,
                        charge_id=repr(result.charge_id)[:80],
                    )
                    return Answer(item, ChargeOutcome.UNKNOWN)
                return Answer(item, ChargeOutcome.CHARGED, result.charge_id, result.replayed)
            return Answer(item, ChargeOutcome.INSUFFICIENT_FUNDS, replayed=result.replayed)

    async def record(self, answers: list[Answer]) -> None:
        if self._crash_hook:
            self._crash_hook("before_record", [a.claimed for a in answers])
        now = self.clock.now()
        outcomes = [a for a in answers if a.outcome is not None]
        refused = [a for a in answers if a.refusal is not None]
        releases = [a for a in answers if a.outcome is None and a.refusal is None]
        rows = {id(a): self._row(a, now) for a in outcomes}
        refused_rows = {id(a): self._refused_row(a) for a in refused}
        async with self.db.write() as conn:
            repo = BillingRepository(conn)
            owned = await repo.still_owned(self.id, [a.claimed.invoice_id for a in answers])
            # An answer counts only for the claim it belongs to, once.
            current: dict[int, Answer] = {}
            for a in answers:
                if owned.get(a.claimed.invoice_id, -1) == a.claimed.lease_token:
                    current.setdefault(a.claimed.invoice_id, a)
            kept = {id(a) for a in current.values()}
            mine = [rows[id(a)] for a in outcomes if id(a) in kept]
            completed = await repo.record(self.id, mine, now)
            mine_refused = [refused_rows[id(a)] for a in refused if id(a) in kept]
            completed += await repo.refuse(self.id, mine_refused, now)
            # one UPDATE per distinct delay, not one per invoice (a 401 releases a whole batch)
            by_delay: dict[float, list[tuple[int, int]]] = {}
            for a in releases:
                if id(a) in kept:
                    by_delay.setdefault(a.release_after, []).append(
                        (a.claimed.invoice_id, a.claimed.attempt)
                    )
            for delay, sent in by_delay.items():
                await repo.release(self.id, sent, now + timedelta(seconds=delay), now)
            unauthorized = next((a.unauthorized for a in releases if a.unauthorized), None)
            unknown = sum(1 for a in outcomes if a.outcome is ChargeOutcome.UNKNOWN)
            definite = len(outcomes) - unknown
            tripped = None if self._paused or unauthorized else self._breaker_trips()
            resumed = False
            if unauthorized:
                await repo.pause(UNAUTHORIZED, unauthorized, now)
            elif tripped:
                await repo.pause(UNAVAILABLE, tripped, now)
            elif self._paused and definite > unknown:
                resumed = await repo.resume(now)
            if self._crash_hook:
                self._crash_hook("before_commit", [a.claimed for a in answers])
        self._unhold([a.claimed for a in answers])
        recorded = [(a.claimed, rows[id(a)]) for a in outcomes if id(a) in kept]
        announce(
            itertools.chain(
                (
                    NeedsPerson(
                        invoice_id=r.invoice_id,
                        attempt=r.attempt,
                        idempotency_key=claimed.idempotency_key,
                        status=r.status,
                        reason=r.last_failure or r.attempt_outcome,
                    )
                    for claimed, r in recorded
                    if r.status in WAITING
                ),
                (
                    NeedsPerson(
                        invoice_id=a.claimed.invoice_id,
                        attempt=a.claimed.attempt,
                        idempotency_key=a.claimed.idempotency_key,
                        status=refused_rows[id(a)].status,
                        reason=refused_rows[id(a)].last_failure,
                    )
                    for a in refused
                    if id(a) in kept
                ),
            ),
            worker=self.id,
        )
        lost = [a.claimed.invoice_id for a in answers if id(a) not in kept]
        if lost:
            self.stats.lost_leases += len(lost)
            metrics.LEASES_LOST.inc(len(lost))
            self.log.warning("lease_lost", invoices=lost)
        if unauthorized:
            self._set_paused(f"{UNAUTHORIZED}: {unauthorized}")
            self.log.error("charging_paused", reason=UNAUTHORIZED, detail=unauthorized)
        elif tripped:
            self._set_paused(f"{UNAVAILABLE}: {tripped}")
            self.log.error(
                "charging_paused",
                reason=UNAVAILABLE,
                detail=tripped,
                action="no new invoices are claimed; open attempts keep being repeated",
            )
        elif self._paused and definite > unknown:
            self._set_paused(None)
            self._recent.clear()
            if resumed:
                self.log.warning("charging_resumed", definite=definite, unknown=unknown)
        self.stats.recorded += len(mine) + len(mine_refused)  # a refusal is recorded too
        self.stats.released += sum(1 for a in releases if id(a) in kept)
        # the counters once per outcome of the batch, not once per invoice
        for outcome, n in collections.Counter(r.attempt_outcome for r in mine).items():
            metrics.CHARGES.labels(outcome).inc(n)
            self.stats.by_outcome[outcome] = self.stats.by_outcome.get(outcome, 0) + n
        info = self.log.info
        for claimed, r in recorded:
            # one line per state change (after commit); never a token or a secret
            info(
                "invoice_answered",
                invoice_id=r.invoice_id,
                attempt=r.attempt,
                idempotency_key=claimed.idempotency_key,
                run_id=r.run_id,
                outcome=r.attempt_outcome,
                status=r.status,
                charge_id=r.charge_id,
            )
        for a in refused:
            if id(a) not in kept or a.refusal is None:
                continue
            ref = refused_rows[id(a)]
            # (not an answer of the provider: counted by the refusal's reason)
            reason = ref.last_failure
            self.stats.by_outcome[reason] = self.stats.by_outcome.get(reason, 0) + 1
            info(
                "invoice_refused",
                invoice_id=ref.invoice_id,
                attempt=None if ref.takes_back_attempt else ref.attempt,
                run_id=ref.run_id,
                reason=a.refusal.reason,
                detail=a.refusal.detail,
                status=ref.status,
                attempt_taken_back=ref.takes_back_attempt,
            )
        if completed:
            await self._runs_completed(completed)

    async def _runs_completed(self, run_ids: list[int]) -> None:
        """Log and time the runs this record completed (after commit; once per run)."""
        try:
            async with self.db.read() as conn:
                repo = BillingRepository(conn)
                runs = [await repo.get_run(r) for r in run_ids]
        except Exception:  # only the log line's duration and the histogram are lost
            runs = []
        durations = {
            r.id: (r.completed_at - r.started_at).total_seconds()
            for r in runs
            if r is not None and r.completed_at is not None
        }
        for run_id in run_ids:
            seconds = durations.get(run_id)
            if seconds is not None:
                metrics.RUN_SECONDS.observe(seconds)
            self.log.info("run_completed", run_id=run_id, duration_seconds=seconds)

    def _row(self, answer: Answer, now: datetime) -> OutcomeRow:
        item = answer.claimed
        outcome = answer.outcome
        assert outcome is not None
        if now != self._decided_now or self.policy is not self._decided_policy:
            self._decided.clear()  # another batch (another `now`): decide afresh
            self._decided_now, self._decided_policy = now, self.policy
        key = (outcome, item.dunning_count, item.sends > 1)
        d = self._decided.get(key)
        if d is None:
            d = _Decided(
                decide(
                    outcome,
                    InvoiceProgress(
                        dunning_count=item.dunning_count,
                        attempt_open_since=item.attempt_open_since,
                        run_unknown_since=item.run_unknown_since,
                        unknown_repeats=item.unknown_repeats,
                        earlier_sends=item.sends - 1,
                    ),
                    now,
                    self.policy,
                    jitter=self._rng.random(),
                ),
                outcome,
                now,
            )
            if decided_alike(outcome, self.policy):  # once per batch for all invoices alike
                self._decided[key] = d
        text = d.template.text(
            item.invoice_id,
            item.customer_id,
            item.amount,
            item.due_at,
            item.attempt,
            item.idempotency_key,
            answer.charge_id,
            item.run_id,
            answer.decline_code,
        )
        if text is None:  # a field the template does not write: the general encoder
            text = payload(
                ChargeAnswered(
                    type=d.event_type,
                    invoice_id=item.invoice_id,
                    customer_id=item.customer_id,
                    amount=item.amount,
                    due_at=item.due_at,
                    status=d.status,
                    outcome=d.outcome,
                    attempt=item.attempt,
                    idempotency_key=item.idempotency_key,
                    charge_id=answer.charge_id,
                    reason=d.last_failure,
                    run_id=item.run_id,
                    next_attempt_at=d.next_attempt_at,
                    decline_code=answer.decline_code,
                )
            )
        return OutcomeRow(
            invoice_id=item.invoice_id,
            lease_token=item.lease_token,
            run_id=item.run_id,
            attempt=item.attempt,
            status=d.status,
            last_failure=d.last_failure,
            next_attempt_at=d.next_attempt_at,
            eligible_at=d.eligible_at,
            attempt_open_since=None if d.closes_attempt else item.attempt_open_since,
            dunning_count=d.dunning_count,
            unknown_repeats=d.unknown_repeats,
            run_unknown_since=d.run_unknown_since,
            attempt_outcome=d.outcome,
            attempt_finished=d.closes_attempt,
            charge_id=answer.charge_id,
            run_outcome=d.run_outcome,
            event_type=d.event_type,
            event_payload=text,
            decline_code=answer.decline_code,
        )

    def _refused_row(self, answer: Answer) -> RefusedRow:
        item = answer.claimed
        assert answer.refusal is not None
        decision = decide_refusal(answer.refusal.reason, item.sends - 1)
        kept = not decision.takes_back_attempt
        event = ChargeRefused(
            type=decision.event_type,
            invoice_id=item.invoice_id,
            customer_id=item.customer_id,
            amount=item.amount,
            due_at=item.due_at,
            status=decision.status.value,
            attempt_count=item.attempt if kept else item.attempt - 1,
            reason=decision.reason.value,
            refusal_reason=answer.refusal.reason,
            detail=answer.refusal.detail,
            run_id=item.run_id,
            open_attempt=item.attempt if kept else None,
            idempotency_key=item.idempotency_key if kept else None,
        )
        return RefusedRow(
            invoice_id=item.invoice_id,
            lease_token=item.lease_token,
            run_id=item.run_id,
            attempt=item.attempt,
            status=decision.status.value,
            last_failure=decision.reason.value,
            takes_back_attempt=decision.takes_back_attempt,
            run_outcome=decision.run_outcome.value,
            event_type=decision.event_type,
            event_payload=payload(event),
        )

    # -- helpers ----------------------------------------------------------------

    def _breaker_trips(self) -> str | None:
        """Why new claims should stop, when most recent calls ended in unknown outcomes."""
        window = self._recent
        if len(window) < max(10, (window.maxlen or 0) // 2):
            return None
        unknown = sum(window)
        if unknown < self.settings.breaker_threshold * len(window):
            return None
        return f"{unknown} of the last {len(window)} calls had unknown outcomes"

    async def wait_for_provider(self, stop: asyncio.Event) -> None:
        """Until the provider answers its health check (or `stop`): report and keep trying."""
        check = getattr(self.provider, "check", None)
        if check is None:
            return
        delay, failures = 1.0, 0
        while not stop.is_set():
            try:
                await check()
            except Exception as exc:
                failures += 1
                self.log.error(
                    "provider_unreachable",
                    error=str(exc),
                    retry_in=delay,
                    action="charging waits for the provider; nothing is claimed",
                )
                await _wait(stop, delay)
                delay = min(delay * 2, self.settings.provider_check_max_interval)
                continue
            if failures:
                self.log.warning("provider_reachable", after_failures=failures)
            return

    def _set_paused(self, reason: str | None) -> None:
        """What this worker's own recorded batch decided (newer than any read in flight)."""
        self._paused = reason
        self._pause_changes += 1
        metrics.CHARGING_PAUSED.set(1 if reason else 0)

    async def _is_paused(self) -> bool:
        if self._monotonic() - self._paused_checked > 1.0:
            seen = self._pause_changes
            async with self.db.read() as conn:
                reason, _ = await BillingRepository(conn).pause_state()
            # A batch recorded meanwhile that paused or resumed is newer than this read.
            if seen == self._pause_changes:
                if self._paused and not reason:
                    self._recent.clear()  # resumed elsewhere: start counting afresh
                self._paused = reason
                self._paused_checked = self._monotonic()
                # paused by another worker's answer: this one says so too
                metrics.CHARGING_PAUSED.set(1 if reason else 0)
        return self._paused is not None

    async def renew_leases(self) -> int:
        """Extend the lease of every invoice this worker holds a claim on; answers how many."""
        if not self._held:
            return 0
        now = self.clock.now()
        until = now + self.settings.lease
        async with self.db.write() as conn:
            renewed = await BillingRepository(conn).renew_leases(self.id, list(self._held), until)
        for invoice_id in renewed:
            held = self._held.get(invoice_id)
            if held is not None:
                self._held[invoice_id] = (held[0], until)
        if renewed and until < self._held_until:  # (a clock set back)
            self._held_until = until
        return len(renewed)

    async def _renew_leases(self, stop: asyncio.Event) -> None:
        interval = max(self.settings.lease.total_seconds() / 3, 1.0)
        while not stop.is_set():
            await _wait(stop, interval)
            try:
                await self.renew_leases()
            except Exception:
                self.log.exception("lease_renewal_failed")


_MAX_REFUSAL_TEXT = 500


def _bounded(refusal: Refusal) -> Refusal:
    """A refusal as it may be stored and logged: one line of printable text, bounded."""

    def clean(text: object, limit: int) -> str:
        value = "".join(c if c.isprintable() else " " for c in str(text))
        return value[:limit]

    return Refusal(clean(refusal.reason, 64), clean(refusal.detail, _MAX_REFUSAL_TEXT))


async def _wait_any(stop: asyncio.Event, other: asyncio.Event, seconds: float) -> None:
    """Until `stop` or `other` is set, or `seconds` pass."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(other.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
