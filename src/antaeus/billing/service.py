"""The use cases, each in one function that the routes, the CLI and the scheduler call.

Open a run, retry every PENDING invoice that failed before, and a person's
retry, resolve and void of one invoice, and a retry or void of every invoice
matching a filter. Each is: its transaction, its
repository calls, and, once the transaction has committed, its log line and
metric, so no caller can change the database and skip saying so. Refusals are
domain errors (`antaeus.domain.errors`); the API maps them to its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Literal

import structlog

from antaeus.billing.runs_view import runs_json
from antaeus.clock import Clock
from antaeus.domain.errors import ActionRefusedError, InvoiceNotFoundError
from antaeus.domain.invoice import Invoice
from antaeus.domain.policy import PolicySettings
from antaeus.observability import metrics
from antaeus.storage.database import Database, WriteConnection
from antaeus.storage.repositories.actions import ActionRepository, ActionResult
from antaeus.storage.repositories.billing import BillingRepository
from antaeus.storage.repositories.invoices import BulkAction, InvoiceFilter, InvoiceRepository

log = structlog.get_logger("antaeus.service")

#: who opened a run: the scheduler, `POST /rest/v1/billing`, `antaeus bill`, or a
#: person's retry of one invoice (a run of that invoice alone)
Trigger = Literal["schedule", "api", "cli", "retry"]


# -- runs -------------------------------------------------------------------------


async def _open_in(
    conn: WriteConnection,
    now: datetime,
    policy: PolicySettings,
    trigger: Trigger,
    *,
    open_attempts_only: bool = False,
    skip_if_empty: bool = False,
) -> int | None:
    """Open a run in `conn`'s transaction: the one place runs are opened.

    Takes every due invoice not in an open run (possibly none; with
    `skip_if_empty`, then no run and None).
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


def _run_opened(run_id: int, trigger: Trigger) -> None:
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
        run_id = await _open_in(
            conn,
            clock.now(),
            policy,
            trigger,
            open_attempts_only=open_attempts_only,
            skip_if_empty=skip_if_empty,
        )
    if run_id is not None:
        _run_opened(run_id, trigger)
    return run_id


class RunOpening:
    """Open runs in a transaction the caller owns (an `Idempotency-Key`'s), said once it ends.

        async with RunOpening() as opening:
            ...  # the transaction, in which: run_id = await opening.open_in(conn, ...)

    Leaving the block without an error means the transaction committed: each
    run opened in it is logged and counted then (a replay opens none).
    """

    def __init__(self) -> None:
        self._opened: list[tuple[int, Trigger]] | None = None

    async def __aenter__(self) -> RunOpening:
        self._opened = []
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        opened, self._opened = self._opened or [], None
        if exc_type is None:
            for run_id, trigger in opened:
                _run_opened(run_id, trigger)

    def discard(self) -> None:
        """The caller's transaction was rolled back after all: its runs were never opened."""
        if self._opened is not None:
            self._opened.clear()

    async def open_in(
        self, conn: WriteConnection, now: datetime, policy: PolicySettings, trigger: Trigger
    ) -> int:
        if self._opened is None:
            raise RuntimeError("RunOpening.open_in outside `async with RunOpening()`")
        run_id = await _open_in(conn, now, policy, trigger)
        assert run_id is not None  # only a run that may be skipped is ever None
        self._opened.append((run_id, trigger))
        return run_id


async def retry_failed_pending(
    db: Database, clock: Clock, policy: PolicySettings, trigger: Trigger = "api"
) -> dict[str, Any]:
    """Every PENDING invoice with a past failure becomes due now, and a run opens with them.

    Answers the run as the API shows it, read in the same transaction.
    """
    async with RunOpening() as opening, db.write() as conn:
        run = await retry_failed_pending_in(conn, opening, clock.now(), policy, trigger)
    return run


async def retry_failed_pending_in(
    conn: WriteConnection,
    opening: RunOpening,
    now: datetime,
    policy: PolicySettings,
    trigger: Trigger = "api",
) -> dict[str, Any]:
    """`retry_failed_pending` in the caller's transaction (an `Idempotency-Key`'s): the run
    is said (logged, counted) when `opening`'s block ends without an error."""
    await BillingRepository(conn).failed_pending_due_now(now)
    run_id = await opening.open_in(conn, now, policy, trigger)
    return (await runs_json(conn, [run_id]))[0]


# -- a person's actions on one invoice -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Acted:
    """A person's action done in a transaction: the invoice after it, and what to say
    (log line, metric, the run it opened) once that transaction has committed."""

    invoice: Invoice
    say: Callable[[], None]


async def _act_in(
    conn: WriteConnection,
    invoice_id: int,
    action: str,
    actor: str,
    change: Callable[[ActionRepository[WriteConnection]], Awaitable[ActionResult]],
    then: Callable[[], None] = lambda: None,
) -> Acted:
    result = await change(ActionRepository(conn))
    invoice = result.invoice
    if result.status is None:
        raise InvoiceNotFoundError(invoice_id)
    if not result.ok or invoice is None:
        raise ActionRefusedError(invoice_id, result.status, result.reason, attempt=result.attempt)

    def say() -> None:
        _said(invoice_id, action, actor, result)
        then()

    return Acted(invoice, say)


async def _act(db: Database, doing: Callable[[WriteConnection], Awaitable[Acted]]) -> Invoice:
    async with db.write() as conn:
        acted = await doing(conn)
    acted.say()
    return acted.invoice


def _said(invoice_id: int, action: str, actor: str, result: ActionResult) -> None:
    """After the commit: a person's action's log line and metric."""
    metrics.INVOICE_ACTIONS.labels(action).inc()
    log.info(
        "invoice_action",
        invoice_id=invoice_id,
        action=action,
        actor=actor,  # the token's name, never the token
        from_status=result.before.value if result.before else None,
        status=result.status.value if result.status else None,
    )


async def retry_in(
    conn: WriteConnection, now: datetime, invoice_id: int, *, actor: str, note: str | None = None
) -> Acted:
    """`retry` in the caller's transaction; `Acted.say()` once it has committed."""
    opened: list[int] = []

    async def change(repo: ActionRepository[WriteConnection]) -> ActionResult:
        result = await repo.retry(invoice_id, actor, note, now)
        if result.ok:
            run_id = await BillingRepository(repo.conn).open_run(
                "retry", now, now, skip_if_empty=True, only_invoice=invoice_id
            )
            opened.extend([run_id] if run_id is not None else [])
        return result

    def runs_opened() -> None:
        for run_id in opened:
            _run_opened(run_id, "retry")

    return await _act_in(conn, invoice_id, "retried", actor, change, runs_opened)


async def retry(
    db: Database, clock: Clock, invoice_id: int, *, actor: str, note: str | None = None
) -> Invoice:
    """A FAILED invoice becomes PENDING and due now; its next charge is a new attempt.

    In the same transaction a run of that invoice alone opens, with the trigger
    `retry`: the person's action is what charges it (in either schedule), and
    the run says so (not `schedule`).
    """
    now = clock.now()
    return await _act(db, lambda conn: retry_in(conn, now, invoice_id, actor=actor, note=note))


async def resolve_in(
    conn: WriteConnection,
    now: datetime,
    invoice_id: int,
    *,
    charged: bool,
    charge_id: str | None,
    actor: str,
    note: str | None = None,
    attempt: int | None = None,
) -> Acted:
    """`resolve` in the caller's transaction; `Acted.say()` once it has committed."""
    return await _act_in(
        conn,
        invoice_id,
        "resolved_charged" if charged else "resolved_not_charged",
        actor,
        lambda repo: repo.resolve(
            invoice_id, charged, charge_id, actor, note, now, attempt=attempt
        ),
    )


async def resolve(
    db: Database,
    clock: Clock,
    invoice_id: int,
    *,
    charged: bool,
    charge_id: str | None,
    actor: str,
    note: str | None = None,
    attempt: int | None = None,
) -> Invoice:
    """A REVIEW invoice becomes PAID (`charged`, with the provider's charge id) or PENDING.

    `attempt`: the attempt number the person decided about; refused (ActionRefusedError
    with the current attempt) unless it is still the invoice's open attempt in REVIEW.
    """
    return await _act(
        db,
        lambda conn: resolve_in(
            conn,
            clock.now(),
            invoice_id,
            charged=charged,
            charge_id=charge_id,
            actor=actor,
            note=note,
            attempt=attempt,
        ),
    )


async def void_in(
    conn: WriteConnection, now: datetime, invoice_id: int, *, actor: str, note: str | None = None
) -> Acted:
    """`void` in the caller's transaction; `Acted.say()` once it has committed."""
    return await _act_in(
        conn,
        invoice_id,
        "voided",
        actor,
        lambda repo: repo.void(invoice_id, actor, note, now),
    )


async def void(
    db: Database, clock: Clock, invoice_id: int, *, actor: str, note: str | None = None
) -> Invoice:
    """A FAILED invoice, or a PENDING one with no open attempt, becomes VOID."""
    return await _act(
        db, lambda conn: void_in(conn, clock.now(), invoice_id, actor=actor, note=note)
    )


# -- a person's action on every invoice of a filter ----------------------------------------

#: invoices acted on per transaction: short enough for the workers' claims to interleave
BULK_BATCH: Final = 200


@dataclass(frozen=True, slots=True)
class BulkResult:
    matched: int  # invoices that matched the filter when their batch read them
    acted: int  # of those, retried or voided
    skipped: int  # of those, not allowed (their status, an open attempt, a worker first)

    def json(self) -> dict[str, int]:
        return {"matched": self.matched, "acted": self.acted, "skipped": self.skipped}


async def bulk_action(
    db: Database,
    clock: Clock,
    action: BulkAction,
    wanted: InvoiceFilter,
    *,
    actor: str,
    note: str | None = None,
    batch: int = BULK_BATCH,
) -> BulkResult:
    """Retry or void every invoice matching `wanted` that allows it, batch by batch.

    Each invoice's action is the single action's own conditional UPDATE (the
    single action is this one for one invoice: `ActionRepository.retry_many`,
    `void_many`), with its audit row and event, so a worker or a person changing
    an invoice meanwhile makes it a skip, never a double action. One transaction
    per `batch` invoices, read by ascending id after the last one done: memory
    stays bounded and no transaction holds the invoices for long. A repeat acts
    on what is left. Each batch's retried invoices are charged by a run of their
    own, opened in the same transaction with the trigger `retry`, as a single
    retry's is (in either schedule).
    """
    if wanted.empty():
        raise ValueError("a bulk action needs at least one filter field")
    done = "retried" if action == "retry" else "voided"
    matched = acted = 0
    opened: list[int] = []
    after = 0
    while True:
        results: list[tuple[int, ActionResult]] = []
        async with db.write() as conn:
            ids = await InvoiceRepository(conn).matching_ids(wanted, after=after, limit=batch)
            repo = ActionRepository(conn)
            if ids and action == "retry":
                now = clock.now()
                results = await repo.retry_many(ids, actor, note, now)
                retried = [invoice_id for invoice_id, r in results if r.ok]
                if retried:  # as a single retry: the person's action charges them, in a run
                    run_id = await BillingRepository(conn).open_run(  # saying so
                        "retry", now, now, skip_if_empty=True, only_invoices=retried
                    )
                    opened.extend([run_id] if run_id is not None else [])
            elif ids:
                results = await repo.void_many(ids, actor, note, clock.now())
        for invoice_id, result in results:
            if result.ok:
                _said(invoice_id, done, actor, result)
        matched += len(ids)
        acted += sum(1 for _id, r in results if r.ok)
        if len(ids) < batch:
            break
        after = ids[-1]
    for run_id in opened:
        _run_opened(run_id, "retry")
    outcome = BulkResult(matched, acted, matched - acted)
    log.info(
        "invoices_bulk_action",
        action=done,
        actor=actor,
        status=wanted.status.value if wanted.status else None,
        last_failure=wanted.last_failure.value if wanted.last_failure else None,
        customer_id=wanted.customer_id,
        **outcome.json(),
    )
    return outcome
