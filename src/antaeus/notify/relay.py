"""The outbox relay: every event, to every destination that takes it, at least once.

Each `serve` and `worker` process runs one (`--no-relay` turns it off). A step:

1. fan out: events not yet fanned out get one delivery per destination that
   existed when they were written and takes their type (`event_deliveries`);
2. claim due deliveries (a lease: `next_try_at` moves to its end), skipping
   destinations that already have `per_destination` tries in flight here, so
   a receiver that hangs holds a few slots, never all of them; a few more per
   destination wait here, each started as soon as a try to its destination
   ends (not a round later), or handed back once half its lease passed;
3. try each (webhook POST, broker publish with confirm) as a task of its own;
4. record what the finished tries did in one transaction: delivered, or the
   next try after a backoff (webhooks: about 5 s, 5 min, 30 min, 2 h, 5 h,
   10 h, then every 10 h; the broker: capped exponential), each with jitter;
   a webhook failing for three days is `disabled` until a person enables it;
5. now and then, prune events older than the retention that went everywhere.

The relay's database work is short transactions of its own; a destination that
is down delays only its own deliveries; a database error is logged and the
relay backs off, never stopping the process, charging or the API; rounds that
keep failing for a minute are an error line (`relay_cannot_claim`), the gauge
`antaeus_relay_stalled` and `"relay": {"state": "failing"}` in
`GET /rest/v1/status`. At its start a relay makes the broker's destination (with
ANTAEUS_AMQP_URL: reached at once, its exchange declared) or retires it
(without). On PostgreSQL it also watches for transactions open over a minute,
which hold back the events list (`long_transaction`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Protocol

import structlog

from antaeus.clock import Clock
from antaeus.exactjson import rfc3339
from antaeus.notify.addresses import origin
from antaeus.notify.envelope import event_id
from antaeus.notify.webhooks import TryResult, WebhookSender
from antaeus.observability import metrics
from antaeus.owners import bounded_owner, new_owner_id
from antaeus.storage.database import Database
from antaeus.storage.repositories.outbox import (
    Claimed,
    DeliveryRepository,
    Destination,
    DestinationRepository,
    EventRepository,
    Outcome,
)

#: Standard Webhooks' retry schedule: the wait after the 1st, 2nd, ... failed try.
WEBHOOK_SCHEDULE: Final = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
)
WEBHOOK_GIVE_UP: Final = timedelta(days=3)  # failing this long: the endpoint is disabled
BROKER_BACKOFF_BASE: Final = 1.0
BROKER_BACKOFF_MAX: Final = 300.0


def next_webhook_try(tries: int, now: datetime, rng: random.Random) -> datetime:
    """When to try again after `tries` failed tries (±10% jitter)."""
    wait = WEBHOOK_SCHEDULE[min(tries, len(WEBHOOK_SCHEDULE)) - 1]
    return now + wait * rng.uniform(0.9, 1.1)


def next_broker_try(tries: int, now: datetime, rng: random.Random) -> datetime:
    """Capped exponential backoff with full jitter (at least a tenth of the cap's step)."""
    cap = min(BROKER_BACKOFF_MAX, BROKER_BACKOFF_BASE * 2 ** min(tries - 1, 30))
    return now + timedelta(seconds=rng.uniform(cap / 10, cap))


class Sender(Protocol):
    """Delivers claimed deliveries of one destination kind."""

    kind: str

    async def deliver(self, claimed: Claimed) -> TryResult: ...

    async def aclose(self) -> None: ...


class WebhookDestinations:
    """The webhook kind: the event's JSON, signed with the endpoint's secret."""

    kind = "webhook"

    def __init__(self, sender: WebhookSender | None = None) -> None:
        self.sender = sender or WebhookSender()

    async def deliver(self, claimed: Claimed) -> TryResult:
        destination = claimed.destination
        assert destination.secret is not None  # every webhook row has one
        return await self.sender.send(
            destination.url, destination.secret, event_id(claimed.event.id), claimed.event.body()
        )

    async def aclose(self) -> None:
        await self.sender.aclose()


@dataclass
class RelaySettings:
    concurrency: int = 64  # tries in flight in this process
    per_destination: int = 8  # of which at most this many to one destination
    waiting_per_destination: int = 32  # claimed, started as its tries end (lease/2 at most)
    batch: int = 500  # events fanned out, deliveries claimed, per statement
    poll_interval: float = 0.5  # seconds between steps when there is nothing to do
    lease: timedelta = timedelta(seconds=60)  # longer than a try can take
    retention: timedelta = timedelta(days=30)
    prune_every: float = 60.0  # seconds
    gauges_every: float = 5.0  # seconds
    stalled_after: timedelta = timedelta(minutes=1)  # no round this long: an error, loudly
    long_transaction: timedelta = timedelta(seconds=60)  # PostgreSQL: said and counted


@dataclass
class RelayStats:
    fanned_out: int = 0
    delivered: int = 0
    failed: int = 0
    pruned: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class Relay:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        senders: Sequence[Sender],
        settings: RelaySettings | None = None,
        relay_id: str | None = None,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.clock = clock
        self.senders = {s.kind: s for s in senders}
        self.settings = settings or RelaySettings()
        self.id = bounded_owner(relay_id) if relay_id else new_owner_id("relay")
        self.rng = rng or random.Random()
        self.monotonic = monotonic
        self.stats = RelayStats()
        self.log = structlog.get_logger("antaeus.relay").bind(relay=self.id)
        self._inflight: dict[asyncio.Task[Outcome], int] = {}  # task -> destination id
        self._done: list[Outcome] = []
        # claimed, waiting for a slot of their destination: (claimed, when, monotonic)
        self._queued: dict[int, deque[tuple[Claimed, float]]] = {}
        self._stopping = False
        self._wake = asyncio.Event()
        self._last_prune = float("-inf")
        self._last_gauges = float("-inf")
        # rounds failing since (the injected clock), the last error, and whether the
        # error line and the metric have said so (after `stalled_after`)
        self.failing_since: datetime | None = None
        self.last_error: str | None = None
        self.stalled = False
        self._long_seen: set[tuple[int, datetime]] = set()  # (pid, xact_start) said once

    # -- the loop -------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop`; then let the tries in flight end and record them."""
        self.log.info("relay_started", kinds=sorted(self.senders))
        while not stop.is_set():  # the broker's destination: made, enabled or retired
            try:
                await self.prepare()
                self._succeeded()
                break
            except Exception as exc:
                self._failed(exc)
                await self._sleep(stop, 2.0)
        failures = 0
        try:
            while not stop.is_set():
                busy = await self.attempt()
                if busy is None:  # the database, mostly: said, back off, go on
                    failures += 1
                    await self._sleep(stop, min(30.0, 0.5 * 2**failures))
                    continue
                failures = 0
                if not busy:
                    await self._sleep(stop, self.settings.poll_interval)
        finally:
            await self.drain()
            self.log.debug("relay_stopped", **self.stats.__dict__)

    async def prepare(self) -> None:
        """Before the first round: the broker's destination row as this process's settings
        say. With ANTAEUS_AMQP_URL, made once for every relay (enabled again, for new
        events only, if it was retired) and the broker reached at once, so that its
        exchange exists before the first event (consumers can bind); without it, retired:
        nothing more is sent to it and it holds back no pruning."""
        broker = self.senders.get("amqp")
        if broker is None:
            async with self.db.write() as conn:
                retired = await DestinationRepository(conn).retire_amqp(self.clock.now())
            if retired is not None:
                self.log.warning(
                    "broker_destination_retired",
                    destination=retired.id,
                    reason="ANTAEUS_AMQP_URL is not set in this process",
                    action="set ANTAEUS_AMQP_URL (the same in every process that relays) to "
                    "publish again: events written from then on are published",
                )
            return
        shown = getattr(broker, "url_shown", "amqp")
        now = self.clock.now()
        async with self.db.write() as conn:
            enabled = await DestinationRepository(conn).ensure_amqp(shown, now)
        if enabled.events_since == now:  # it was retired until now
            self.log.info(
                "broker_destination_enabled", destination=enabled.id, events_since=now.isoformat()
            )
        connect = getattr(broker, "connect", None)
        if connect is not None:
            try:
                await connect()
            except Exception as exc:  # deliveries try again, with backoff: said, not fatal
                self.log.warning("broker_unreachable", error=f"{type(exc).__name__}: {exc}")

    async def attempt(self) -> bool | None:
        """One round (`step`) whose failure is said and counted: busy, or None if it failed."""
        try:
            busy = await self.step()
        except Exception as exc:
            self._failed(exc)
            return None
        self._succeeded()
        return busy

    def _failed(self, exc: Exception) -> None:
        """A round failed: a warning; failing for `stalled_after`, an error line and the
        `antaeus_relay_stalled` gauge (once, until a round succeeds again)."""
        now = self.clock.now()
        self.last_error = f"{type(exc).__name__}: {exc}"[:500]
        if self.failing_since is None:
            self.failing_since = now
        self.log.warning("relay_failed", error=self.last_error)
        if not self.stalled and now - self.failing_since >= self.settings.stalled_after:
            self.stalled = True
            metrics.RELAY_STALLED.set(1)
            self.log.error(
                "relay_cannot_claim",
                failing_since=self.failing_since.isoformat(),
                seconds=int((now - self.failing_since).total_seconds()),
                error=self.last_error,
                action="no event is delivered from this process: fix the error above "
                "(GET /rest/v1/status shows it)",
            )

    def _succeeded(self) -> None:
        if self.stalled:
            metrics.RELAY_STALLED.set(0)
            self.log.info("relay_recovered", failing_since=str(self.failing_since))
        self.stalled = False
        self.failing_since = None
        self.last_error = None

    def health(self) -> dict[str, str | None]:
        """This relay for `GET /rest/v1/status`: running, or failing (no round for a minute)."""
        since = self.failing_since
        return {
            "state": "failing" if self.stalled else "running",
            "failingSince": rfc3339(since) if since is not None else None,
            "lastError": self.last_error,
        }

    async def run_until_idle(self, within: float = 60.0) -> None:
        """Step until nothing is left to fan out, claim now or record (tests, benchmarks)."""
        deadline = self.monotonic() + within
        while self.monotonic() < deadline:
            busy = await self.step()
            if self._inflight:
                await asyncio.wait(set(self._inflight), return_when=asyncio.FIRST_COMPLETED)
                continue
            if not busy and not self._done and not self._queued:
                return
        raise TimeoutError("the relay did not become idle")

    async def step(self) -> bool:
        """One round; answers whether it found anything to do.

        Recording the finished tries, fanning out and claiming are one write
        transaction (one commit per round, not three: on SQLite each is a sync).
        """
        self._wake.clear()  # what ends from here on wakes the next sleep (none is lost)
        now = self.clock.now()
        outcomes, self._done = self._done, []
        # room to start tries, and to keep claimed deliveries waiting (as many again)
        room = 2 * self.settings.concurrency - len(self._inflight) - self._queued_count()
        claimed: list[Claimed] = []
        disabled: list[Destination] = []
        fanned = 0
        wanted = bool(outcomes)
        if not wanted:  # an idle round only reads: no write lock taken
            async with self.db.read() as conn:
                to_fan, to_claim = await EventRepository(conn).work_waiting(
                    now, sorted(self.senders)
                )
            wanted = to_fan or (to_claim and room > 0 and bool(self.senders))
        try:
            if wanted:
                async with self.db.write() as conn:
                    repo = DeliveryRepository(conn)
                    if outcomes:
                        disabled = await repo.record(
                            self.id, outcomes, self.clock.now(), WEBHOOK_GIVE_UP
                        )
                    fanned = await repo.fan_out(now, self.settings.batch)
                    if room > 0 and self.senders:
                        claimed = await self._claim(repo, now, room)
        except Exception:
            self._done = outcomes + self._done  # written again next round
            raise
        self._recorded(outcomes, disabled)
        if fanned:
            self.stats.fanned_out += fanned
        for item in claimed:
            self._start(item)
        self._start_ready()
        busy = bool(outcomes or fanned or claimed)
        tick = self.monotonic()
        if tick - self._last_prune >= self.settings.prune_every:
            self._last_prune = tick
            await self._prune(now)
        if tick - self._last_gauges >= self.settings.gauges_every:
            self._last_gauges = tick
            await self._gauges(now)
        return busy

    async def drain(self) -> None:
        self._stopping = True  # what waits is handed back, not started
        now = self.clock.now()
        for waiting in self._queued.values():
            self._done.extend(
                Outcome(item, False, None, None, 0, now, released=True) for item, _ in waiting
            )
        self._queued.clear()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        try:
            await self._record()
        except Exception as exc:  # their leases end and another relay tries them again
            self.log.warning("relay_record_failed", error=f"{type(exc).__name__}: {exc}")

    # -- claims and tries -----------------------------------------------------

    async def _claim(self, repo: DeliveryRepository, now: datetime, room: int) -> list[Claimed]:
        per = self.settings.per_destination
        counts: dict[int, int] = {}
        for destination in self._inflight.values():
            counts[destination] = counts.get(destination, 0) + 1
        held = dict(counts)  # in flight and waiting here, per destination
        for d, queued in self._queued.items():
            held[d] = held.get(d, 0) + len(queued)
        claimed = await repo.claim(
            self.id,
            sorted(self.senders),
            now,
            self.settings.lease,
            min(room, self.settings.batch),
            per_destination=per + self.settings.waiting_per_destination,
            inflight=held,
        )
        # at most `per_destination` each in flight (and `concurrency` in all), at most
        # `waiting_per_destination` each waiting (`concurrency` in all); the rest go back
        kept: list[Claimed] = []
        back: list[Claimed] = []
        tick = self.monotonic()
        flying = len(self._inflight)
        waiting_now = self._queued_count()
        for item in claimed:
            d = item.destination.id
            if counts.get(d, 0) < per and flying < self.settings.concurrency:
                counts[d] = counts.get(d, 0) + 1
                flying += 1
                kept.append(item)
            elif (
                len(waiting := self._queued.setdefault(d, deque()))
                < self.settings.waiting_per_destination
                and waiting_now < self.settings.concurrency
            ):
                waiting.append((item, tick))
                waiting_now += 1
            else:
                back.append(item)
        if back:
            self._done.extend(
                Outcome(item, False, None, None, 0, now, released=True) for item in back
            )
        return kept

    def _start(self, item: Claimed) -> None:
        task = asyncio.create_task(self._try(item))
        self._inflight[task] = item.destination.id
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Outcome]) -> None:
        destination = self._inflight.pop(task, None)
        if not task.cancelled():
            self._done.append(task.result())
        if destination is not None and not self._stopping:
            self._start_waiting(destination)
        self._wake.set()

    def _start_waiting(self, destination: int) -> None:
        """The next claimed delivery waiting for this destination, if its lease has time."""
        waiting = self._queued.get(destination)
        while waiting:
            item, since = waiting.popleft()
            if self.monotonic() - since < self.settings.lease.total_seconds() / 2:
                self._start(item)
                break
            self._done.append(  # too close to its lease's end: back, due again now
                Outcome(item, False, None, None, 0, self.clock.now(), released=True)
            )
        if not waiting:
            self._queued.pop(destination, None)

    def _start_ready(self) -> None:
        """Start what waits for destinations with a free slot (the global cap allowing)."""
        counts: dict[int, int] = {}
        for destination in self._inflight.values():
            counts[destination] = counts.get(destination, 0) + 1
        for d in list(self._queued):
            while (
                d in self._queued
                and counts.get(d, 0) < self.settings.per_destination
                and len(self._inflight) < self.settings.concurrency
            ):
                before = len(self._inflight)
                self._start_waiting(d)
                if len(self._inflight) > before:
                    counts[d] = counts.get(d, 0) + 1

    def _queued_count(self) -> int:
        return sum(len(w) for w in self._queued.values())

    async def _try(self, item: Claimed) -> Outcome:
        sender = self.senders[item.destination.kind]
        try:
            result = await sender.deliver(item)
        except Exception as exc:  # a sender's bug must not lose the delivery
            result = TryResult(False, None, f"{type(exc).__name__}: {exc}"[:500], 0)
        now = self.clock.now()
        tries = item.tries + 1
        if result.ok:
            next_try = None
        elif item.destination.kind == "webhook":
            next_try = next_webhook_try(tries, now, self.rng)
        else:
            next_try = next_broker_try(tries, now, self.rng)
        return Outcome(
            item, result.ok, result.http_status, result.error, result.duration_ms, next_try
        )

    async def _record(self) -> None:
        """Write the finished tries (alone: when stopping)."""
        outcomes, self._done = self._done, []
        if not outcomes:
            return
        try:
            async with self.db.write() as conn:
                disabled = await DeliveryRepository(conn).record(
                    self.id, outcomes, self.clock.now(), WEBHOOK_GIVE_UP
                )
        except Exception:
            self._done = outcomes + self._done  # try to write them again next step
            raise
        self._recorded(outcomes, disabled)

    def _recorded(self, outcomes: Sequence[Outcome], disabled: Sequence[Destination]) -> None:
        """Metrics and logs of tries written."""
        for o in outcomes:
            if o.released:
                continue
            kind = o.claimed.destination.kind
            result = "delivered" if o.ok else "failed"
            metrics.EVENT_DELIVERIES.labels(kind, result).inc()
            if o.ok:
                self.stats.delivered += 1
                self.stats.by_kind[kind] = self.stats.by_kind.get(kind, 0) + 1
            else:
                self.stats.failed += 1
                self.log.info(
                    "event_delivery_failed",
                    event_id=event_id(o.claimed.event.id),
                    type=o.claimed.event.type,
                    destination=o.claimed.destination.id,
                    kind=kind,
                    origin=origin(o.claimed.destination.url),  # a path or query may hold a secret
                    tries=o.claimed.tries + 1,
                    error=o.error,
                    next_try_at=o.next_try_at.isoformat() if o.next_try_at else None,
                )
        for destination in disabled:
            self.log.warning(
                "webhook_disabled",
                destination=destination.id,
                origin=origin(destination.url),
                failing_since=(
                    destination.failing_since.isoformat() if destination.failing_since else None
                ),
                action=f"fix the receiver, then POST /rest/v1/webhooks/{destination.id}/enable",
            )

    # -- upkeep ---------------------------------------------------------------

    async def _prune(self, now: datetime) -> None:
        async with self.db.write() as conn:
            pruned = await DeliveryRepository(conn).prune(
                now - self.settings.retention, self.settings.batch
            )
        self.stats.pruned += pruned

    async def _gauges(self, now: datetime) -> None:
        async with self.db.read() as conn:
            repo = EventRepository(conn)
            pending = await repo.pending_count()
            oldest = await repo.oldest_undelivered()
        metrics.EVENTS_PENDING.set(pending)
        metrics.EVENT_DELIVERY_LAG.set((now - oldest).total_seconds() if oldest else 0.0)
        if self.db.dialect == "postgresql":
            await self.watch_transactions()

    async def watch_transactions(self) -> None:
        """PostgreSQL: a transaction open longer than `long_transaction` holds back the
        events list (it answers no event written after that transaction began until it
        ends): a warning and `antaeus_long_transactions_total`, once per transaction."""
        async with self.db.read() as conn:
            found = await EventRepository(conn).long_transactions(self.settings.long_transaction)
        seen: set[tuple[int, datetime]] = set()
        for t in found:
            key = (int(t.pid), t.xact_start)
            seen.add(key)
            if key in self._long_seen:
                continue
            metrics.LONG_TRANSACTIONS.inc()
            self.log.warning(
                "long_transaction",
                pid=t.pid,
                seconds=int(t.seconds),
                state=t.state,
                application_name=t.application_name,
                why="GET /rest/v1/events lists no event written after it began until it ends",
                action=f"end it (SELECT pg_terminate_backend({t.pid}) if it is stuck)",
            )
        self._long_seen = seen  # those that ended are forgotten

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        """Until `seconds` pass, `stop` is set or a try finished since the last step."""
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def aclose(self) -> None:
        for sender in self.senders.values():
            await sender.aclose()


async def ensure_broker_destination(db: Database, clock: Clock, url_shown: str) -> Destination:
    """The broker's destination row (made once; later relays find it; enabled if retired)."""
    async with db.write() as conn:
        return await DestinationRepository(conn).ensure_amqp(url_shown, clock.now())
