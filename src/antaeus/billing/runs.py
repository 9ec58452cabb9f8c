"""The scheduler: opens billing runs on time, sends unresolvable unknowns to REVIEW, and
reconciles REVIEW invoices with the provider every `ANTAEUS_RECONCILE_INTERVAL` seconds.

Every charge belongs to a run. A run takes every due invoice not already in an
open run; runs may overlap but never share an invoice (the UPDATE that takes
invoices only takes those with no run, and run openings are serialized). Runs
are opened by `billing.service.open_run`, as for every other trigger.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime, timedelta
from typing import Literal

import structlog

from antaeus.billing.attention import NeedsPerson, announce
from antaeus.billing.generation import generate_due
from antaeus.billing.reconcile import Reconciler, Summary
from antaeus.billing.service import open_run
from antaeus.clock import Clock
from antaeus.domain.events import SentToReview, row
from antaeus.domain.invoice import InvoiceStatus, attempt_key
from antaeus.domain.policy import PolicySettings, retention_ending
from antaeus.observability import metrics
from antaeus.storage.database import Database
from antaeus.storage.repositories.billing import BillingRepository
from antaeus.storage.repositories.idempotency import IdempotencyRepository
from antaeus.storage.repositories.installation import InstallationRepository
from antaeus.storage.repositories.invoices import InvoiceRepository

log = structlog.get_logger("antaeus.scheduler")

SWEEP_EVERY = timedelta(minutes=1)  # how often expired Idempotency-Keys are looked for
SWEEP_CHUNK = 5_000  # keys deleted per transaction (short write locks)
GAUGES_EVERY = 15.0  # seconds between reads of the invoice gauges
SWEEP_MAX_CHUNKS = 10  # per pass; a larger backlog goes on at the next pass


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
        *,
        reconciler: Reconciler | None = None,
        reconcile_interval: float = 300.0,
    ) -> None:
        self.db = db
        self.clock = clock
        self.policy = policy
        self.mode = mode
        self.interval = interval
        self.idempotency_retention = idempotency_retention
        self._next_sweep: datetime | None = None
        self.reconciler = reconciler
        self.reconcile_interval = timedelta(seconds=reconcile_interval)
        self._next_reconcile: datetime | None = None
        #: the reconciliation pass in progress (or the last one), started by `tick`
        self.reconciling: asyncio.Task[Summary | None] | None = None

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
                installation_id = await InstallationRepository(conn).installation_id()
                invoices = InvoiceRepository(conn)
                sent = []
                for invoice_id, run_id, attempt in moved:
                    invoice = await invoices.get(invoice_id)
                    assert invoice is not None  # moved just now, in this transaction
                    key = attempt_key(installation_id, invoice_id, attempt)
                    sent.append(row(SentToReview(invoice, run_id, attempt, key, reason.value)))
                await repo.add_events(sent, now)
        self._maybe_reconcile(now)
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
        if self.mode == "automatic":
            # every period due by now becomes its invoice before the run opens, so that
            # the run charges it (an external schedule generates with its trigger)
            try:
                await generate_due(self.db, self.clock)
            except Exception:  # never in the way of charging what is already due
                log.exception("generation_failed")
        return await open_run(
            self.db,
            self.clock,
            self.policy,
            "schedule",
            open_attempts_only=self.mode == "external",
            skip_if_empty=True,
        )

    def _maybe_reconcile(self, now: datetime) -> None:
        """Start a reconciliation pass when one is due (every `reconcile_interval`).

        It runs beside the ticks (its provider calls never delay opening runs);
        an invoice it sends back to PENDING is taken by the run of a later tick.
        """
        if self.reconciler is None or not self.reconcile_interval:
            return  # off (ANTAEUS_RECONCILE_INTERVAL=0)
        if self.reconciling is not None and not self.reconciling.done():
            return
        if self._next_reconcile is not None and now < self._next_reconcile:
            return
        self._next_reconcile = now + self.reconcile_interval
        self.reconciling = asyncio.create_task(
            self._reconcile(self.reconciler), name="antaeus-reconcile"
        )

    async def _reconcile(self, reconciler: Reconciler) -> Summary | None:
        try:
            summary = await reconciler.reconcile_all()
        except Exception:  # never in the way of the ticks; tried again next interval
            log.exception("reconcile_failed")
            return None
        if summary.items:
            log.info("reconcile_pass", asked=len(summary.items), **dict(summary.counts))
        return summary

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

    async def read_gauges(self) -> None:
        """Invoices by status and the due backlog, for /metrics."""
        async with self.db.read() as conn:
            repo = BillingRepository(conn)
            counts = await repo.status_counts()
            backlog = await repo.due_backlog(self.clock.now())
        for status in InvoiceStatus:
            metrics.INVOICES.labels(status.value).set(counts.get(status.value, 0))
        metrics.DUE_BACKLOG.set(backlog)

    async def run(self, stop: asyncio.Event) -> None:
        log.info("scheduler_started", mode=self.mode)
        gauges_at = float("-inf")
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("scheduler_tick_failed")
            if time.monotonic() - gauges_at >= GAUGES_EVERY:
                gauges_at = time.monotonic()
                try:
                    await self.read_gauges()
                except Exception:  # only the gauges go stale
                    log.exception("scheduler_gauges_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
        if self.reconciling is not None and not self.reconciling.done():
            self.reconciling.cancel()  # its provider calls change nothing until they answer
            await asyncio.gather(self.reconciling, return_exceptions=True)
