"""Each attempt keeps the provider references it was sent with (issue 20, item 1).

An attempt charges `cus_A`, its answer is lost, the invoice goes to REVIEW; a
person then PATCHes the customer to `cus_B`. Every question about that attempt
(its repeat with the same key, reconciliation, `GET .../attempts`) must use what
the attempt recorded, never the customer's current references: asking about
`cus_B` finds nothing, and the next run would charge `cus_B` too. An attempt
written before the references were kept reconciles as "cannot tell". Real SQLite
and PostgreSQL, through the REST API where a person would act.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text, update

from antaeus.billing.audit import CUSTOMER_DIFFERS, LedgerCharge, LedgerError, audit, parse_ledger
from antaeus.billing.reconcile import Reconciler
from antaeus.billing.service import open_run
from antaeus.clock import ManualClock
from antaeus.domain.money import Currency, Money
from antaeus.payments.provider import (
    Charged,
    ChargeFound,
    ChargeLookup,
    ChargeRequest,
    Declined,
    KeyReusedError,
    LookupResult,
    NothingCharged,
    OutcomeUnknownError,
    Refusal,
)
from antaeus.storage import migrate
from antaeus.storage.batch import sqlite_datetime
from antaeus.storage.database import Database
from antaeus.storage.tables import charge_attempts
from tests.api.test_billing_api import get_json, new_invoice
from tests.billing.helpers import attempts_of, invoice_row
from tests.billing.test_reconcile import MINUTE, POLICY, SETTLE, to_review_by_sweep, worker
from tests.conftest import PG_ENV, _asyncpg_dsn, _with_database


@dataclass
class PerCustomerProvider:
    """A provider shaped like Stripe, written for this test: every charge belongs to the
    provider customer it was sent for; a key is answered as it was the first time, and
    the same key with another customer is refused (`idempotency_key_reused`); a lookup
    lists one provider customer's charges and looks for the key among them."""

    lose_answers: bool = True  # charge, then answer as if the network dropped the answer
    deduplicates_keys: bool = True
    key_retention: timedelta = timedelta(hours=24)
    calls: list[ChargeRequest] = field(default_factory=list)
    lookups: list[ChargeLookup] = field(default_factory=list)
    #: provider customer -> [(key, charge id)]
    charges: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    _keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (customer, charge)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def refusal(self, request: ChargeRequest) -> Refusal | None:
        return None

    async def charge(self, request: ChargeRequest) -> Charged | Declined:
        self.calls.append(request)
        customer = request.provider_customer_id or ""
        known = self._keys.get(request.idempotency_key)
        if known is not None:
            if known[0] != customer:
                raise KeyReusedError("the key was used with another customer")
            charge_id = known[1]
        else:
            charge_id = f"ch_{next(self._ids)}"
            self._keys[request.idempotency_key] = (customer, charge_id)
            self.charges.setdefault(customer, []).append((request.idempotency_key, charge_id))
        if self.lose_answers:
            raise OutcomeUnknownError("the answer was lost")
        return Charged(charge_id, replayed=known is not None)

    async def find_charge(self, lookup: ChargeLookup) -> LookupResult:
        self.lookups.append(lookup)
        for key, charge_id in self.charges.get(lookup.provider_customer_id or "", []):
            if key == lookup.idempotency_key:
                return ChargeFound(charge_id, f"found on {lookup.provider_customer_id}")
        return NothingCharged(f"nothing with the key on {lookup.provider_customer_id}")

    async def aclose(self) -> None:
        return None


async def _customer(client: httpx.AsyncClient, cus: str, pm: str) -> int:
    response = await client.post(
        "/rest/v1/customers",
        json={"currency": "EUR", "providerCustomerId": cus, "providerPaymentMethodId": pm},
    )
    assert response.status_code == 201, response.text
    cid: int = response.json()["id"]
    return cid


async def _patch(client: httpx.AsyncClient, cid: int, cus: str, pm: str) -> None:
    response = await client.patch(
        f"/rest/v1/customers/{cid}",
        json={"providerCustomerId": cus, "providerPaymentMethodId": pm},
    )
    assert response.status_code == 200, response.text


async def test_reconciliation_after_a_patch_asks_about_the_customer_the_attempt_charged(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    """The issue's scenario: found on cus_A, PAID; cus_B is never asked about nor charged."""
    cid = await _customer(client, "cus_A", "pm_A")
    invoice_id = await new_invoice(client, cid)
    provider = PerCustomerProvider()
    await to_review_by_sweep(database, clock, provider, [invoice_id])
    assert [c for c in provider.charges] == ["cus_A"]
    await _patch(client, cid, "cus_B", "pm_B")

    clock.advance(SETTLE + MINUTE)  # past the settle time: a "nothing charged" would be trusted
    summary = await Reconciler(database, provider, clock, settle=SETTLE).reconcile_all()
    assert [(r.invoice_id, r.outcome) for r in summary.items] == [(invoice_id, "paid")]
    assert [lookup.provider_customer_id for lookup in provider.lookups] == ["cus_A"]
    assert [lookup.provider_payment_method_id for lookup in provider.lookups] == ["pm_A"]
    [(_key, charge_id)] = provider.charges["cus_A"]
    found = await get_json(client, f"/rest/v1/invoices/{invoice_id}")
    assert found["status"] == "PAID"
    assert (await attempts_of(database, invoice_id))[0].charge_id == charge_id

    # and nothing more is charged, on anyone
    provider.lose_answers = False
    clock.advance(timedelta(days=1))
    await open_run(database, clock, POLICY, "api")
    await worker(database, provider, clock).run_until_idle()
    assert "cus_B" not in provider.charges
    assert [
        c.provider_customer_id for c in provider.calls if c.provider_customer_id == "cus_B"
    ] == []

    # GET .../attempts shows what the attempt was sent with
    [attempt] = await get_json(client, f"/rest/v1/invoices/{invoice_id}/attempts")
    assert (attempt["providerCustomerId"], attempt["providerPaymentMethodId"]) == (
        "cus_A",
        "pm_A",
    )
    assert attempt["referencesRecorded"] is True


async def test_a_repeat_of_an_open_attempt_after_a_patch_sends_the_recorded_references(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    """The unknown outcome is repeated with its key, and so with cus_A: the provider
    answers the charge it made, and cus_B is never charged."""
    cid = await _customer(client, "cus_A", "pm_A")
    invoice_id = await new_invoice(client, cid)
    provider = PerCustomerProvider()
    await open_run(database, clock, POLICY, "api")
    w = worker(database, provider, clock)
    await w.run_until_idle()
    row = await invoice_row(database, invoice_id)
    assert (row.status, row.last_failure, row.attempt_count) == ("PENDING", "unknown_outcome", 1)

    await _patch(client, cid, "cus_B", "pm_B")
    provider.lose_answers = False
    clock.advance(timedelta(hours=1))
    await open_run(database, clock, POLICY, "api")
    await w.run_until_idle()

    first, *repeats = provider.calls
    assert repeats, "the open attempt was not repeated"
    for repeat in repeats:
        assert repeat.idempotency_key == first.idempotency_key
        assert (repeat.provider_customer_id, repeat.provider_payment_method_id) == (
            "cus_A",
            "pm_A",
        )
    row = await invoice_row(database, invoice_id)
    [(_key, charge_id)] = provider.charges["cus_A"]
    assert (row.status, row.attempt_count) == ("PAID", 1)
    assert list(provider.charges) == ["cus_A"]
    [attempt] = await attempts_of(database, invoice_id)
    assert (attempt.charge_id, attempt.provider_customer_id, attempt.references_recorded) == (
        charge_id,
        "cus_A",
        True,
    )


async def test_a_new_attempt_records_the_references_it_was_sent_with(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    """A dunning retry is a new attempt: it takes the customer's references as they are
    then, and keeps them; the earlier attempt keeps its own."""
    cid = await _customer(client, "cus_A", "pm_A")
    invoice_id = await new_invoice(client, cid)

    @dataclass
    class DeclinesFirst(PerCustomerProvider):
        declined: bool = False

        async def charge(self, request: ChargeRequest) -> Charged | Declined:
            if not self.declined:
                self.declined = True
                self.calls.append(request)
                return Declined()
            return await super().charge(request)

    provider = DeclinesFirst(lose_answers=False)
    await open_run(database, clock, POLICY, "api")
    await worker(database, provider, clock).run_until_idle()
    await _patch(client, cid, "cus_B", "pm_B")
    clock.advance(timedelta(days=2))
    await open_run(database, clock, POLICY, "api")
    await worker(database, provider, clock).run_until_idle()
    attempts = await get_json(client, f"/rest/v1/invoices/{invoice_id}/attempts")
    assert [
        (a["number"], a["outcome"], a["providerCustomerId"], a["providerPaymentMethodId"])
        for a in attempts
    ] == [(1, "insufficient_funds", "cus_A", "pm_A"), (2, "charged", "cus_B", "pm_B")]
    assert [c.provider_customer_id for c in provider.calls] == ["cus_A", "cus_B"]


async def test_an_attempt_recorded_before_references_were_kept_cannot_be_told(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    """No references kept (written before this change): the reconciler asks nobody and
    leaves the invoice in REVIEW for a person, with the reason on the attempt."""
    cid = await _customer(client, "cus_A", "pm_A")
    invoice_id = await new_invoice(client, cid)
    provider = PerCustomerProvider()
    await to_review_by_sweep(database, clock, provider, [invoice_id])
    async with database.write() as conn:  # as migration 0011 leaves an older attempt
        await conn.execute(
            update(charge_attempts)
            .where(charge_attempts.c.invoice_id == invoice_id)
            .values(
                provider_customer_id=None,
                provider_payment_method_id=None,
                references_recorded=None,
            )
        )
    clock.advance(SETTLE + MINUTE)
    summary = await Reconciler(database, provider, clock, settle=SETTLE).reconcile_all()
    [done] = summary.items
    assert (done.invoice_id, done.result, done.outcome) == (invoice_id, "cannot_tell", "review")
    assert "references" in done.detail
    assert provider.lookups == []  # nobody was asked: the customer's references may be others
    found = await get_json(client, f"/rest/v1/invoices/{invoice_id}")
    assert found["status"] == "REVIEW"
    [attempt] = await get_json(client, f"/rest/v1/invoices/{invoice_id}/attempts")
    assert (
        attempt["providerCustomerId"],
        attempt["providerPaymentMethodId"],
        attempt["referencesRecorded"],
    ) == (None, None, False)
    [asked] = attempt["reconciliations"]
    assert (asked["result"], asked["outcome"]) == ("cannot_tell", "review")


async def test_the_audit_compares_a_charges_customer_with_the_attempts_own(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    """A ledger that names the provider customer charged: a charge on another customer
    than the attempt was sent to fails the audit, even after a PATCH made the customer's
    current reference that other one; an attempt without recorded references is not
    judged (what it was sent with is not known)."""
    a = await _customer(client, "cus_A", "pm_A")
    b = await _customer(client, "cus_C", "pm_C")
    await new_invoice(client, a)
    second = await new_invoice(client, b)
    provider = PerCustomerProvider(lose_answers=False)
    await open_run(database, clock, POLICY, "api")
    await worker(database, provider, clock).run_until_idle()
    await _patch(client, a, "cus_B", "pm_B")  # the customer's reference changes afterwards
    ledger = [
        LedgerCharge(f"charges[{n}]", charge_id, key, None, amount, customer)
        for n, (key, charge_id, amount, customer) in enumerate(
            [
                (*provider.charges["cus_A"][0], Money.of("89.50", Currency.EUR), "cus_A"),
                (*provider.charges["cus_C"][0], Money.of("89.50", Currency.EUR), "cus_B"),
            ]
        )
    ]
    report = await audit(database, ledger)
    assert report.counts[CUSTOMER_DIFFERS] == 1, report.as_json()
    [finding] = report.findings[CUSTOMER_DIFFERS]
    assert finding.invoice_id == second
    assert "'cus_C'" in finding.detail
    assert "'cus_B'" in finding.detail
    assert report.disagreements == 1

    async with database.write() as conn:  # as migration 0011 leaves an older attempt
        await conn.execute(
            update(charge_attempts)
            .where(charge_attempts.c.invoice_id == second)
            .values(provider_customer_id=None, references_recorded=None)
        )
    report = await audit(database, ledger)
    assert report.disagreements == 0, report.as_json()


def test_a_ledger_may_name_the_provider_customer_charged() -> None:
    data = (
        b'{"charges": [{"chargeId": "ch_1", "idempotencyKey": "i:1:1", "value": "1.00", '
        b'"currency": "EUR", "providerCustomerId": "cus_A"}, {"chargeId": "ch_2", '
        b'"idempotencyKey": "i:2:1", "value": "1.00", "currency": "EUR"}]}'
    )
    assert [c.provider_customer_id for c in parse_ledger(data)] == ["cus_A", None]
    csv_data = (
        b"chargeId,idempotencyKey,value,currency,providerCustomerId\n"
        b"ch_1,i:1:1,1.00,EUR,cus_A\nch_2,i:2:1,1.00,EUR,\n"
    )
    assert [c.provider_customer_id for c in parse_ledger(csv_data)] == ["cus_A", None]
    with pytest.raises(LedgerError, match=r"charges\[0\]\.providerCustomerId"):
        parse_ledger(
            b'{"charges": [{"chargeId": "ch_1", "idempotencyKey": "i:1:1", "value": "1", '
            b'"currency": "EUR", "providerCustomerId": 7}]}'
        )


@pytest.fixture(params=["sqlite", "postgres"])
async def empty_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    """An empty database of its own (no migration run yet), dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'legacy.db'}"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set: PostgreSQL tests skipped")
    name = f"antaeus_legacy_{os.getpid()}_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(_asyncpg_dsn(base))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield _with_database(base, name)
    finally:
        admin = await asyncpg.connect(_asyncpg_dsn(base))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def test_migration_0011_leaves_older_attempts_unrecorded_and_they_cannot_be_told(
    empty_url: str, clock: ManualClock
) -> None:
    """An attempt in REVIEW written by the schema before 0011 (no references column)
    upgrades with none recorded; reconciliation then asks nobody and leaves it in REVIEW,
    while a new attempt of the same database records its references."""
    db = Database(empty_url)
    try:
        await migrate.upgrade(db, "0010")
        # the rows as that schema held them: plain SQL (today's repositories write
        # columns and tables it does not have yet)
        at = sqlite_or_aware(db, clock)
        async with db.write() as conn:
            await conn.execute(
                text(
                    "INSERT INTO customers (id, currency, timezone, created_at, "
                    "provider_customer_id, provider_payment_method_id) "
                    "VALUES (1, 'EUR', 'UTC', :t, 'cus_B', 'pm_B')"
                ),
                {"t": at},
            )
            await conn.execute(
                text(
                    "INSERT INTO invoices (id, customer_id, currency, amount_minor, status, "
                    "due_at, eligible_at, attempt_count, attempt_sends, last_failure, "
                    "attempt_open_since, created_at, updated_at) VALUES (1, 1, 'EUR', 1250, "
                    "'REVIEW', :t, :t, 1, 1, 'unknown_outcome', :t, :t, :t)"
                ),
                {"t": at},
            )
            await conn.execute(
                text(
                    "INSERT INTO charge_attempts (invoice_id, number, idempotency_key, "
                    "started_at, sends) VALUES (1, 1, 'old:1:1', :t, 1)"
                ),
                {"t": at},
            )
        invoice = SimpleNamespace(id=1)
        await migrate.upgrade(db)
        [attempt] = await attempts_of(db, invoice.id)
        assert (
            attempt.provider_customer_id,
            attempt.provider_payment_method_id,
            attempt.references_recorded,
        ) == (None, None, None)
        provider = PerCustomerProvider()
        clock.advance(SETTLE + MINUTE)
        summary = await Reconciler(db, provider, clock, settle=SETTLE).reconcile_all()
        assert [(r.result, r.outcome) for r in summary.items] == [("cannot_tell", "review")]
        assert provider.lookups == []
        assert (await invoice_row(db, invoice.id)).status == "REVIEW"
    finally:
        await db.dispose()


def sqlite_or_aware(db: Database, clock: ManualClock) -> Any:
    """A moment as a raw statement stores it: SQLite's text (naive UTC), else aware."""
    return sqlite_datetime(clock.now()) if db.is_sqlite else clock.now()
