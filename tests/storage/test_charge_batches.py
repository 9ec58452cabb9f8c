"""The charge flow's batched statements on both engines (PostgreSQL: one statement
per batch, arrays with NULL elements): what a claim reads back, what a record
writes, and the lease check that makes a record all or nothing."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest

from antaeus.billing.service import open_run
from antaeus.clock import ManualClock
from antaeus.domain.policy import PolicySettings
from antaeus.storage.database import Database
from antaeus.storage.repositories.billing import BillingRepository
from antaeus.storage.repositories.charges import LeaseLostError, OutcomeRow
from tests.billing.helpers import attempts_of, invoice_row, make_invoices, run_outcomes

POLICY = PolicySettings()
OWNER = "tester"


def _row(invoice_id: int, run_id: int, token: int, **values: object) -> OutcomeRow:
    fields: dict[str, object] = {
        "invoice_id": invoice_id,
        "lease_token": token,
        "run_id": run_id,
        "attempt": 1,
        "status": "PAID",
        "last_failure": None,
        "next_attempt_at": None,
        "eligible_at": None,
        "attempt_open_since": None,
        "dunning_count": 0,
        "unknown_repeats": 0,
        "run_unknown_since": None,
        "attempt_outcome": "charged",
        "attempt_finished": True,
        "charge_id": f"ch_{invoice_id}",
        "run_outcome": "paid",
        "event_type": "invoice.paid",
        "event_payload": "{}",
    }
    fields.update(values)
    return OutcomeRow(**fields)  # type: ignore[arg-type]


async def test_claim_reads_aware_moments_and_record_writes_nulls(
    database: Database, clock: ManualClock
) -> None:
    now = clock.now()
    due = now - timedelta(days=1)
    ids = await make_invoices(database, 3, due)
    run_id = await open_run(database, clock, POLICY, "api")
    assert run_id is not None
    async with database.write() as conn:
        claimed = await BillingRepository(conn).claim(
            OWNER,
            now,
            now + timedelta(minutes=5),
            POLICY.repeat_cut(now),
            10,
            "inst",
            token=7,
            exclude=[ids[0]],
        )
    assert sorted(c.invoice_id for c in claimed) == ids[1:]
    for c in claimed:
        assert c.due_at == due
        assert c.due_at.tzinfo is UTC
        assert c.attempt_open_since == now
        assert c.attempt_open_since.tzinfo is UTC
        assert c.run_unknown_since is None
        assert (c.attempt, c.sends, c.lease_token, c.run_id) == (1, 1, 7, run_id)
        assert c.idempotency_key == f"inst:{c.invoice_id}:1"
        assert str(c.amount.currency) == "EUR"
    assert [a.idempotency_key for a in await attempts_of(database, ids[1])] == [f"inst:{ids[1]}:1"]

    paid, unknown = ids[1], ids[2]
    later = now + timedelta(hours=1)
    rows = [
        _row(paid, run_id, 7, eligible_at=now),
        _row(
            unknown,
            run_id,
            7,
            status="PENDING",
            last_failure="unknown_outcome",
            next_attempt_at=later,
            eligible_at=later,
            attempt_open_since=now,
            unknown_repeats=1,
            run_unknown_since=now,
            attempt_outcome="unknown",
            attempt_finished=False,
            charge_id=None,
            run_outcome=None,
            event_type="invoice.charge_unknown",
        ),
    ]
    async with database.write() as conn:
        repo = BillingRepository(conn)
        assert await repo.still_owned(OWNER, ids) == {paid: 7, unknown: 7}
        await repo.record(OWNER, rows, now)

    row = await invoice_row(database, paid)
    assert (row.status, row.run_id, row.lease_owner, row.lease_token) == ("PAID", None, None, None)
    assert row.next_attempt_at is None
    assert row.attempt_open_since is None
    assert (row.eligible_at, row.updated_at) == (now, now)
    row = await invoice_row(database, unknown)
    assert (row.status, row.run_id, row.last_failure) == ("PENDING", run_id, "unknown_outcome")
    assert (row.next_attempt_at, row.run_unknown_since) == (later, now)
    assert row.unknown_repeats == 1
    attempt = (await attempts_of(database, paid))[0]
    assert (attempt.outcome, attempt.charge_id, attempt.finished_at) == (
        "charged",
        f"ch_{paid}",
        now,
    )
    attempt = (await attempts_of(database, unknown))[0]
    assert (attempt.outcome, attempt.charge_id, attempt.finished_at) == ("unknown", None, None)
    outcomes = await run_outcomes(database, run_id)
    assert (outcomes[paid], outcomes[unknown], outcomes[ids[0]]) == ("paid", None, None)


async def test_record_of_a_lease_that_changed_hands_writes_nothing(
    database: Database, clock: ManualClock
) -> None:
    now = clock.now()
    ids = await make_invoices(database, 2, now - timedelta(days=1))
    run_id = await open_run(database, clock, POLICY, "api")
    assert run_id is not None
    async with database.write() as conn:
        await BillingRepository(conn).claim(
            OWNER, now, now + timedelta(minutes=5), POLICY.repeat_cut(now), 10, "inst", token=3
        )
    rows = [_row(ids[0], run_id, 3, eligible_at=now), _row(ids[1], run_id, 4, eligible_at=now)]
    with pytest.raises(LeaseLostError, match="1 of 2"):
        async with database.write() as conn:
            await BillingRepository(conn).record(OWNER, rows, now)
    for invoice_id in ids:
        row = await invoice_row(database, invoice_id)
        assert (row.status, row.lease_token) == ("PROCESSING", 3)
        assert (await attempts_of(database, invoice_id))[0].outcome is None
