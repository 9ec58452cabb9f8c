"""A change or cancel `now` that moves money (issue 21), on both engines, with exact
amounts: an upgrade invoiced at once, a downgrade and a prorated cancel credited, the
credit used by the next generated invoice, JPY (0 decimals) and KWD (3 decimals), and
the periods already due billed first whatever the generator had done."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import select

from antaeus.billing.generation import generate_due
from antaeus.clock import ManualClock
from antaeus.storage.database import Database
from antaeus.storage.tables import credit_entries, customers, subscription_changes
from tests.api.test_plans import new_plan
from tests.api.test_subscriptions import SUBS, customer, stored_events, subscribe
from tests.generation.test_generate import _invoices


def _money(value: str, currency: str = "EUR") -> dict[str, Any]:
    return {"value": Decimal(value), "currency": currency}


async def _customer_json(client: httpx.AsyncClient, cid: int) -> dict[str, Any]:
    response = await client.get(f"/rest/v1/customers/{cid}")
    assert response.status_code == 200, response.text
    got: dict[str, Any] = json_decimal(response)
    return got


def json_decimal(response: httpx.Response) -> Any:
    return json.loads(response.text, parse_float=Decimal)


async def _entries(client: httpx.AsyncClient, cid: int) -> list[dict[str, Any]]:
    response = await client.get(f"/rest/v1/customers/{cid}/credit-entries")
    assert response.status_code == 200, response.text
    got: list[dict[str, Any]] = json_decimal(response)
    return got


async def _changes(database: Database) -> list[tuple[Any, ...]]:
    c = subscription_changes.c
    async with database.read() as conn:
        rows = await conn.execute(
            select(
                c.subscription_id,
                c.kind,
                c.from_plan_id,
                c.from_quantity,
                c.to_plan_id,
                c.to_quantity,
                c.effective_date,
                c.actor,
            ).order_by(c.id)
        )
        return [tuple(r) for r in rows]


async def _balance_adds_up(database: Database, cid: int) -> int:
    """The customer's stored balance is the sum of its entries and the last balance after."""
    async with database.read() as conn:
        balance = (
            await conn.execute(select(customers.c.credit_minor).where(customers.c.id == cid))
        ).scalar_one()
        rows = list(
            await conn.execute(
                select(credit_entries.c.amount_minor, credit_entries.c.balance_minor)
                .where(credit_entries.c.customer_id == cid)
                .order_by(credit_entries.c.id)
            )
        )
    running = 0
    for amount, after in rows:
        running += amount
        assert after == running >= 0
    assert balance == running
    return int(balance)


async def _february(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    *,
    amount: str = "30.00",
    currency: str = "EUR",
    quantity: int = 1,
) -> tuple[int, int, int]:
    """A UTC customer on a monthly plan from February 1st 2027, February billed; the clock
    then at February 15th 10:00 UTC (14 of February's 28 days left). (customer, plan, sub)"""
    cid = await customer(client, currency=currency)
    plan = await new_plan(client, "old", amount={"value": amount, "currency": currency})
    clock.set(datetime(2027, 2, 1, 8, tzinfo=UTC))
    sub = await subscribe(client, customerId=cid, planId=plan, quantity=quantity)
    await generate_due(database, clock)  # February was invoiced when it was made
    assert len([i for i in await _invoices(database) if i["customer"] == cid]) == 1
    clock.set(datetime(2027, 2, 15, 10, tzinfo=UTC))
    return cid, plan, sub["id"]


async def test_upgrade_now_is_invoiced_at_once_and_charged_by_the_next_run(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    cid, old, sid = await _february(client, database, clock)
    new = await new_plan(client, "new", amount={"value": "60.00", "currency": "EUR"})
    response = await client.post(f"{SUBS}/{sid}/change", json={"planId": new, "effective": "now"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["planId"], body["quantity"], body["pendingChange"]) == (new, 1, None)
    assert (body["currentPeriodStart"], body["currentPeriodEnd"]) == ("2027-02-01", "2027-03-01")
    got = await _invoices(database)
    assert len(got) == 2
    # 14 of 28 days: credit -30.00 x 14 / 28 = -15.00, proration 60.00 x 14 / 28 = 30.00
    assert got[1]["amount"] == 1500
    assert got[1]["status"] == "PENDING"
    assert got[1]["due_at"] == datetime(2027, 2, 15, 10, tzinfo=UTC)  # the request's moment
    assert got[1]["lines"] == [
        ("credit", sid, "2027-02-15", "2027-03-01", -1500),
        ("proration", sid, "2027-02-15", "2027-03-01", 3000),
    ]
    assert await _changes(database) == [
        (sid, "change", old, 1, new, 1, datetime(2027, 2, 15).date(), "tester")
    ]
    assert await _entries(client, cid) == []
    assert (await _customer_json(client, cid))["creditBalance"] == _money("0.00")
    kinds = [k for k, _ in await stored_events(database, invoices=True)]
    assert kinds[-2:] == ["invoice.created", "subscription.updated"]
    # the invoice is due now: the next run takes it (with February's, still unpaid)
    run = await client.post("/rest/v1/billing")
    assert run.status_code == 202, run.text
    assert run.json()["counts"]["due"] == 2
    # March is billed at the new price, whole
    clock.set(datetime(2027, 3, 1, 0, 30, tzinfo=UTC))
    assert (await generate_due(database, clock)).invoices == 1
    march = (await _invoices(database))[-1]
    assert march["lines"] == [("subscription", sid, "2027-03-01", "2027-04-01", 6000)]


async def test_downgrade_now_goes_to_credit_which_the_next_invoice_uses(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    cid, old, sid = await _february(client, database, clock, amount="60.00")
    new = await new_plan(client, "new", amount={"value": "30.00", "currency": "EUR"})
    response = await client.post(f"{SUBS}/{sid}/change", json={"planId": new, "effective": "now"})
    assert response.status_code == 200, response.text
    assert len(await _invoices(database)) == 1  # no invoice for a negative net
    # credit -60.00 x 14 / 28 = -30.00, proration 30.00 x 14 / 28 = 15.00: net -15.00
    entries = await _entries(client, cid)
    (change_id,) = [r[0] for r in await _change_ids(database)]
    assert entries == [
        {
            "id": entries[0]["id"],
            "customerId": cid,
            "amount": _money("15.00"),
            "balanceAfter": _money("15.00"),
            "reason": "change",
            "changeId": change_id,
            "subscriptionId": sid,
            "invoiceId": None,
            "note": None,
            "actor": "tester",
            "createdAt": "2027-02-15T10:00:00Z",
        }
    ]
    assert (await _customer_json(client, cid))["creditBalance"] == _money("15.00")
    # March: 30.00, of which 15.00 is paid by the credit
    clock.set(datetime(2027, 3, 1, 0, 30, tzinfo=UTC))
    assert (await generate_due(database, clock)).invoices == 1
    march = (await _invoices(database))[-1]
    assert march["amount"] == 1500
    assert march["lines"] == [
        ("subscription", sid, "2027-03-01", "2027-04-01", 3000),
        ("balance", None, "None", "None", -1500),
    ]
    entries = await _entries(client, cid)
    assert [(e["reason"], e["amount"], e["balanceAfter"], e["invoiceId"]) for e in entries] == [
        ("change", _money("15.00"), _money("15.00"), None),
        ("invoice", _money("-15.00"), _money("0.00"), march["id"]),
    ]
    assert entries[1]["actor"] == "generation"
    assert await _balance_adds_up(database, cid) == 0
    # April: the credit is spent, the whole price again
    clock.set(datetime(2027, 4, 1, 0, 30, tzinfo=UTC))
    await generate_due(database, clock)
    assert (await _invoices(database))[-1]["amount"] == 3000
    assert old != new


async def _change_ids(database: Database) -> list[tuple[Any, ...]]:
    async with database.read() as conn:
        return [tuple(r) for r in await conn.execute(select(subscription_changes.c.id))]


async def test_an_upgrade_uses_the_customers_credit_first(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    cid, _, sid = await _february(client, database, clock)
    adjusted = await client.post(
        f"/rest/v1/customers/{cid}/credit-entries",
        json={"amount": {"value": "5.00", "currency": "EUR"}, "note": "goodwill"},
    )
    assert adjusted.status_code == 201, adjusted.text
    response = await client.post(f"{SUBS}/{sid}/change", json={"quantity": 3, "effective": "now"})
    assert response.status_code == 200, response.text
    change = (await _invoices(database))[-1]
    # credit -15.00, proration 30.00 x 3 x 14 / 28 = 45.00; net 30.00, 5.00 of it credit
    assert change["lines"] == [
        ("credit", sid, "2027-02-15", "2027-03-01", -1500),
        ("proration", sid, "2027-02-15", "2027-03-01", 4500),
        ("balance", None, "None", "None", -500),
    ]
    assert change["amount"] == 2500
    entries = await _entries(client, cid)
    assert [(e["reason"], e["amount"], e["invoiceId"], e["actor"]) for e in entries] == [
        ("adjustment", _money("5.00"), None, "tester"),
        ("invoice", _money("-5.00"), change["id"], "tester"),
    ]
    assert entries[1]["changeId"] is not None
    assert await _balance_adds_up(database, cid) == 0


async def test_jpy_and_kwd_prorations_to_the_minor_unit(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    clock.set(datetime(2027, 1, 1, 8, tzinfo=UTC))
    jpy = await customer(client, currency="JPY")
    kwd = await customer(client, currency="KWD")
    jpy_old = await new_plan(client, "jpy-old", amount={"value": "1000", "currency": "JPY"})
    jpy_new = await new_plan(client, "jpy-new", amount={"value": "3000", "currency": "JPY"})
    kwd_old = await new_plan(client, "kwd-old", amount={"value": "10.000", "currency": "KWD"})
    kwd_new = await new_plan(client, "kwd-new", amount={"value": "5.000", "currency": "KWD"})
    s_jpy = (await subscribe(client, customerId=jpy, planId=jpy_old))["id"]
    s_kwd = (await subscribe(client, customerId=kwd, planId=kwd_old))["id"]
    assert (await generate_due(database, clock)).invoices == 0  # invoiced when made
    assert len(await _invoices(database)) == 2
    clock.set(datetime(2027, 1, 14, 9, tzinfo=UTC))  # Jan 14 - Feb 1: 18 of 31 days left
    for sid, plan in ((s_jpy, jpy_new), (s_kwd, kwd_new)):
        got = await client.post(f"{SUBS}/{sid}/change", json={"planId": plan, "effective": "now"})
        assert got.status_code == 200, got.text
    invoices = await _invoices(database)
    assert len(invoices) == 3
    # JPY: credit 1000 x 18 / 31 = 580.6 -> -581, proration 3000 x 18 / 31 = 1741.9 -> 1742
    assert invoices[2]["customer"] == jpy
    assert invoices[2]["lines"] == [
        ("credit", s_jpy, "2027-01-14", "2027-02-01", -581),
        ("proration", s_jpy, "2027-01-14", "2027-02-01", 1742),
    ]
    assert invoices[2]["amount"] == 1161
    # KWD: credit 10.000 x 18 / 31 = 5.80645 -> -5.806, proration 5.000 x 18 / 31 =
    # 2.90322 -> 2.903: net -2.903, to the credit
    assert (await _customer_json(client, kwd))["creditBalance"] == _money("2.903", "KWD")
    (entry,) = await _entries(client, kwd)
    assert (entry["reason"], entry["amount"]) == ("change", _money("2.903", "KWD"))
    assert await _balance_adds_up(database, kwd) == 2903
    assert (await _customer_json(client, jpy))["creditBalance"] == _money("0", "JPY")


async def test_cancel_now_with_prorate_credits_the_unused_days(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    cid, old, sid = await _february(client, database, clock, quantity=2)
    response = await client.post(f"{SUBS}/{sid}/cancel", json={"at": "now", "prorate": True})
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["cancelAt"]) == ("canceled", "2027-02-15")
    # 30.00 x 2 x 14 / 28 = 30.00
    (entry,) = await _entries(client, cid)
    (change,) = await _changes(database)
    assert change == (sid, "cancel", old, 2, None, None, datetime(2027, 2, 15).date(), "tester")
    (change_id,) = [r[0] for r in await _change_ids(database)]
    assert (entry["reason"], entry["amount"], entry["changeId"], entry["subscriptionId"]) == (
        "cancel",
        _money("30.00"),
        change_id,
        sid,
    )
    assert (await _customer_json(client, cid))["creditBalance"] == _money("30.00")
    clock.set(datetime(2027, 3, 1, 0, 30, tzinfo=UTC))
    assert (await generate_due(database, clock)).invoices == 0  # nothing after cancelAt
    assert len(await _invoices(database)) == 1


async def test_cancel_now_without_prorate_credits_nothing(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    cid, _, sid = await _february(client, database, clock)
    response = await client.post(f"{SUBS}/{sid}/cancel", json={"at": "now"})
    assert response.status_code == 200, response.text
    assert await _entries(client, cid) == []
    assert [c[1] for c in await _changes(database)] == ["cancel"]


async def test_a_reactivated_cancel_bills_on_and_credits_nothing(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    cid, _, sid = await _february(client, database, clock)
    canceled = await client.post(f"{SUBS}/{sid}/cancel", json={})
    assert canceled.json()["cancelAt"] == "2027-03-01"
    back = await client.post(f"{SUBS}/{sid}/reactivate")
    assert back.status_code == 200, back.text
    assert back.json()["cancelAt"] is None
    clock.set(datetime(2027, 3, 1, 0, 30, tzinfo=UTC))
    assert (await generate_due(database, clock)).invoices == 1
    assert (await _invoices(database))[-1]["lines"] == [
        ("subscription", sid, "2027-03-01", "2027-04-01", 3000)
    ]
    assert await _entries(client, cid) == []
    assert await _changes(database) == []


async def test_a_change_now_bills_the_periods_already_due_first(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    """The generator has not run since February began: February is billed at the old
    price first (due at its own start), then the change's lines."""
    cid = await customer(client)
    plan = await new_plan(client, "old")
    new = await new_plan(client, "new", amount={"value": "60.00", "currency": "EUR"})
    clock.set(datetime(2027, 1, 14, 9, tzinfo=UTC))
    sid = (await subscribe(client, customerId=cid, planId=plan))["id"]  # January invoiced
    assert len(await _invoices(database)) == 1
    clock.set(datetime(2027, 2, 15, 10, tzinfo=UTC))  # no generation on February 1st
    response = await client.post(f"{SUBS}/{sid}/change", json={"planId": new, "effective": "now"})
    assert response.status_code == 200, response.text
    got = await _invoices(database)
    assert [(g["due_at"], g["amount"]) for g in got] == [
        (datetime(2027, 1, 14, tzinfo=UTC), 1742),
        (datetime(2027, 2, 1, tzinfo=UTC), 3000),
        (datetime(2027, 2, 15, 10, tzinfo=UTC), 1500),
    ]
    assert got[1]["lines"] == [("subscription", sid, "2027-02-01", "2027-03-01", 3000)]
    assert (await generate_due(database, clock)).invoices == 0
    assert await _entries(client, cid) == []


async def test_a_change_now_back_and_forth_within_a_period(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    """Up then down the same day: the credit given back is the proration charged."""
    cid, old, sid = await _february(client, database, clock)
    new = await new_plan(client, "new", amount={"value": "60.00", "currency": "EUR"})
    for plan in (new, old):
        got = await client.post(f"{SUBS}/{sid}/change", json={"planId": plan, "effective": "now"})
        assert got.status_code == 200, got.text
    assert (await _invoices(database))[-1]["amount"] == 1500
    (entry,) = await _entries(client, cid)
    assert entry["amount"] == _money("15.00")
    assert [c[1] for c in await _changes(database)] == ["change", "change"]


async def test_a_replayed_change_now_moves_money_once(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    cid, _, sid = await _february(client, database, clock)
    url = f"{SUBS}/{sid}/change"
    headers = {"Idempotency-Key": "up-1"}
    body = {"quantity": 2, "effective": "now"}
    one = await client.post(url, json=body, headers=headers)
    clock.set(datetime(2027, 2, 20, 10, tzinfo=UTC))  # a stale replay, days later
    two = await client.post(url, json=body, headers=headers)
    assert (one.status_code, two.status_code) == (200, 200)
    assert two.json() == one.json()
    assert two.headers["idempotent-replayed"] == "true"
    got = await _invoices(database)
    assert [g["amount"] for g in got] == [3000, 1500]
    assert len(await _changes(database)) == 1
    cancel = {"at": "now", "prorate": True}
    first = await client.post(f"{SUBS}/{sid}/cancel", json=cancel, headers={"Idempotency-Key": "c"})
    again = await client.post(f"{SUBS}/{sid}/cancel", json=cancel, headers={"Idempotency-Key": "c"})
    assert (first.status_code, again.status_code) == (200, 200)
    # Feb 20 - Mar 1: 9 of 28 days of 2 x 30.00 = 19.285... -> 19.29, credited once
    (entry,) = await _entries(client, cid)
    assert (entry["reason"], entry["amount"]) == ("cancel", _money("19.29"))
    assert await _balance_adds_up(database, cid) == 1929
