"""The issue's worked cases of invoice generation (issue 21), each with exact amounts and
dates, through the API and `generate_due` on both engines.

Every amount below is worked out by hand in its comment (days of the whole period it
is part of, rounded half away from zero to the currency's minor unit), never by the
code under test.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import select

from antaeus.billing.generation import generate_due
from antaeus.clock import ManualClock
from antaeus.storage.database import Database
from antaeus.storage.tables import events, invoice_lines, invoices
from tests.api.test_plans import new_plan
from tests.api.test_subscriptions import customer, subscribe

SUBS = "/rest/v1/subscriptions"
YEARLY = {"interval": "year", "amount": {"value": "120.00", "currency": "EUR"}}


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


async def billed(database: Database) -> list[dict[str, Any]]:
    """Every invoice with its lines, as stored, oldest first."""
    async with database.read() as conn:
        rows = list(await conn.execute(select(invoices).order_by(invoices.c.id)))
        lines = list(await conn.execute(select(invoice_lines).order_by(invoice_lines.c.id)))
    return [
        {
            "customer": r.customer_id,
            "currency": r.currency,
            "amount": r.amount_minor,
            "status": r.status,
            "due_at": r.due_at,
            "created_at": r.created_at,
            "lines": [
                (
                    x.kind,
                    x.subscription_id,
                    x.plan_id,
                    x.quantity,
                    str(x.period_start),
                    str(x.period_end),
                    x.amount_minor,
                )
                for x in lines
                if x.invoice_id == r.id
            ],
        }
        for r in rows
    ]


def spans(got: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """(period start, period end, amount) of every `subscription` line."""
    return [(x[4], x[5], x[6]) for g in got for x in g["lines"] if x[0] == "subscription"]


async def stored_events(database: Database, kind: str) -> list[dict[str, Any]]:
    async with database.read() as conn:
        rows = await conn.execute(
            select(events.c.payload).where(events.c.type == kind).order_by(events.c.id)
        )
        return [json.loads(r.payload, parse_float=Decimal) for r in rows]


async def generate_at(database: Database, clock: ManualClock, moment: datetime) -> int:
    clock.set(moment)
    return (await generate_due(database, clock)).invoices


# --- periods and their prices ---------------------------------------------------------


async def test_calendar_monthly_from_january_14th_in_copenhagen(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    cid = await customer(client, tz="Europe/Copenhagen")
    plan = await new_plan(client)  # 30.00 EUR a month
    clock.set(at(2027, 1, 10))
    sub = await subscribe(client, customerId=cid, planId=plan, quantity=2, startDate="2027-01-14")
    # Jan 14th begins at 23:00 UTC on the 13th (CET, UTC+1): not a second earlier
    assert await generate_at(database, clock, at(2027, 1, 13, 22, 59)) == 0
    assert await generate_at(database, clock, at(2027, 1, 13, 23)) == 1
    assert await generate_at(database, clock, at(2027, 3, 15)) == 2
    got = await billed(database)
    # 18 of 31 days of 2 x 30.00: 34.8387... -> 34.84; then whole months of 60.00
    assert [(g["due_at"], g["amount"]) for g in got] == [
        (at(2027, 1, 13, 23), 3484),
        (at(2027, 1, 31, 23), 6000),
        (at(2027, 2, 28, 23), 6000),
    ]
    assert got[0]["lines"] == [
        ("subscription", sub["id"], plan, 2, "2027-01-14", "2027-02-01", 3484)
    ]
    assert spans(got)[1:] == [
        ("2027-02-01", "2027-03-01", 6000),
        ("2027-03-01", "2027-04-01", 6000),
    ]


async def test_anniversary_from_january_31st_through_a_year_and_february_2028(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    cid = await customer(client)
    plan = await new_plan(client)
    clock.set(at(2027, 1, 31, 8))
    await subscribe(client, customerId=cid, planId=plan, billingAnchor="anniversary")
    # downtime until April 2028: fifteen periods due (the first invoiced when it was made),
    # more than one batch's due dates
    assert await generate_at(database, clock, at(2028, 4, 1)) == 14
    assert await generate_at(database, clock, at(2028, 4, 1)) == 0
    got = await billed(database)
    starts = [
        "2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30", "2027-05-31", "2027-06-30",
        "2027-07-31", "2027-08-31", "2027-09-30", "2027-10-31", "2027-11-30", "2027-12-31",
        "2028-01-31", "2028-02-29", "2028-03-31", "2028-04-30",
    ]  # fmt: skip
    # the anchor never drifts: each period from the 31st, clamped; each a whole 30.00
    assert spans(got) == [(a, b, 3000) for a, b in itertools.pairwise(starts)]
    assert [g["due_at"] for g in got] == [
        datetime.fromisoformat(s).replace(tzinfo=UTC) for s in starts[:-1]
    ]


async def test_yearly_from_february_29th_2028(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    cid = await customer(client)
    plan = await new_plan(client, code="yearly", **YEARLY)
    clock.set(at(2028, 2, 28, 12))  # made the day before: generation consolidates them
    anniversary = await subscribe(
        client, customerId=cid, planId=plan, billingAnchor="anniversary", startDate="2028-02-29"
    )
    calendar = await subscribe(client, customerId=cid, planId=plan, startDate="2028-02-29")
    assert await generate_at(database, clock, at(2028, 2, 29, 12)) == 1  # consolidated
    for year in (2029, 2030, 2031, 2032):
        await generate_at(database, clock, at(year, 3, 1))
    got = await billed(database)
    mine = [x for g in got for x in g["lines"] if x[1] == anniversary["id"]]
    assert [(x[4], x[5], x[6]) for x in mine] == [
        ("2028-02-29", "2029-02-28", 12000),
        ("2029-02-28", "2030-02-28", 12000),
        ("2030-02-28", "2031-02-28", 12000),
        ("2031-02-28", "2032-02-29", 12000),  # leap day again in a leap year
        ("2032-02-29", "2033-02-28", 12000),
    ]
    # calendar: Feb 29 - Jan 1 2029 is 307 of 366 days: 100.6557... -> 100.66
    theirs = [x for g in got for x in g["lines"] if x[1] == calendar["id"]]
    assert [(x[4], x[5], x[6]) for x in theirs] == [
        ("2028-02-29", "2029-01-01", 10066),
        ("2029-01-01", "2030-01-01", 12000),
        ("2030-01-01", "2031-01-01", 12000),
        ("2031-01-01", "2032-01-01", 12000),
        ("2032-01-01", "2033-01-01", 12000),
    ]
    assert got[0]["amount"] == 12000 + 10066


async def test_a_trial_that_crosses_a_month_end(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    cid = await customer(client)
    plan = await new_plan(client)
    clock.set(at(2027, 1, 25, 9))
    sub = await subscribe(client, customerId=cid, planId=plan, trialDays=14)
    assert sub["trialEndDate"] == "2027-02-08"
    for moment in (at(2027, 1, 25, 9), at(2027, 2, 1), at(2027, 2, 7, 23, 59)):
        assert await generate_at(database, clock, moment) == 0  # nothing during a trial
    assert await generate_at(database, clock, at(2027, 2, 8)) == 1
    assert await generate_at(database, clock, at(2027, 3, 1)) == 1
    got = await billed(database)
    # Feb 8 - Mar 1 is 21 of 28 days of 30.00: 22.50 exactly
    assert spans(got) == [("2027-02-08", "2027-03-01", 2250), ("2027-03-01", "2027-04-01", 3000)]
    assert [g["due_at"] for g in got] == [at(2027, 2, 8), at(2027, 3, 1)]


async def test_the_extreme_zones_across_a_month_end_one_invoice_per_period(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    """UTC+14 and UTC-11, generated every hour for three days around January's end: each
    period once, generated the hour it falls due, not before."""
    plan = await new_plan(client)
    clock.set(at(2027, 1, 29))
    east = await customer(client, tz="Pacific/Kiritimati")
    west = await customer(client, tz="Pacific/Pago_Pago")
    for cid in (east, west):
        await subscribe(client, customerId=cid, planId=plan, startDate="2027-01-31")
    moment = at(2027, 1, 29)
    while moment <= at(2027, 2, 2):
        await generate_at(database, clock, moment)
        moment += timedelta(hours=1)
    got = await billed(database)
    # Jan 31 - Feb 1 is 1 of 31 days of 30.00: 0.9677... -> 0.97
    want = {
        east: [(at(2027, 1, 30, 10), 97), (at(2027, 1, 31, 10), 3000)],
        west: [(at(2027, 1, 31, 11), 97), (at(2027, 2, 1, 11), 3000)],
    }
    for cid, periods in want.items():
        mine = [g for g in got if g["customer"] == cid]
        assert [(g["due_at"], g["amount"]) for g in mine] == periods
        assert [g["created_at"] for g in mine] == [due for due, _ in periods]  # on time
        assert [(s, e) for s, e, _ in spans(mine)] == [
            ("2027-01-31", "2027-02-01"),
            ("2027-02-01", "2027-03-01"),
        ]


async def test_a_period_starting_where_midnight_is_skipped(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    """America/Havana moves from 00:00 CST to 01:00 CDT on 2027-03-14: the period that
    starts that day is due at 01:00 CDT (05:00 UTC), the first instant of the date."""
    cid = await customer(client, tz="America/Havana")
    plan = await new_plan(client)
    clock.set(at(2027, 2, 14, 6))  # 01:00 CST, Feb 14th in Havana
    await subscribe(client, customerId=cid, planId=plan, billingAnchor="anniversary")
    assert await generate_at(database, clock, at(2027, 2, 14, 6)) == 0  # invoiced when made
    assert await generate_at(database, clock, at(2027, 3, 14, 4, 59)) == 0
    assert await generate_at(database, clock, at(2027, 3, 14, 5)) == 1
    got = await billed(database)
    assert [g["due_at"] for g in got] == [at(2027, 2, 14, 5), at(2027, 3, 14, 5)]
    assert spans(got) == [("2027-02-14", "2027-03-14", 3000), ("2027-03-14", "2027-04-14", 3000)]


async def test_jpy_and_kwd_prorations_at_generation(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    clock.set(at(2027, 1, 14, 9))
    yen = await customer(client, currency="JPY")
    dinar = await customer(client, currency="KWD")
    yen_plan = await new_plan(client, code="yen", amount={"value": "1000", "currency": "JPY"})
    dinar_plan = await new_plan(client, code="kwd", amount={"value": "7.250", "currency": "KWD"})
    await subscribe(client, customerId=yen, planId=yen_plan)
    await subscribe(client, customerId=dinar, planId=dinar_plan, quantity=3)
    assert await generate_at(database, clock, at(2027, 1, 14, 9)) == 0  # invoiced when made
    got = {g["currency"]: g for g in await billed(database)}
    # 18 of 31 days: 1000 x 18 / 31 = 580.645... -> 581 yen;
    # 3 x 7.250 x 18 / 31 = 12.62903... -> 12.629 dinars
    assert (got["JPY"]["amount"], got["KWD"]["amount"]) == (581, 12629)
    created = {
        e["invoice"]["amount"]["currency"]: e["invoice"]["amount"]["value"]
        for e in await stored_events(database, "invoice.created")
    }
    assert created == {"JPY": 581, "KWD": Decimal("12.629")}


# --- changes, cancels, notices ----------------------------------------------------------


async def test_a_period_end_change_is_billed_from_its_effective_date(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    cid = await customer(client)
    plan = await new_plan(client)
    bigger = await new_plan(client, code="bigger", amount={"value": "50.00", "currency": "EUR"})
    yearly = await new_plan(client, code="yearly", **YEARLY)
    clock.set(at(2027, 2, 1, 8))
    same = await subscribe(client, customerId=cid, planId=plan)
    other = await customer(client)
    moving = await subscribe(client, customerId=other, planId=plan)
    assert await generate_at(database, clock, at(2027, 2, 1, 8)) == 0  # invoiced when made
    clock.set(at(2027, 2, 10))
    changed = await client.post(
        f"{SUBS}/{same['id']}/change", json={"planId": bigger, "quantity": 2}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["pendingChange"] == {
        "planId": bigger,
        "quantity": 2,
        "effectiveDate": "2027-03-01",
    }
    changed = await client.post(f"{SUBS}/{moving['id']}/change", json={"planId": yearly})
    assert changed.status_code == 200, changed.text
    assert await generate_at(database, clock, at(2027, 2, 28, 23, 59)) == 0
    # downtime: March and April billed at once, both with the new terms
    assert await generate_at(database, clock, at(2027, 4, 2)) == 3
    got = await billed(database)
    mine = [x for g in got for x in g["lines"] if x[1] == same["id"]]
    assert [(x[2], x[3], x[4], x[6]) for x in mine] == [
        (plan, 1, "2027-02-01", 3000),
        (bigger, 2, "2027-03-01", 10000),
        (bigger, 2, "2027-04-01", 10000),
    ]
    # another interval at period end: the yearly calendar from March 1st, Mar 1 - Jan 1
    # 2028 is 306 of 365 days of 120.00: 100.6027... -> 100.60
    theirs = [x for g in got for x in g["lines"] if x[1] == moving["id"]]
    assert [(x[2], x[4], x[5], x[6]) for x in theirs] == [
        (plan, "2027-02-01", "2027-03-01", 3000),
        (yearly, "2027-03-01", "2028-01-01", 10060),
    ]
    shown = (await client.get(f"{SUBS}/{same['id']}")).json()
    assert (shown["planId"], shown["quantity"], shown["pendingChange"]) == (bigger, 2, None)


async def test_a_cancel_at_period_end_bills_nothing_from_cancel_at_and_tells_once(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    cid = await customer(client, tz="Europe/Copenhagen")
    plan = await new_plan(client)
    clock.set(at(2027, 1, 1, 8))
    sub = await subscribe(client, customerId=cid, planId=plan)
    assert await generate_at(database, clock, at(2027, 1, 1, 8)) == 0  # invoiced when made
    clock.set(at(2027, 1, 10))
    canceled = await client.post(f"{SUBS}/{sub['id']}/cancel", json={"at": "period_end"})
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["cancelAt"] == "2027-02-01"
    assert await generate_at(database, clock, at(2027, 1, 31, 22, 59)) == 0
    assert await stored_events(database, "subscription.canceled") == []
    # February 1st begins at 23:00 UTC on January 31st in Copenhagen
    assert await generate_at(database, clock, at(2027, 1, 31, 23)) == 0
    told = await stored_events(database, "subscription.canceled")
    assert len(told) == 1
    assert told[0]["subscription"]["id"] == sub["id"]
    assert told[0]["subscription"]["status"] == "canceled"
    for moment in (at(2027, 2, 1, 12), at(2027, 6, 1)):
        assert await generate_at(database, clock, moment) == 0
    assert len(await stored_events(database, "subscription.canceled")) == 1
    assert spans(await billed(database)) == [("2027-01-01", "2027-02-01", 3000)]
    assert (await client.get(f"{SUBS}/{sub['id']}")).json()["status"] == "canceled"


async def test_trial_will_end_is_told_once_three_days_before_and_not_after_downtime(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    plan = await new_plan(client)
    clock.set(at(2027, 1, 25, 9))
    on_time = await subscribe(client, customerId=await customer(client), planId=plan, trialDays=14)
    late = await subscribe(
        client,
        customerId=await customer(client, tz="Asia/Tokyo"),
        planId=plan,
        trialDays=14,
    )
    assert on_time["trialEndDate"] == late["trialEndDate"] == "2027-02-08"
    # 3 days before Feb 8th: Feb 5th, which begins at 15:00 UTC on Feb 4th in Tokyo
    await generate_at(database, clock, at(2027, 2, 4, 14, 59))
    assert await stored_events(database, "subscription.trial_will_end") == []
    await generate_at(database, clock, at(2027, 2, 4, 15))
    told = await stored_events(database, "subscription.trial_will_end")
    assert [e["subscription"]["id"] for e in told] == [late["id"]]
    await generate_at(database, clock, at(2027, 2, 4, 23, 59))
    assert len(await stored_events(database, "subscription.trial_will_end")) == 1
    await generate_at(database, clock, at(2027, 2, 5))
    told = await stored_events(database, "subscription.trial_will_end")
    assert [e["subscription"]["id"] for e in told] == [late["id"], on_time["id"]]
    assert told[1]["subscription"]["status"] == "trialing"
    for moment in (at(2027, 2, 6), at(2027, 2, 8), at(2027, 3, 1)):
        await generate_at(database, clock, moment)
    assert len(await stored_events(database, "subscription.trial_will_end")) == 2


async def test_trial_will_end_is_not_told_after_downtime_past_the_trials_end(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    plan = await new_plan(client)
    clock.set(at(2027, 1, 25, 9))
    await subscribe(client, customerId=await customer(client), planId=plan, trialDays=14)
    await generate_at(database, clock, at(2027, 1, 25, 9))
    # down from Jan 25th to Feb 8th: the trial ended, too late to say it will
    assert await generate_at(database, clock, at(2027, 2, 8, 1)) == 1
    assert await stored_events(database, "subscription.trial_will_end") == []
    await generate_at(database, clock, at(2027, 3, 1))
    assert await stored_events(database, "subscription.trial_will_end") == []


async def test_a_time_zone_changed_by_patch_applies_from_the_next_period_start(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    plan = await new_plan(client)
    clock.set(at(2027, 1, 1, 8))
    east = await customer(client)
    west = await customer(client)
    for cid in (east, west):
        await subscribe(client, customerId=cid, planId=plan)
    assert await generate_at(database, clock, at(2027, 1, 1, 8)) == 0  # invoiced when made
    clock.set(at(2027, 1, 15))
    for cid, tz in ((east, "Pacific/Kiritimati"), (west, "Pacific/Pago_Pago")):
        answer = await client.patch(f"/rest/v1/customers/{cid}", json={"timezone": tz})
        assert answer.status_code == 200, answer.text
    shown = (await client.get(SUBS, params={"customerId": east})).json()[0]
    assert (shown["currentPeriodStart"], shown["currentPeriodEnd"]) == ("2027-01-01", "2027-02-01")
    # February 1st begins at 10:00 UTC on Jan 31st at UTC+14, at 11:00 UTC on Feb 1st at
    # UTC-11; the periods' dates are as they were
    assert await generate_at(database, clock, at(2027, 1, 31, 9, 59)) == 0
    assert await generate_at(database, clock, at(2027, 1, 31, 10)) == 1
    assert await generate_at(database, clock, at(2027, 2, 1, 10, 59)) == 0
    assert await generate_at(database, clock, at(2027, 2, 1, 11)) == 1
    got = await billed(database)
    assert [(g["customer"], g["due_at"]) for g in got] == [
        (east, at(2027, 1, 1)),
        (west, at(2027, 1, 1)),
        (east, at(2027, 1, 31, 10)),
        (west, at(2027, 2, 1, 11)),
    ]
    assert spans(got) == [
        ("2027-01-01", "2027-02-01", 3000),
        ("2027-01-01", "2027-02-01", 3000),
        ("2027-02-01", "2027-03-01", 3000),
        ("2027-02-01", "2027-03-01", 3000),
    ]


async def test_trial_will_end_is_told_at_creation_when_its_day_is_past(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    """A 2-day trial: trialEndDate - 3 days is already past at creation, so it is told at
    creation, not at the next generation, which (an external schedule running daily)
    may come only after the trial ended, too late to tell it at all."""
    plan = await new_plan(client)
    clock.set(at(2027, 1, 25, 9))
    short = await subscribe(client, customerId=await customer(client), planId=plan, trialDays=2)
    assert short["trialEndDate"] == "2027-01-27"
    told = await stored_events(database, "subscription.trial_will_end")
    assert [e["subscription"]["id"] for e in told] == [short["id"]]
    assert told[0]["subscription"]["status"] == "trialing"
    # a trial that already ended at creation (a start in the past) is not told
    await subscribe(
        client, customerId=await customer(client), planId=plan, trialDays=5, startDate="2027-01-10"
    )
    for moment in (at(2027, 1, 25, 9), at(2027, 1, 27, 1), at(2027, 2, 27)):
        await generate_at(database, clock, moment)
    assert len(await stored_events(database, "subscription.trial_will_end")) == 1
