"""Issue 9, items 1-5: no answer dropped, no invoice stuck, on both engines.

1. one answer that cannot be written no longer throws away its batch;
2. an answer counts only for the claim it belongs to (a worker whose lease
   expired never claims the row again while its call is out; two answers for
   one invoice make one outcome and one event);
3. a 400 after an earlier send that may have charged goes to REVIEW, and the
   attempt keeps every answer it got;
4. a worker renews only the leases of what it still holds;
5. an answer that proves nothing was charged (401, 429, 409 in use, no
   connection) takes the write-ahead attempt back.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from antaeus.billing.service import open_run
from antaeus.billing.worker import Answer, Worker, WorkerSettings
from antaeus.clock import ManualClock
from antaeus.domain.policy import ChargeOutcome, PolicySettings
from antaeus.observability import metrics
from antaeus.payments.provider import (
    Charged,
    KeyInUseError,
    NotSentError,
    OutcomeUnknownError,
    ProviderError,
    RateLimitedError,
    RequestRejectedError,
    UnauthorizedError,
)
from antaeus.storage.database import Database
from antaeus.storage.repositories.actions import ActionRepository
from antaeus.storage.repositories.billing import BillingRepository
from antaeus.storage.repositories.installation import InstallationRepository
from antaeus.storage.repositories.invoices import InvoiceRepository
from antaeus.storage.tables import charge_attempt_answers, events
from tests.billing.fakes import ScriptedProvider
from tests.billing.helpers import attempts_of, invoice_row, make_invoices

POLICY = PolicySettings()
LEASE = timedelta(seconds=60)


def worker(db: Database, provider: ScriptedProvider, clock: ManualClock) -> Worker:
    settings = WorkerSettings(
        batch_size=50, concurrency=20, retry_after_max=1.0, lease=LEASE, poll_interval=0.01
    )
    return Worker(db, provider, clock, POLICY, settings)


async def due_invoices(db: Database, clock: ManualClock, n: int) -> list[int]:
    ids = await make_invoices(db, n, clock.now() - timedelta(minutes=1))
    await open_run(db, clock, POLICY, "api")
    return ids


async def events_of(db: Database, invoice_id: int) -> list[str]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(events.c.type).where(events.c.invoice_id == invoice_id).order_by(events.c.id)
        )
        return [r.type for r in rows]


async def answers_of(db: Database, invoice_id: int) -> list[tuple[int, str, str | None]]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(
                charge_attempt_answers.c.attempt,
                charge_attempt_answers.c.outcome,
                charge_attempt_answers.c.charge_id,
            )
            .where(charge_attempt_answers.c.invoice_id == invoice_id)
            .order_by(charge_attempt_answers.c.id)
        )
        return [(r.attempt, r.outcome, r.charge_id) for r in rows]


def unrecordable() -> float:
    return metrics.ANSWERS_UNRECORDABLE._value.get()  # type: ignore[attr-defined,no-any-return]


def poison(monkeypatch: pytest.MonkeyPatch, invoice_id: int) -> None:
    """The outcome row of `invoice_id` gets a value no database driver can bind."""
    original = Worker._row

    def poisoned(self: Worker, answer: Answer, now: Any) -> Any:
        row = original(self, answer, now)
        if row.invoice_id == invoice_id:
            row.dunning_count = object()  # type: ignore[assignment]
        return row

    monkeypatch.setattr(Worker, "_row", poisoned)


# -- 1. one poisonous answer -------------------------------------------------------


async def test_one_unwritable_answer_does_not_drop_the_rest_of_its_batch(
    database: Database, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await due_invoices(database, clock, 6)
    bad = ids[2]
    poison(monkeypatch, bad)
    provider = ScriptedProvider(default=Charged("ch_ok"))
    w = worker(database, provider, clock)
    before = unrecordable()
    with pytest.raises(SQLAlchemyError):  # until idle, the caller hears of it
        await w.run_until_idle()
    for invoice_id in ids:
        row = await invoice_row(database, invoice_id)
        if invoice_id == bad:
            assert (row.status, row.lease_owner) == ("PROCESSING", w.id)
            assert await events_of(database, invoice_id) == []
        else:
            assert row.status == "PAID"
            assert await events_of(database, invoice_id) == ["invoice.paid"]
    assert unrecordable() == before + 1
    assert w.stats.unrecordable == 1
    # its lease expires; the next claim repeats the call with the same key
    monkeypatch.undo()
    clock.advance(LEASE + timedelta(seconds=1))
    await worker(database, provider, clock).run_until_idle()
    assert (await invoice_row(database, bad)).status == "PAID"
    assert await events_of(database, bad) == ["invoice.paid"]
    first, again = provider.by_invoice[bad]
    assert first == again


async def test_a_charge_id_no_column_can_hold_is_an_unknown_outcome(
    database: Database, clock: ManualClock
) -> None:
    """Whatever the provider (not only the HTTP adapter): charged ones still get recorded."""
    ids = await due_invoices(database, clock, 3)
    provider = ScriptedProvider(
        scripts={ids[0]: [Charged("x" * 300), Charged("ch_0")], ids[1]: [Charged("c\u0000")]},
        default=Charged("ch_ok"),
    )
    await worker(database, provider, clock).run_until_idle()
    assert (await invoice_row(database, ids[2])).status == "PAID"
    assert (await invoice_row(database, ids[0])).last_failure == "unknown_outcome"
    clock.advance(timedelta(seconds=1))
    await worker(database, provider, clock).run_until_idle()
    assert (await invoice_row(database, ids[0])).status == "PAID"
    assert [a.charge_id for a in await attempts_of(database, ids[0])] == ["ch_0"]


# -- 2. answers matched to their claim ----------------------------------------------


async def test_answers_of_an_earlier_claim_of_the_same_row_make_one_outcome(
    database: Database, clock: ManualClock
) -> None:
    [invoice_id] = await due_invoices(database, clock, 1)
    w = worker(database, ScriptedProvider(), clock)
    [first] = await w.claim(10)
    clock.advance(LEASE + timedelta(seconds=1))  # renewals failed for longer than the lease
    # the worker's own next claim never takes back a row it has a call out for
    assert await w.claim(10) == []
    # (as it did before: the same worker claims the expired row a second time)
    now = clock.now()
    async with database.write() as conn:
        installation = await InstallationRepository(conn).installation_id()
        [second] = await BillingRepository(conn).claim(
            w.id, now, now + LEASE, now - timedelta(hours=23), 10, installation, token=10**9
        )
    assert second.idempotency_key == first.idempotency_key
    # both answers land in one batch: only the current claim's is written, once
    await w.record(
        [
            Answer(first, ChargeOutcome.CHARGED, "ch_1"),
            Answer(second, ChargeOutcome.CHARGED, "ch_1", replayed=True),
        ]
    )
    row = await invoice_row(database, invoice_id)
    assert (row.status, row.lease_owner) == ("PAID", None)
    assert await events_of(database, invoice_id) == ["invoice.paid"]
    assert await answers_of(database, invoice_id) == [(1, "charged", "ch_1")]
    assert w.stats.lost_leases == 1


async def test_an_answer_for_a_claim_that_changed_hands_is_not_written(
    database: Database, clock: ManualClock
) -> None:
    [invoice_id] = await due_invoices(database, clock, 1)
    slow = worker(database, ScriptedProvider(), clock)
    [mine] = await slow.claim(10)
    clock.advance(LEASE + timedelta(seconds=1))
    other = worker(database, ScriptedProvider(), clock)
    [theirs] = await other.claim(10)
    await slow.record([Answer(mine, ChargeOutcome.INSUFFICIENT_FUNDS)])
    assert (await invoice_row(database, invoice_id)).status == "PROCESSING"
    await other.record([Answer(theirs, ChargeOutcome.CHARGED, "ch_1", replayed=True)])
    assert (await invoice_row(database, invoice_id)).status == "PAID"
    assert await events_of(database, invoice_id) == ["invoice.paid"]
    [attempt] = await attempts_of(database, invoice_id)
    assert (attempt.outcome, attempt.charge_id, attempt.sends) == ("charged", "ch_1", 2)


# -- 3. a 400 that proves nothing about an earlier send -----------------------------


async def test_a_400_after_an_unknown_outcome_goes_to_review_and_keeps_the_key(
    database: Database, clock: ManualClock
) -> None:
    [invoice_id] = await due_invoices(database, clock, 1)
    provider = ScriptedProvider(
        scripts={invoice_id: [OutcomeUnknownError("timeout"), RequestRejectedError("bad")]}
    )
    await worker(database, provider, clock).run_until_idle()
    clock.advance(timedelta(seconds=1))
    await worker(database, provider, clock).run_until_idle()
    row = await invoice_row(database, invoice_id)
    assert (row.status, row.last_failure) == ("REVIEW", "provider_rejected")
    assert row.attempt_open_since is not None  # the attempt stays open: it may have charged
    [attempt] = await attempts_of(database, invoice_id)
    assert attempt.finished_at is None
    assert await answers_of(database, invoice_id) == [
        (1, "unknown_outcome", None),
        (1, "provider_rejected", None),
    ]
    assert await events_of(database, invoice_id) == ["invoice.payment_unknown", "invoice.review"]
    # the operator checks with the provider; not charged: the next attempt has a new key
    async with database.write() as conn:
        result = await ActionRepository(conn).resolve(
            invoice_id, False, None, "ops", "not at the provider", clock.now()
        )
    assert result.ok


async def test_a_400_after_a_send_whose_worker_died_goes_to_review(
    database: Database, clock: ManualClock
) -> None:
    [invoice_id] = await due_invoices(database, clock, 1)
    await worker(database, ScriptedProvider(), clock).claim(10)  # then killed mid-call
    clock.advance(LEASE + timedelta(seconds=1))
    provider = ScriptedProvider(default=RequestRejectedError("bad"))
    await worker(database, provider, clock).run_until_idle()
    row = await invoice_row(database, invoice_id)
    assert (row.status, row.last_failure) == ("REVIEW", "provider_rejected")


async def test_a_400_on_a_first_send_fails_the_invoice(
    database: Database, clock: ManualClock
) -> None:
    [invoice_id] = await due_invoices(database, clock, 1)
    provider = ScriptedProvider(default=RequestRejectedError("bad"))
    await worker(database, provider, clock).run_until_idle()
    row = await invoice_row(database, invoice_id)
    assert (row.status, row.last_failure) == ("FAILED", "provider_rejected")
    assert row.attempt_open_since is None


# -- 4. leases of forgotten answers ------------------------------------------------


async def test_a_worker_renews_only_the_leases_it_holds(
    database: Database, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await due_invoices(database, clock, 2)
    w = worker(database, ScriptedProvider(), clock)
    claimed = {c.invoice_id: c for c in await w.claim(10)}
    poison(monkeypatch, ids[0])
    await w._record_isolating([Answer(claimed[ids[0]], ChargeOutcome.CHARGED, "ch_1")])
    dropped = await invoice_row(database, ids[0])
    assert dropped.status == "PROCESSING"
    clock.advance(timedelta(seconds=20))
    assert await w.renew_leases() == 1  # only the invoice whose call is still out
    assert (await invoice_row(database, ids[0])).lease_expires_at == dropped.lease_expires_at
    assert (await invoice_row(database, ids[1])).lease_expires_at == clock.now() + LEASE
    clock.advance(LEASE)  # the forgotten one expires and is claimed again, by anyone
    assert [c.invoice_id for c in await w.claim(10)] == [ids[0]]


# -- 5. answers that prove nothing was charged ---------------------------------------

NOTHING_CHARGED: list[ProviderError] = [
    UnauthorizedError("bad key"),
    RateLimitedError(3600.0),
    KeyInUseError(3600.0),
    NotSentError("connection refused"),
]


@pytest.mark.parametrize("answer", NOTHING_CHARGED, ids=lambda e: type(e).__name__)
async def test_a_first_send_that_charged_nothing_leaves_no_open_attempt(
    database: Database, clock: ManualClock, answer: ProviderError
) -> None:
    [invoice_id] = await due_invoices(database, clock, 1)
    await worker(database, ScriptedProvider(default=answer), clock).run_until_idle()
    row = await invoice_row(database, invoice_id)
    assert row.status == "PENDING"
    assert (row.attempt_open_since, row.attempt_count, row.attempt_sends) == (None, 0, 0)
    assert await attempts_of(database, invoice_id) == []
    async with database.write() as conn:  # as if never claimed: it can be voided
        assert (await ActionRepository(conn).void(invoice_id, "ops", None, clock.now())).ok


@pytest.mark.parametrize("answer", NOTHING_CHARGED, ids=lambda e: type(e).__name__)
async def test_a_repeat_that_charged_nothing_keeps_the_earlier_send_open(
    database: Database, clock: ManualClock, answer: ProviderError
) -> None:
    [invoice_id] = await due_invoices(database, clock, 1)
    provider = ScriptedProvider(
        scripts={invoice_id: [OutcomeUnknownError("timeout")]}, default=answer
    )
    await worker(database, provider, clock).run_until_idle()
    clock.advance(timedelta(seconds=1))
    await worker(database, provider, clock).run_until_idle()
    row = await invoice_row(database, invoice_id)
    assert row.status == "PENDING"
    assert (row.attempt_count, row.attempt_sends) == (1, 1)
    assert row.attempt_open_since is not None
    [attempt] = await attempts_of(database, invoice_id)
    assert (attempt.sends, attempt.outcome) == (1, "unknown_outcome")


async def test_invoices_claimed_ahead_and_given_back_at_a_stop_hold_no_attempt(
    database: Database, clock: ManualClock
) -> None:
    ids = await due_invoices(database, clock, 3)
    w = worker(database, ScriptedProvider(), clock)
    w._ready.extend(await w.claim(10))
    await w._release_ready()
    async with database.read() as conn:
        assert (await InvoiceRepository(conn).get(ids[0])) is not None
        open_ = await conn.scalar(
            select(func.count())
            .select_from(charge_attempt_answers)
            .where(charge_attempt_answers.c.invoice_id.in_(ids))
        )
    assert open_ == 0
    for invoice_id in ids:
        row = await invoice_row(database, invoice_id)
        assert (row.status, row.attempt_open_since, row.attempt_count) == ("PENDING", None, 0)
        assert await attempts_of(database, invoice_id) == []
