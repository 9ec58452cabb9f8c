"""Reconciliation of REVIEW invoices with the provider, on real SQLite and PostgreSQL.

The three answers (charge found: PAID; nothing charged: PENDING and a new
attempt; cannot tell: REVIEW), what is recorded on the attempt, races with a
second reconciler and with a person, and the retention trap run: answers lost,
then an outage of charges past the provider's key retention, through the
scheduler, ends with every invoice PAID and nothing charged twice.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from antaeus.billing import service
from antaeus.billing.reconcile import NotReconcilableError, Reconciler
from antaeus.billing.runs import Scheduler
from antaeus.billing.service import open_run
from antaeus.billing.worker import Worker, WorkerSettings
from antaeus.clock import ManualClock
from antaeus.domain.errors import InvoiceNotFoundError
from antaeus.domain.money import Currency, Money
from antaeus.domain.policy import PolicySettings
from antaeus.observability import metrics
from antaeus.payments.provider import (
    ChargeFound,
    ChargeLookup,
    LookupResult,
    NothingCharged,
    OutcomeUnknownError,
)
from antaeus.simulators.simulated import (
    PROFILE_ANSWERS_LOST,
    PROFILE_FUNDED,
    SimulatedPaymentProvider,
)
from antaeus.storage.database import Database
from antaeus.storage.repositories.customers import CustomerRepository
from antaeus.storage.repositories.invoices import InvoiceRepository
from antaeus.storage.tables import invoice_actions, reconciliations
from tests.billing.fakes import ScriptedProvider
from tests.billing.helpers import attempts_of, invoice_row, make_invoices

POLICY = PolicySettings()
CUT = POLICY.key_retention - POLICY.retention_margin
SETTLE = timedelta(seconds=120)
MINUTE = timedelta(minutes=1)


def simulator(clock: ManualClock, **kwargs: Any) -> SimulatedPaymentProvider:
    return SimulatedPaymentProvider(
        ":memory:",
        clock=lambda: clock.now().timestamp(),
        key_retention=POLICY.key_retention,
        **kwargs,
    )


def worker(db: Database, provider: Any, clock: ManualClock) -> Worker:
    return Worker(db, provider, clock, POLICY, WorkerSettings(batch_size=100, concurrency=20))


async def to_review_by_sweep(
    db: Database, clock: ManualClock, provider: Any, invoice_ids: list[int]
) -> datetime:
    """Charge the invoices (every answer unknown), then let the sweep send them to REVIEW."""
    started = clock.now()
    await open_run(db, clock, POLICY, "api")
    await worker(db, provider, clock).run_until_idle()
    clock.set(started + CUT)
    await Scheduler(db, clock, POLICY, "external").tick()
    for invoice_id in invoice_ids:
        row = await invoice_row(db, invoice_id)
        assert (row.status, row.last_failure) == ("REVIEW", "unknown_outcome")
    return started


async def recorded(db: Database, invoice_id: int) -> list[Any]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(reconciliations)
            .where(reconciliations.c.invoice_id == invoice_id)
            .order_by(reconciliations.c.id)
        )
        return list(rows)


async def actions_of(db: Database, invoice_id: int) -> list[Any]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(invoice_actions)
            .where(invoice_actions.c.invoice_id == invoice_id)
            .order_by(invoice_actions.c.id)
        )
        return list(rows)


def count(outcome: str) -> float:
    value = metrics.RECONCILIATIONS.labels(outcome)._value.get()
    return float(value)


# -- the three answers ---------------------------------------------------------------


async def test_a_charge_found_under_the_key_makes_the_invoice_paid_by_the_reconciler(
    database: Database, clock: ManualClock
) -> None:
    provider = simulator(clock, network_error_rate=0.0)
    try:
        [invoice_id] = await make_invoices(database, 1, clock.now())
        provider.ambiguous_rate = 1.0  # charged, and the answer lost ...
        await open_run(database, clock, POLICY, "api")
        await worker(database, provider, clock).run_until_idle()
        provider.outage = True  # ... and every repeat answered 503 until the sweep
        clock.advance(MINUTE)
        started = (await attempts_of(database, invoice_id))[0].started_at
        clock.set(started + CUT)
        scheduler = Scheduler(database, clock, POLICY, "external")
        await scheduler.tick()
        assert (await invoice_row(database, invoice_id)).status == "REVIEW"
        [charge] = provider.store.ledger()
        before = count("paid")

        done = await Reconciler(database, provider, clock, settle=SETTLE).reconcile_invoice(
            invoice_id
        )

        assert (done.result, done.outcome, done.charge_id) == ("charged", "paid", charge.charge_id)
        row = await invoice_row(database, invoice_id)
        assert (row.status, row.attempt_open_since) == ("PAID", None)
        [attempt] = await attempts_of(database, invoice_id)
        assert (attempt.outcome, attempt.charge_id) == ("charged", charge.charge_id)
        assert attempt.finished_at == clock.now()
        [action] = await actions_of(database, invoice_id)
        assert (action.actor, action.action, action.charge_id) == (
            "reconciler",
            "resolved_charged",
            charge.charge_id,
        )
        [asked] = await recorded(database, invoice_id)
        assert (asked.result, asked.outcome, asked.charge_id, asked.attempt) == (
            "charged",
            "paid",
            charge.charge_id,
            1,
        )
        assert attempt.idempotency_key in asked.detail
        assert count("paid") == before + 1
        assert len(provider.store.ledger()) == 1
    finally:
        await provider.aclose()


async def test_nothing_charged_sends_the_invoice_back_to_pending_and_the_next_run_uses_a_new_key(
    database: Database, clock: ManualClock
) -> None:
    provider = simulator(clock, network_error_rate=1.0)  # received, nothing ever happens
    try:
        [invoice_id] = await make_invoices(database, 1, clock.now())
        await to_review_by_sweep(database, clock, provider, [invoice_id])
        reconciler = Reconciler(database, provider, clock, settle=SETTLE)

        soon = await reconciler.reconcile_invoice(invoice_id)
        assert (soon.result, soon.outcome) == ("not_charged", "deferred")  # a send may be late
        assert (await invoice_row(database, invoice_id)).status == "REVIEW"

        clock.advance(SETTLE)
        done = await reconciler.reconcile_invoice(invoice_id)
        assert (done.result, done.outcome) == ("not_charged", "pending")
        row = await invoice_row(database, invoice_id)
        assert (row.status, row.attempt_open_since, row.next_attempt_at) == (
            "PENDING",
            None,
            clock.now(),
        )
        assert [a.action for a in await actions_of(database, invoice_id)] == [
            "resolved_not_charged"
        ]
        assert [(r.result, r.outcome) for r in await recorded(database, invoice_id)] == [
            ("not_charged", "deferred"),
            ("not_charged", "pending"),
        ]

        provider.network_error_rate = 0.0
        scheduler = Scheduler(database, clock, POLICY, "automatic")
        assert await scheduler.tick() is not None  # the next run takes it
        await worker(database, provider, clock).run_until_idle()
        row = await invoice_row(database, invoice_id)
        assert row.status == "PAID"
        first, second = await attempts_of(database, invoice_id)
        assert first.finished_at is not None
        assert first.charge_id is None
        assert second.idempotency_key != first.idempotency_key
        assert second.idempotency_key.endswith(f":{invoice_id}:2")
        [charge] = provider.store.ledger()
        assert charge.idempotency_key == second.idempotency_key
    finally:
        await provider.aclose()


async def test_a_key_beyond_retention_cannot_be_told_and_stays_in_review_for_a_person(
    database: Database, clock: ManualClock, client: httpx.AsyncClient
) -> None:
    provider = simulator(clock, network_error_rate=1.0)
    try:
        [invoice_id] = await make_invoices(database, 1, clock.now())
        started = await to_review_by_sweep(database, clock, provider, [invoice_id])
        clock.set(started + POLICY.key_retention + MINUTE)  # the provider forgot the key
        reconciler = Reconciler(database, provider, clock, settle=SETTLE)
        before = count("review")

        for _ in range(2):  # asked twice, the same answer: one row, counted twice
            done = await reconciler.reconcile_invoice(invoice_id)
            assert (done.result, done.outcome) == ("cannot_tell", "review")

        assert (await invoice_row(database, invoice_id)).status == "REVIEW"
        assert await actions_of(database, invoice_id) == []
        [asked] = await recorded(database, invoice_id)
        assert (asked.result, asked.outcome, asked.asks) == ("cannot_tell", "review", 2)
        assert "unknown" in asked.detail
        assert count("review") == before + 2

        response = await client.get(f"/rest/v1/invoices/{invoice_id}/attempts")
        assert response.status_code == 200
        [attempt] = response.json()
        [shown] = attempt["reconciliations"]
        assert shown["result"] == "cannot_tell"
        assert shown["outcome"] == "review"
        assert shown["asks"] == 2
        assert attempt["idempotencyKey"] in shown["detail"]

        # a person can still resolve it, as before
        await service.resolve(
            database, clock, invoice_id, charged=False, charge_id=None, actor="alice"
        )
        assert (await invoice_row(database, invoice_id)).status == "PENDING"
    finally:
        await provider.aclose()


async def test_only_reconcilable_review_invoices_are_asked(
    database: Database, clock: ManualClock
) -> None:
    provider = ScriptedProvider()
    [paid, unknown] = await make_invoices(database, 2, clock.now())
    provider.scripts[unknown] = [OutcomeUnknownError("lost")] * 1000
    await open_run(database, clock, POLICY, "api")
    await worker(database, provider, clock).run_until_idle()
    reconciler = Reconciler(database, provider, clock, settle=SETTLE)
    assert (await reconciler.reconcile_all()).items == []  # nothing in REVIEW
    with pytest.raises(NotReconcilableError, match="PAID"):
        await reconciler.reconcile_invoice(paid)
    with pytest.raises(InvoiceNotFoundError):
        await reconciler.reconcile_invoice(10**9)


# -- races -----------------------------------------------------------------------------


@dataclass
class GatedProvider:
    """Answers every lookup with `answer`, once `gate` is set; counts the lookups."""

    answer: LookupResult
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    asked: list[ChargeLookup] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def find_charge(self, lookup: ChargeLookup) -> LookupResult:
        self.asked.append(lookup)
        self.changed.set()
        await self.gate.wait()
        return self.answer

    async def until_asked(self, n: int) -> None:
        while len(self.asked) < n:
            self.changed.clear()
            await self.changed.wait()


@pytest.mark.parametrize(
    "answer", [ChargeFound("ch_found", "found"), NothingCharged("none")], ids=["found", "none"]
)
async def test_two_reconcilers_at_once_write_once(
    database: Database,
    database_url: str,
    clock: ManualClock,
    answer: ChargeFound | NothingCharged,
) -> None:
    provider = ScriptedProvider(default=OutcomeUnknownError("lost"))
    ids = await make_invoices(database, 3, clock.now())
    await to_review_by_sweep(database, clock, provider, ids)
    clock.advance(SETTLE)
    gated = GatedProvider(answer)
    other = Database(database_url)
    try:
        first = Reconciler(database, gated, clock, settle=SETTLE)  # type: ignore[arg-type]
        second = Reconciler(other, gated, clock, settle=SETTLE)  # type: ignore[arg-type]
        both = asyncio.gather(first.reconcile_all(), second.reconcile_all())
        await gated.until_asked(6)  # both asked about every invoice before any answer
        gated.gate.set()
        summaries = await both
    finally:
        await other.dispose()
    expected = "paid" if isinstance(answer, ChargeFound) else "pending"
    for invoice_id in ids:
        outcomes = sorted(
            r.outcome for s in summaries for r in s.items if r.invoice_id == invoice_id
        )
        assert outcomes == sorted([expected, "superseded"])
        assert len(await actions_of(database, invoice_id)) == 1
        assert len(await attempts_of(database, invoice_id)) == 1
        row = await invoice_row(database, invoice_id)
        assert row.status == ("PAID" if expected == "paid" else "PENDING")


async def test_a_person_resolving_meanwhile_wins_and_the_reconciler_writes_nothing_but_its_answer(
    database: Database, clock: ManualClock
) -> None:
    provider = ScriptedProvider(default=OutcomeUnknownError("lost"))
    [invoice_id] = await make_invoices(database, 1, clock.now())
    await to_review_by_sweep(database, clock, provider, [invoice_id])
    gated = GatedProvider(ChargeFound("ch_reconciled"))
    reconciling = asyncio.create_task(
        Reconciler(database, gated, clock, settle=SETTLE).reconcile_invoice(invoice_id)  # type: ignore[arg-type]
    )
    await gated.until_asked(1)
    await service.resolve(
        database, clock, invoice_id, charged=True, charge_id="ch_person", actor="alice"
    )
    gated.gate.set()
    done = await reconciling
    assert (done.result, done.outcome) == ("charged", "superseded")
    [action] = await actions_of(database, invoice_id)
    assert (action.actor, action.charge_id) == ("alice", "ch_person")
    [attempt] = await attempts_of(database, invoice_id)
    assert attempt.charge_id == "ch_person"
    [asked] = await recorded(database, invoice_id)
    assert (asked.result, asked.outcome, asked.charge_id) == (
        "charged",
        "superseded",
        "ch_reconciled",
    )


async def test_an_answer_about_an_older_attempt_never_settles_a_newer_one(
    database: Database, clock: ManualClock
) -> None:
    provider = ScriptedProvider(default=OutcomeUnknownError("lost"))
    [invoice_id] = await make_invoices(database, 1, clock.now())
    await to_review_by_sweep(database, clock, provider, [invoice_id])
    gated = GatedProvider(NothingCharged("none"))
    clock.advance(SETTLE)
    reconciling = asyncio.create_task(
        Reconciler(database, gated, clock, settle=SETTLE).reconcile_invoice(invoice_id)  # type: ignore[arg-type]
    )
    await gated.until_asked(1)
    # meanwhile: a person said not charged, the next attempt went to REVIEW as well
    await service.resolve(database, clock, invoice_id, charged=False, charge_id=None, actor="bob")
    await to_review_by_sweep(database, clock, provider, [invoice_id])
    gated.gate.set()
    assert (await reconciling).outcome == "superseded"
    row = await invoice_row(database, invoice_id)
    assert (row.status, row.attempt_count) == ("REVIEW", 2)


# -- the scheduler ---------------------------------------------------------------------


async def test_the_scheduler_reconciles_every_interval(
    database: Database, clock: ManualClock
) -> None:
    provider = simulator(clock, network_error_rate=1.0)
    try:
        [invoice_id] = await make_invoices(database, 1, clock.now())
        await to_review_by_sweep(database, clock, provider, [invoice_id])
        reconciler = Reconciler(database, provider, clock, settle=SETTLE)
        scheduler = Scheduler(
            database, clock, POLICY, "external", reconciler=reconciler, reconcile_interval=300
        )
        await scheduler.tick()
        assert scheduler.reconciling is not None
        first = await scheduler.reconciling
        assert first is not None
        assert [r.outcome for r in first.items] == ["deferred"]
        clock.advance(timedelta(seconds=299))
        await scheduler.tick()
        assert scheduler.reconciling.done()  # not yet due: no new pass
        assert (await invoice_row(database, invoice_id)).status == "REVIEW"
        clock.advance(timedelta(seconds=1))
        await scheduler.tick()
        second = await scheduler.reconciling
        assert second is not None
        assert [r.outcome for r in second.items] == ["pending"]
        assert (await invoice_row(database, invoice_id)).status == "PENDING"
    finally:
        await provider.aclose()


async def test_an_interval_of_zero_turns_the_schedulers_reconciler_off(
    database: Database, clock: ManualClock
) -> None:
    provider = simulator(clock, network_error_rate=1.0)
    try:
        [invoice_id] = await make_invoices(database, 1, clock.now())
        await to_review_by_sweep(database, clock, provider, [invoice_id])
        reconciler = Reconciler(database, provider, clock, settle=SETTLE)
        scheduler = Scheduler(
            database, clock, POLICY, "external", reconciler=reconciler, reconcile_interval=0
        )
        for _ in range(3):
            await scheduler.tick()
            clock.advance(timedelta(seconds=600))
        assert scheduler.reconciling is None  # no pass ever started
        assert (await invoice_row(database, invoice_id)).status == "REVIEW"
    finally:
        await provider.aclose()


# -- the retention trap run ------------------------------------------------------------


async def profiled_invoices(
    db: Database, provider: SimulatedPaymentProvider, due_at: datetime, want: dict[str, int]
) -> dict[str, list[int]]:
    """Invoices of customers with the seeded profiles wanted (others get no invoice)."""
    found: dict[str, list[int]] = {p: [] for p in want}
    async with db.write() as conn:
        while any(len(found[p]) < n for p, n in want.items()):
            customer = await CustomerRepository(conn).create(Currency.EUR, "UTC", due_at)
            profile = provider.profile(customer.id)
            if profile in found and len(found[profile]) < want[profile]:
                invoice = await InvoiceRepository(conn).create(
                    customer.id, Money.of("25.00", Currency.EUR), due_at, due_at
                )
                found[profile].append(invoice.id)
    return found


@pytest.fixture
async def trap(clock: ManualClock) -> AsyncIterator[SimulatedPaymentProvider]:
    provider = simulator(
        clock, failure_rate=0.5, network_error_rate=0.0, ambiguous_rate=0.5, seed=12
    )
    try:
        yield provider
    finally:
        await provider.aclose()


async def drive(
    db: Database, clock: ManualClock, provider: Any, scheduler: Scheduler, until: datetime
) -> None:
    step = timedelta(minutes=10)
    charging = worker(db, provider, clock)
    while clock.now() < until:
        clock.advance(step)
        await scheduler.tick()
        if scheduler.reconciling is not None:
            await scheduler.reconciling
        await charging.run_until_idle()


async def statuses(db: Database, ids: list[int]) -> Counter[str]:
    return Counter([(await invoice_row(db, i)).status for i in ids])


async def test_retention_trap_run_ends_with_every_invoice_paid_and_nothing_charged_twice(
    database: Database, clock: ManualClock, trap: SimulatedPaymentProvider
) -> None:
    provider = trap
    t0 = clock.now()
    first = await profiled_invoices(
        database, provider, t0, {PROFILE_FUNDED: 12, PROFILE_ANSWERS_LOST: 4}
    )
    reconciler = Reconciler(database, provider, clock, settle=SETTLE)
    scheduler = Scheduler(
        database, clock, POLICY, "automatic", reconciler=reconciler, reconcile_interval=300
    )
    await scheduler.tick()
    await worker(database, provider, clock).run_until_idle()
    lost = [
        i
        for i in [i for ids in first.values() for i in ids]
        if (await invoice_row(database, i)).status != "PAID"
    ]
    assert len(lost) >= 4  # answers lost: charged at the provider, unknown here
    charged_before = {e.invoice_id: e.charge_id for e in provider.store.ledger()}
    assert set(lost) <= set(charged_before)

    provider.outage = True  # every charge answered 503 from now on, lookups still answer
    second = await profiled_invoices(
        database, provider, t0 + timedelta(hours=1), {PROFILE_FUNDED: 5}
    )  # first sent during the outage: received, never processed
    await drive(
        database, clock, provider, scheduler, t0 + POLICY.key_retention + timedelta(hours=6)
    )
    everyone = [i for ids in first.values() for i in ids] + second[PROFILE_FUNDED]
    assert (await statuses(database, everyone))["REVIEW"] == 0

    provider.outage = False  # past the key retention of every first attempt
    await drive(database, clock, provider, scheduler, clock.now() + timedelta(hours=2))

    final = await statuses(database, everyone)
    assert final == Counter({"PAID": len(everyone)}), final
    ledger = provider.store.ledger()
    per_invoice = Counter(e.invoice_id for e in ledger)
    assert all(n == 1 for n in per_invoice.values()), per_invoice  # none charged twice
    assert set(per_invoice) == set(everyone)
    for invoice_id in lost:  # found by reconciliation: the first charge, not a second one
        row = await invoice_row(database, invoice_id)
        attempts = await attempts_of(database, invoice_id)
        assert attempts[-1].charge_id == charged_before[invoice_id]
        actions = await actions_of(database, invoice_id)
        assert [(a.actor, a.action) for a in actions] == [("reconciler", "resolved_charged")]
        assert row.attempt_count == 1
    for invoice_id in second[PROFILE_FUNDED]:  # nothing charged: back to PENDING, new keys
        actions = await actions_of(database, invoice_id)
        assert actions
        assert {(a.actor, a.action) for a in actions} == {("reconciler", "resolved_not_charged")}
        assert (await invoice_row(database, invoice_id)).attempt_count >= 2


async def test_retention_trap_without_timely_reconciliation_leaves_review_for_a_person(
    database: Database, clock: ManualClock, trap: SimulatedPaymentProvider
) -> None:
    """Asked only after the provider forgot the keys, it cannot tell: nothing is guessed."""
    provider = trap
    t0 = clock.now()
    first = await profiled_invoices(database, provider, t0, {PROFILE_ANSWERS_LOST: 3})
    scheduler = Scheduler(database, clock, POLICY, "automatic")  # no reconciler
    await scheduler.tick()
    await worker(database, provider, clock).run_until_idle()
    provider.outage = True
    await drive(database, clock, provider, scheduler, t0 + POLICY.key_retention + MINUTE)
    ids = first[PROFILE_ANSWERS_LOST]
    assert await statuses(database, ids) == Counter({"REVIEW": 3})
    provider.outage = False
    summary = await Reconciler(database, provider, clock, settle=SETTLE).reconcile_all()
    assert [r.outcome for r in summary.items] == ["review"] * 3
    assert summary.still_in_review == 3
    await drive(database, clock, provider, scheduler, clock.now() + timedelta(hours=1))
    assert await statuses(database, ids) == Counter({"REVIEW": 3})
    assert Counter(e.invoice_id for e in provider.store.ledger()) == Counter(ids)  # once each
