"""The customer's provider references reach the provider; refusals before a call; the
definite outcomes card_declined and authentication_required. Real SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from antaeus import exactjson
from antaeus.billing import service
from antaeus.billing.service import open_run
from antaeus.clock import ManualClock
from antaeus.domain.invoice import FailureReason, InvoiceStatus
from antaeus.domain.policy import (
    OUTCOME_TABLE,
    ChargeOutcome,
    RunOutcome,
    decide_refusal,
)
from antaeus.payments.provider import (
    AuthenticationRequiredError,
    CardDeclinedError,
    Charged,
    Declined,
    OutcomeUnknownError,
    Refusal,
)
from antaeus.storage.database import Database
from antaeus.storage.repositories.billing import BillingRepository
from antaeus.storage.repositories.customers import CustomerRepository
from antaeus.storage.repositories.installation import InstallationRepository
from antaeus.storage.tables import charge_attempt_answers, events
from tests.billing.fakes import ScriptedProvider, needs_payment_method, refuses_amounts_over
from tests.billing.helpers import attempts_of, invoice_row, make_invoices, run_outcomes
from tests.billing.test_charge_flow import POLICY, worker
from tests.conftest import NOW


async def _events_of(db: Database, invoice_id: int) -> list[tuple[str, dict[str, object]]]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(events.c.type, events.c.payload)
            .where(events.c.invoice_id == invoice_id)
            .order_by(events.c.id)
        )
        return [(r.type, exactjson.loads(r.payload)) for r in rows]


async def _set_references(db: Database, customer_id: int, cus: str | None, pm: str | None) -> None:
    async with db.write() as conn:
        changed = await CustomerRepository(conn).change(
            customer_id,
            {"provider_customer_id": cus, "provider_payment_method_id": pm},
            NOW,
        )
    assert changed is not None


async def _installation(db: Database) -> str:
    async with db.read() as conn:
        return await InstallationRepository(conn).installation_id()


# -- the policy ---------------------------------------------------------------


def test_new_definite_outcomes_fail_and_close_the_attempt() -> None:
    for outcome, reason in [
        (ChargeOutcome.CARD_DECLINED, FailureReason.CARD_DECLINED),
        (ChargeOutcome.AUTHENTICATION_REQUIRED, FailureReason.AUTHENTICATION_REQUIRED),
    ]:
        rule = OUTCOME_TABLE[outcome]
        assert rule.reason is reason
        assert rule.closes_attempt
        assert rule.run_outcome is RunOutcome.FAILED
        assert rule.event_type == "invoice.failed"


def test_a_refusal_fails_a_new_attempt_and_reviews_one_sent_before() -> None:
    fresh = decide_refusal("payment_method_missing", earlier_sends=0)
    assert fresh.status is InvoiceStatus.FAILED
    assert fresh.reason is FailureReason.PAYMENT_METHOD_MISSING
    assert fresh.takes_back_attempt
    assert fresh.run_outcome is RunOutcome.FAILED
    assert decide_refusal("amount_not_chargeable", 0).reason is FailureReason.AMOUNT_NOT_CHARGEABLE
    # a reason the protocol does not know is a provider's bug: rejected, still no call
    assert decide_refusal("whatever", 0).reason is FailureReason.PROVIDER_REJECTED
    repeat = decide_refusal("payment_method_missing", earlier_sends=1)
    assert repeat.status is InvoiceStatus.REVIEW
    assert repeat.reason is FailureReason.UNKNOWN_OUTCOME
    assert not repeat.takes_back_attempt
    assert repeat.run_outcome is RunOutcome.REVIEW


# -- the claim carries the references ----------------------------------------------


async def test_the_charge_request_carries_the_attempt_and_the_customers_references(
    database: Database, clock: ManualClock
) -> None:
    ids = await make_invoices(database, 3, clock.now() - timedelta(minutes=1))
    row = await invoice_row(database, ids[0])
    await _set_references(database, row.customer_id, "cus_123", "pm_456")
    await open_run(database, clock, POLICY, "api")
    provider = ScriptedProvider(default=Charged("ch_1"))
    await worker(database, provider, clock).run_until_idle()
    assert len(provider.calls) == 3
    installation = await _installation(database)
    for request in provider.calls:
        assert request.attempt == 1
        assert request.idempotency_key == f"{installation}:{request.invoice_id}:1"
        assert (request.provider_customer_id, request.provider_payment_method_id) == (
            "cus_123",
            "pm_456",
        )


async def test_a_claim_reads_the_references_as_they_are_now(
    database: Database, clock: ManualClock
) -> None:
    """One claim statement, many customers: each invoice gets its own customer's."""
    first = await make_invoices(database, 2, clock.now() - timedelta(minutes=1))
    second = await make_invoices(database, 2, clock.now() - timedelta(minutes=1))
    third = await make_invoices(database, 1, clock.now() - timedelta(minutes=1))
    await _set_references(database, (await invoice_row(database, first[0])).customer_id, "a", "1")
    await _set_references(database, (await invoice_row(database, second[0])).customer_id, "b", None)
    await open_run(database, clock, POLICY, "api")
    async with database.write() as conn:
        claimed = await BillingRepository(conn).claim(
            "w", clock.now(), clock.now() + timedelta(minutes=1), POLICY.repeat_cut(clock.now()),
            10, "inst",
        )  # fmt: skip
    refs = {c.invoice_id: (c.provider_customer_id, c.provider_payment_method_id) for c in claimed}
    assert refs == {
        first[0]: ("a", "1"),
        first[1]: ("a", "1"),
        second[0]: ("b", None),
        second[1]: ("b", None),
        third[0]: (None, None),
    }


# -- refusals before a call ----------------------------------------------------------


async def test_a_refused_invoice_fails_at_once_without_a_call_or_an_attempt(
    database: Database, clock: ManualClock
) -> None:
    ids = await make_invoices(database, 2, clock.now() - timedelta(minutes=1))
    customer = (await invoice_row(database, ids[0])).customer_id
    run_id = await open_run(database, clock, POLICY, "api")
    provider = ScriptedProvider(default=Charged("ch_ok"), refuse=needs_payment_method)
    w = worker(database, provider, clock)
    await w.run_until_idle()
    assert provider.calls == []  # no call at all
    assert len(provider.refused) == 2
    for invoice_id in ids:
        row = await invoice_row(database, invoice_id)
        assert (row.status, row.last_failure) == ("FAILED", "payment_method_missing")
        # no attempt key consumed: the attempt claimed ahead was taken back
        assert (row.attempt_count, row.attempt_sends, row.attempt_open_since) == (0, 0, None)
        assert (row.run_id, row.lease_owner, row.lease_token) == (None, None, None)
        assert await attempts_of(database, invoice_id) == []
        [(kind, data)] = await _events_of(database, invoice_id)
        assert kind == "invoice.failed"
        assert data["attempt"] is None
        assert data["refusal"] == {
            "reason": "payment_method_missing",
            "detail": "customer lacks providerCustomerId and providerPaymentMethodId",
        }
        invoice = data["invoice"]
        assert isinstance(invoice, dict)
        assert (invoice["status"], invoice["lastFailure"], invoice["attemptCount"]) == (
            "FAILED",
            "payment_method_missing",
            0,
        )
        assert data["runId"] == run_id
    assert await run_outcomes(database, run_id) == {ids[0]: "failed", ids[1]: "failed"}
    async with database.read() as conn:
        repo = BillingRepository(conn)
        run = await repo.get_run(run_id)
        stats = await repo.run_stats([run_id])
    assert run is not None
    assert run.status == "completed"
    assert stats[run_id].counts["failed"] == 2
    assert w.stats.by_outcome == {"payment_method_missing": 2}
    assert w.stats.recorded == 2

    # The customer is fixed, a person retries: the charge uses the key never consumed.
    await _set_references(database, customer, "cus_fixed", "pm_fixed")
    await service.retry(database, clock, ids[0], actor="tester")
    await open_run(database, clock, POLICY, "api")
    await w.run_until_idle()
    row = await invoice_row(database, ids[0])
    assert (row.status, row.attempt_count) == ("PAID", 1)
    [request] = provider.calls
    installation = await _installation(database)
    assert request.idempotency_key == f"{installation}:{ids[0]}:1"
    assert (request.provider_customer_id, request.provider_payment_method_id) == (
        "cus_fixed",
        "pm_fixed",
    )
    [attempt] = await attempts_of(database, ids[0])
    assert (attempt.number, attempt.outcome, attempt.charge_id, attempt.sends) == (
        1,
        "charged",
        "ch_ok",
        1,
    )
    assert (await invoice_row(database, ids[1])).status == "FAILED"  # not retried: untouched


async def test_a_refusal_after_a_definite_outcome_gives_that_attempt_number_back(
    database: Database, clock: ManualClock
) -> None:
    """A customer whose first attempt was declined, then lost its card: attempt 2 is
    taken back (attempt 1 stays as it was), and the retry charges as attempt 2."""
    [invoice_id] = await make_invoices(database, 1, clock.now() - timedelta(minutes=1))
    customer = (await invoice_row(database, invoice_id)).customer_id
    await _set_references(database, customer, "cus_1", "pm_1")
    await open_run(database, clock, POLICY, "api")
    provider = ScriptedProvider(scripts={invoice_id: [Declined()]}, refuse=needs_payment_method)
    w = worker(database, provider, clock)
    await w.run_until_idle()
    assert (await invoice_row(database, invoice_id)).status == "PENDING"
    await _set_references(database, customer, "cus_1", None)
    clock.advance(timedelta(days=1))
    await open_run(database, clock, POLICY, "schedule")
    await w.run_until_idle()
    row = await invoice_row(database, invoice_id)
    assert (row.status, row.last_failure, row.attempt_count) == (
        "FAILED",
        "payment_method_missing",
        1,
    )
    assert [(a.number, a.outcome) for a in await attempts_of(database, invoice_id)] == [
        (1, "insufficient_funds")
    ]
    await _set_references(database, customer, "cus_1", "pm_2")
    await service.retry(database, clock, invoice_id, actor="tester")
    await open_run(database, clock, POLICY, "api")
    await w.run_until_idle()
    row = await invoice_row(database, invoice_id)
    assert (row.status, row.attempt_count) == ("PAID", 2)
    keys = provider.by_invoice[invoice_id]
    assert [k.rsplit(":", 1)[1] for k in keys] == ["1", "2"]


async def test_an_amount_the_provider_refuses_fails_with_amount_not_chargeable(
    database: Database, clock: ManualClock
) -> None:
    ids = await make_invoices(database, 2, clock.now() - timedelta(minutes=1))  # 10.50, 11.50
    run_id = await open_run(database, clock, POLICY, "api")
    provider = ScriptedProvider(default=Charged("ch_ok"), refuse=refuses_amounts_over(1100))
    await worker(database, provider, clock).run_until_idle()
    assert (await invoice_row(database, ids[0])).status == "PAID"
    row = await invoice_row(database, ids[1])
    assert (row.status, row.last_failure, row.attempt_count) == (
        "FAILED",
        "amount_not_chargeable",
        0,
    )
    assert [r.invoice_id for r in provider.calls] == [ids[0]]
    assert await run_outcomes(database, run_id) == {ids[0]: "paid", ids[1]: "failed"}
    [(kind, data)] = await _events_of(database, ids[1])
    assert kind == "invoice.failed"
    assert data["refusal"] == {
        "reason": "amount_not_chargeable",
        "detail": "above 1100 minor units",
    }


async def test_a_refused_repeat_of_an_open_attempt_goes_to_review_with_its_key(
    database: Database, clock: ManualClock
) -> None:
    """The earlier send may have charged: never FAILED (a retry would use a new key)."""
    [invoice_id] = await make_invoices(database, 1, clock.now() - timedelta(minutes=1))
    customer = (await invoice_row(database, invoice_id)).customer_id
    await _set_references(database, customer, "cus_1", "pm_1")
    run_id = await open_run(database, clock, POLICY, "api")
    provider = ScriptedProvider(
        scripts={invoice_id: [OutcomeUnknownError()]},
        default=Charged("ch_never"),
        refuse=needs_payment_method,
    )
    w = worker(database, provider, clock)
    await w.run_until_idle()
    row = await invoice_row(database, invoice_id)
    assert (row.status, row.last_failure, row.attempt_sends) == ("PENDING", "unknown_outcome", 1)
    opened = row.attempt_open_since
    # The customer's card removed meanwhile changes nothing for the repeat (it carries
    # the references its attempt recorded); the provider now refusing the amount does.
    await _set_references(database, customer, None, None)
    provider.refuse = refuses_amounts_over(100)
    clock.advance(timedelta(minutes=1))
    await w.run_until_idle()
    assert len(provider.calls) == 1  # the repeat was never sent
    [refused] = provider.refused
    assert (refused.provider_customer_id, refused.provider_payment_method_id) == ("cus_1", "pm_1")
    row = await invoice_row(database, invoice_id)
    assert (row.status, row.last_failure) == ("REVIEW", "unknown_outcome")
    assert (row.attempt_count, row.attempt_sends, row.attempt_open_since) == (1, 1, opened)
    [attempt] = await attempts_of(database, invoice_id)
    assert (attempt.number, attempt.sends, attempt.outcome, attempt.finished_at) == (
        1,
        1,  # the refused send taken back: only the one that may have charged
        "unknown_outcome",
        None,
    )
    assert await run_outcomes(database, run_id) == {invoice_id: "review"}
    kinds = [k for k, _ in await _events_of(database, invoice_id)]
    assert kinds == ["invoice.payment_unknown", "invoice.review"]
    _, data = (await _events_of(database, invoice_id))[-1]
    attempt_data = data["attempt"]
    assert isinstance(attempt_data, dict)
    assert attempt_data["idempotencyKey"] == provider.by_invoice[invoice_id][0]
    assert data["refusal"] == {
        "reason": "amount_not_chargeable",
        "detail": "above 100 minor units",
    }


async def test_refusal_text_is_bounded_and_made_printable(
    database: Database, clock: ManualClock
) -> None:
    [invoice_id] = await make_invoices(database, 1, clock.now() - timedelta(minutes=1))
    await open_run(database, clock, POLICY, "api")
    provider = ScriptedProvider(
        refuse=lambda _r: Refusal("payment_method_missing", "line\nbreak\x00" + "x" * 2000)
    )
    await worker(database, provider, clock).run_until_idle()
    [(_, data)] = await _events_of(database, invoice_id)
    refusal = data["refusal"]
    assert isinstance(refusal, dict)
    detail = refusal["detail"]
    assert isinstance(detail, str)
    assert detail.startswith("line break ")
    assert len(detail) == 500
    assert detail.isprintable()


# -- card_declined and authentication_required ---------------------------------------


@pytest.mark.parametrize(
    ("error", "reason", "code"),
    [
        (CardDeclinedError("expired_card"), "card_declined", "expired_card"),
        (CardDeclinedError("generic_decline"), "card_declined", "generic_decline"),
        (CardDeclinedError("bad\x00code"), "card_declined", None),  # malformed: not kept
        (AuthenticationRequiredError("3-D Secure"), "authentication_required", None),
    ],
)
async def test_definite_declines_fail_and_keep_the_decline_code(
    database: Database, clock: ManualClock, error: Exception, reason: str, code: str | None
) -> None:
    [invoice_id] = await make_invoices(database, 1, clock.now() - timedelta(minutes=1))
    run_id = await open_run(database, clock, POLICY, "api")
    provider = ScriptedProvider(scripts={invoice_id: [error]}, default=Charged("ch_later"))  # type: ignore[list-item]
    w = worker(database, provider, clock)
    await w.run_until_idle()
    row = await invoice_row(database, invoice_id)
    assert (row.status, row.last_failure, row.attempt_open_since) == ("FAILED", reason, None)
    [attempt] = await attempts_of(database, invoice_id)
    assert (attempt.outcome, attempt.decline_code) == (reason, code)
    assert attempt.finished_at is not None  # definite: the attempt is closed
    assert await run_outcomes(database, run_id) == {invoice_id: "failed"}
    [(kind, data)] = await _events_of(database, invoice_id)
    assert kind == "invoice.failed"
    assert data["attempt"] == {
        "number": 1,
        "idempotencyKey": provider.by_invoice[invoice_id][0],
        "outcome": reason,
        "chargeId": None,
        "reason": reason,
        "declineCode": code,
    }
    async with database.read() as conn:
        answers = list(
            await conn.execute(
                select(charge_attempt_answers).where(
                    charge_attempt_answers.c.invoice_id == invoice_id
                )
            )
        )
    assert [a.outcome for a in answers] == [reason]
    # a retry (the customer acted) is a new attempt with a new key
    await service.retry(database, clock, invoice_id, actor="tester")
    await open_run(database, clock, POLICY, "api")
    await w.run_until_idle()
    assert (await invoice_row(database, invoice_id)).status == "PAID"
    first, second = provider.by_invoice[invoice_id]
    assert first != second
    attempts = await attempts_of(database, invoice_id)
    assert [(a.number, a.outcome, a.decline_code) for a in attempts] == [
        (1, reason, code),
        (2, "charged", None),
    ]
