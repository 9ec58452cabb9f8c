"""Opening billing runs, and the scheduler that opens them on time.

Every charge belongs to a run. A run takes every due invoice not already in an
open run; runs may overlap but never share an invoice (the UPDATE that takes
invoices only takes those with no run, and run openings are serialized).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime, timedelta
from typing import Literal

import structlog

from antaeus.billing.attention import NeedsPerson, announce
from antaeus.clock import Clock
from antaeus.domain.invoice import attempt_key
from antaeus.domain.policy import PolicySettings, retention_ending
from antaeus.observability import metrics
from antaeus.storage.database import Database, WriteConnection
from antaeus.storage.repositories.billing import BillingRepository
from antaeus.storage.repositories.idempotency import IdempotencyRepository
from antaeus.storage.repositories.installation import InstallationRepository

log = structlog.get_logger("antaeus.scheduler")

Trigger = Literal["schedule", "api", "cli"]

SWEEP_EVERY = timedelta(minutes=1)  # how often expired Idempotency-Keys are looked for
SWEEP_CHUNK = 5_000  # keys deleted per transaction (short write locks)
SWEEP_MAX_CHUNKS = 10  # per pass; a larger backlog goes on at the next pass


async def open_run_in(
    conn: WriteConnection,
    now: datetime,
    policy: PolicySettings,
    trigger: Trigger,
    *,
    open_attempts_only: bool = False,
    skip_if_empty: bool = False,
) -> int | None:
    """Open a run in the caller's transaction: the one place runs are opened.

    Takes every due invoice not in an open run (possibly none; with
    `skip_if_empty`, then no run and None). Once the transaction has
    committed, the caller says so with `run_opened` (`open_run` does both).
    """
    run_id = await BillingRepository(conn).open_run(
        trigger,
        now,
        policy.repeat_cut(now),
        open_attempts_only=open_attempts_only,
        skip_if_empty=skip_if_empty,
    )
    if run_id is None and not skip_if_empty:
        raise RuntimeError("a run that may not be skipped was not opened")
    return run_id


def run_opened(run_id: int, trigger: Trigger) -> None:
    """Log and count a run whose opening has committed."""
    metrics.RUNS_OPENED.labels(trigger).inc()
    log.info("run_opened", run_id=run_id, trigger=trigger)


async def open_run(
    db: Database,
    clock: Clock,
    policy: PolicySettings,
    trigger: Trigger,
    *,
    open_attempts_only: bool = False,
    skip_if_empty: bool = False,
) -> int | None:
    """Open a run now in a transaction of its own, then log and count it."""
    async with db.write() as conn:
        run_id = await open_run_in(
            conn,
            clock.now(),
            policy,
            trigger,
            open_attempts_only=open_attempts_only,
            skip_if_empty=skip_if_empty,
        )
    if run_id is not None:
        run_opened(run_id, trigger)
    return run_id


class Scheduler:
    """Opens runs when invoices fall due, and sends unresolvable unknowns to REVIEW.

    `automatic`: a run opens as soon as invoices not in an open run are due.
    `external`: only triggers open runs for new charges; the scheduler still
    opens runs for open attempts of unknown outcome when their repeat time
    comes, and moves them to REVIEW before the provider's key retention ends.
    """

    def __init__(
        self,
        db: Database,
        clock: Clock,
        policy: PolicySettings,
        mode: Literal["automatic", "external"],
        interval: float = 1.0,
        idempotency_retention: timedelta = timedelta(days=7),
    ) -> None:
        self.db = db
        self.clock = clock
        self.policy = policy
        self.mode = mode
        self.interval = interval
        self.idempotency_retention = idempotency_retention
        self._next_sweep: datetime | None = None

    async def tick(self) -> int | None:
        """One pass; answers the id of the run it opened, if any."""
        now = self.clock.now()
        if self._next_sweep is None or now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY
            try:
                if await self.sweep_idempotency_keys() >= SWEEP_CHUNK * SWEEP_MAX_CHUNKS:
                    self._next_sweep = now  # more expired keys wait: go on next pass
            except Exception:  # never in the way of opening runs; tried again next minute
                log.exception("idempotency_sweep_failed")
        decision = retention_ending(now, self.policy)
        reason = decision.reason
        async with self.db.write() as conn:
            repo = BillingRepository(conn)
            moved = await repo.to_review_past_retention(
                now,
                decision.cut,
                status=decision.status.value,
                reason=reason.value,
                run_outcome=decision.run_outcome.value,
            )
            installation_id = ""
            if moved:
                payload = json.dumps({"reason": reason.value}, separators=(",", ":"))
                await repo.add_events(
                    [
                        (decision.event_type, invoice_id, run_id, payload)
                        for invoice_id, run_id, _ in moved
                    ],
                    now,
                )
                installation_id = await InstallationRepository(conn).installation_id()
        metrics.INVOICES_TO_REVIEW.inc(len(moved))
        announce(
            NeedsPerson(
                invoice_id=invoice_id,
                attempt=attempt,
                idempotency_key=attempt_key(installation_id, invoice_id, attempt),
                status=decision.status.value,
                reason=reason.value,
            )
            for invoice_id, _, attempt in moved
        )
        return await open_run(
            self.db,
            self.clock,
            self.policy,
            "schedule",
            open_attempts_only=self.mode == "external",
            skip_if_empty=True,
        )

    async def sweep_idempotency_keys(self) -> int:
        """Forget API Idempotency-Keys older than their retention, a chunk per transaction.

        At most `SWEEP_MAX_CHUNKS` chunks, so a pass stays short; answers how many.
        """
        cut = self.clock.now() - self.idempotency_retention
        purged = 0
        for _ in range(SWEEP_MAX_CHUNKS):
            async with self.db.write() as conn:
                n = await IdempotencyRepository(conn).purge_before(cut, SWEEP_CHUNK)
            purged += n
            if n < SWEEP_CHUNK:
                break
        if purged:
            log.info("idempotency_keys_forgotten", count=purged, stored_before=cut.isoformat())
        return purged

    async def run(self, stop: asyncio.Event) -> None:
        log.info("scheduler_started", mode=self.mode)
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("scheduler_tick_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
