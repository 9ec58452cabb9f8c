"""Invoice generation (issue 21) on both engines: each due period once, consolidated per
customer, amounts to the minor unit, zero totals PAID, credit used, catch-up oldest first,
and a second generation makes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import func, select

from antaeus.billing.generation import generate_due
from antaeus.clock import ManualClock
from antaeus.storage.database import Database
from antaeus.storage.tables import customers, events, invoice_lines, invoices
from tests.api.test_plans import new_plan
from tests.api.test_subscriptions import customer, subscribe


async def _invoices(database: Database) -> list[dict[str, Any]]:
    async with database.read() as conn:
        rows = list(await conn.execute(select(invoices).order_by(invoices.c.id)))
        lines = list(await conn.execute(select(invoice_lines).order_by(invoice_lines.c.id)))
    out = []
    for r in rows:
        out.append(
            {
                "id": r.id,
                "customer": r.customer_id,
                "amount": r.amount_minor,
                "status": r.status,
                "due_at": r.due_at,
                "lines": [
                    (
                        x.kind,
                        x.subscription_id,
                        str(x.period_start),
                        str(x.period_end),
                        x.amount_minor,
                    )
                    for x in lines
                    if x.invoice_id == r.id
                ],
            }
        )
    return out


async def test_calendar_month_from_january_14th_prorated_then_whole(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    cid = await customer(client)
    plan = await new_plan(client)  # 30.00 EUR a month
    clock.set(datetime(2027, 1, 14, 9, tzinfo=UTC))
    sub = await subscribe(client, customerId=cid, planId=plan)  # due now: invoiced at once
    made = await generate_due(database, clock)
    assert (made.invoices, made.periods) == (0, 0)
    got = await _invoices(database)
    # 18 of 31 days of 30.00: 17.419... -> 17.42
    assert got == [
        {
            "id": got[0]["id"],
            "customer": cid,
            "amount": 1742,
            "status": "PENDING",
            "due_at": datetime(2027, 1, 14, tzinfo=UTC),
            "lines": [("subscription", sub["id"], "2027-01-14", "2027-02-01", 1742)],
        }
    ]
    again = await generate_due(database, clock)
    assert again.invoices == 0
    clock.set(datetime(2027, 2, 1, tzinfo=UTC))
    made = await generate_due(database, clock)
    assert made.invoices == 1
    got = await _invoices(database)
    assert got[1]["amount"] == 3000
    assert got[1]["lines"] == [("subscription", sub["id"], "2027-02-01", "2027-03-01", 3000)]
    async with database.read() as conn:
        created = list(
            await conn.execute(select(events.c.payload).where(events.c.type == "invoice.created"))
        )
    assert len(created) == 2
    payload = json.loads(created[1].payload, parse_float=Decimal)
    assert payload["invoice"]["amount"] == {"value": Decimal("30.00"), "currency": "EUR"}
    assert payload["invoice"]["lines"][0]["periodStart"] == "2027-02-01"


async def test_catch_up_bills_each_missed_period_oldest_first(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    cid = await customer(client, tz="Pacific/Kiritimati")
    plan = await new_plan(client)
    clock.set(datetime(2027, 1, 10, tzinfo=UTC))  # Jan 10th 14:00 at UTC+14
    await subscribe(client, customerId=cid, planId=plan, billingAnchor="anniversary")
    clock.set(datetime(2027, 6, 20, tzinfo=UTC))  # downtime: five more periods due
    made = await generate_due(database, clock, batch_size=1)
    assert made.invoices == 5  # the first was invoiced when the subscription was made
    got = await _invoices(database)
    starts = [g["lines"][0][2] for g in got]
    assert starts == [f"2027-{m:02d}-10" for m in range(1, 7)]
    # each due at the first instant of its start date at UTC+14
    assert got[1]["due_at"] == datetime(2027, 2, 9, 10, tzinfo=UTC)
    assert (await generate_due(database, clock)).invoices == 0


async def test_consolidated_per_customer_and_free_plan_paid_at_once(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    cid = await customer(client)
    clock.set(datetime(2027, 2, 26, 8, tzinfo=UTC))  # made ahead, due on March 1st
    paid = await new_plan(client, code="a")
    free = await new_plan(client, code="free", amount={"value": "0.00", "currency": "EUR"})
    march = "2027-03-01"
    s1 = await subscribe(client, customerId=cid, planId=paid, quantity=2, startDate=march)
    s2 = await subscribe(client, customerId=cid, planId=paid, startDate=march)
    other = await customer(client)
    await subscribe(client, customerId=other, planId=free, startDate=march)
    assert (await generate_due(database, clock)).invoices == 0
    clock.set(datetime(2027, 3, 1, 8, tzinfo=UTC))
    made = await generate_due(database, clock)
    assert made.invoices == 2
    got = await _invoices(database)
    mine = [g for g in got if g["customer"] == cid]
    assert len(mine) == 1
    assert mine[0]["amount"] == 9000
    assert [line[1] for line in mine[0]["lines"]] == [s1["id"], s2["id"]]
    theirs = [g for g in got if g["customer"] == other]
    assert theirs[0]["status"] == "PAID"
    assert theirs[0]["amount"] == 0


async def test_credit_is_used_never_below_zero(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    cid = await customer(client)
    clock.set(datetime(2027, 3, 1, 8, tzinfo=UTC))
    plan = await new_plan(client)
    async with database.write() as conn:
        await conn.execute(
            customers.update().where(customers.c.id == cid).values(credit_minor=4500)
        )
    await subscribe(client, customerId=cid, planId=plan)
    await generate_due(database, clock)
    clock.set(datetime(2027, 4, 1, 8, tzinfo=UTC))
    await generate_due(database, clock)
    got = await _invoices(database)
    assert [g["amount"] for g in got] == [0, 1500]
    assert got[0]["status"] == "PAID"
    assert got[0]["lines"][1][0] == "balance"
    assert got[0]["lines"][1][4] == -3000
    assert got[1]["lines"][1][4] == -1500
    async with database.read() as conn:
        left = await conn.scalar(select(customers.c.credit_minor).where(customers.c.id == cid))
        n = await conn.scalar(select(func.count()).select_from(invoice_lines))
    assert left == 0
    assert n == 4


async def test_many_subscriptions_in_many_zones_each_once(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    zones = ["UTC", "Pacific/Kiritimati", "Pacific/Pago_Pago", "America/Havana", "Asia/Tokyo"]
    plan = await new_plan(client)
    clock.set(datetime(2027, 3, 10, 12, tzinfo=UTC))
    subs = []
    for i in range(25):
        cid = await customer(client, tz=zones[i % len(zones)])
        subs.append((await subscribe(client, customerId=cid, planId=plan))["id"])
    for step in range(3):
        clock.set(datetime(2027, 3, 10, 12, tzinfo=UTC) + timedelta(days=31 * step))
        await generate_due(database, clock, batch_size=7)
    got = await _invoices(database)
    periods = [(line[1], line[2]) for g in got for line in g["lines"]]
    assert len(periods) == len(set(periods)) == 25 * 3
