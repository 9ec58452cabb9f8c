"""The overview's MRR statement (storage/repositories/dashboard.py `recurring`) against the
domain's own rules, on both engines: random subscriptions around a month end in zones a
day apart, each one's status, plan and quantity worked out row by row with `status_on`
and `terms_on` on its customer's local date; the one grouped statement must agree."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from antaeus.billing.subscription_view import recurring_revenue
from antaeus.domain.money import Money
from antaeus.domain.periods import BillingAnchor, Interval, local_date
from antaeus.domain.proration import monthly_recurring_revenue
from antaeus.domain.subscription import (
    PendingChange,
    PlanTerms,
    SubscriptionStatus,
    SubscriptionTerms,
    status_on,
)
from antaeus.storage.database import Database
from antaeus.storage.tables import customers, plans, subscriptions

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)  # Dec 1 at Kiritimati, Nov 30 at Pago Pago
ZONES = ["UTC", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Tokyo", "America/Havana"]
PLANS = {
    1: PlanTerms(1, "m", Money.of("30.00", "EUR"), Interval.MONTH, 1),
    2: PlanTerms(2, "m3", Money.of("100.00", "EUR"), Interval.MONTH, 3),
    3: PlanTerms(3, "y", Money.of("120.00", "EUR"), Interval.YEAR, 1),
    4: PlanTerms(4, "w", Money.of("7.00", "EUR"), Interval.WEEK, 2),
    5: PlanTerms(5, "d", Money.of("1.00", "EUR"), Interval.DAY, 1),
    6: PlanTerms(6, "m-big", Money.of("45.00", "EUR"), Interval.MONTH, 1),
    7: PlanTerms(7, "y-big", Money.of("200.00", "EUR"), Interval.YEAR, 1),
}


def _day(rnd: random.Random, low: int, high: int) -> date:
    return NOW.date() + timedelta(days=rnd.randint(low, high))


async def test_the_grouped_statement_agrees_with_the_rules_row_by_row(
    database: Database,
) -> None:
    rnd = random.Random(21)
    rows: list[dict[str, Any]] = []
    expected_items = []
    counts = {SubscriptionStatus.ACTIVE: 0, SubscriptionStatus.TRIALING: 0}
    for i in range(1, 301):
        zone = ZONES[i % len(ZONES)]
        plan = PLANS[rnd.randint(1, len(PLANS))]
        start = _day(rnd, -3, 2)
        trial_end = start + timedelta(days=rnd.randint(1, 3)) if rnd.random() < 0.3 else None
        cancel_at = _day(rnd, -1, 2) if rnd.random() < 0.3 else None
        pending = None
        if rnd.random() < 0.4:
            to = PLANS[rnd.choice([p for p in PLANS if PLANS[p].same_interval(plan)])]
            pending = PendingChange(to, rnd.randint(1, 4), _day(rnd, -1, 1))
        quantity = rnd.randint(1, 5)
        rows.append(
            {
                "id": i,
                "customer_id": i,
                "plan_id": plan.id,
                "quantity": quantity,
                "billing_anchor": "anniversary",
                "start_date": start,
                "trial_end_date": trial_end,
                "cancel_at": cancel_at,
                "pending_plan_id": pending.plan.id if pending else None,
                "pending_quantity": pending.quantity if pending else None,
                "pending_effective_date": pending.effective_date if pending else None,
                "created_at": NOW,
                "updated_at": NOW,
            }
        )
        terms = SubscriptionTerms(
            id=i,
            plan=plan,
            quantity=quantity,
            billing_anchor=BillingAnchor.ANNIVERSARY,
            start_date=start,
            trial_end_date=trial_end,
            cancel_at=cancel_at,
            pending_change=pending,
        )
        today = local_date(NOW, zone)
        status = status_on(terms, today)
        if status in counts:
            counts[status] += 1
        if status is SubscriptionStatus.ACTIVE:
            _schedule, billing, units = terms.terms_on(today)
            expected_items.append((billing.amount, billing.interval, billing.interval_count, units))
    async with database.write() as conn:
        await conn.execute(
            insert(plans),
            [
                {
                    "id": p.id,
                    "code": p.name,
                    "name": p.name,
                    "currency": "EUR",
                    "amount_minor": p.amount.minor,
                    "interval": p.interval.value,
                    "interval_count": p.interval_count,
                    "trial_days": 0,
                    "created_at": NOW,
                }
                for p in PLANS.values()
            ],
        )
        await conn.execute(
            insert(customers),
            [
                {
                    "id": r["id"],
                    "currency": "EUR",
                    "timezone": ZONES[r["id"] % len(ZONES)],
                    "created_at": NOW,
                }
                for r in rows
            ],
        )
        await conn.execute(insert(subscriptions), rows)
    assert 0 < counts[SubscriptionStatus.ACTIVE] < len(rows)
    assert counts[SubscriptionStatus.TRIALING] > 0
    async with database.read() as conn:
        mrr, active, trialing = await recurring_revenue(conn, NOW)
    assert (active, trialing) == (
        counts[SubscriptionStatus.ACTIVE],
        counts[SubscriptionStatus.TRIALING],
    )
    assert mrr == monthly_recurring_revenue(expected_items)


async def test_nothing_at_all(database: Database) -> None:
    async with database.read() as conn:
        assert await recurring_revenue(conn, NOW) == ({}, 0, 0)
