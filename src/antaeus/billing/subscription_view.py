"""A subscription as the API, its events and the dashboard show it (one home for the shape)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from antaeus.domain.money import Currency, Money
from antaeus.domain.periods import local_date
from antaeus.domain.proration import monthly_recurring_revenue
from antaeus.domain.subscription import SubscriptionStatus, current_period, status_on
from antaeus.exactjson import rfc3339
from antaeus.storage.database import Conn
from antaeus.storage.repositories.dashboard import SubscriptionPagesRepository
from antaeus.storage.repositories.plans import Plan, PlanRepository
from antaeus.storage.repositories.subscriptions import (
    SubscriptionRepository,
    SubscriptionRow,
    may_have_status,
)

#: rows read per step when `status` filters (a superset is read, the exact status decides)
_STATUS_CHUNK: Final = 500


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def subscription_json(
    sub: SubscriptionRow, plans: Mapping[int, Plan], now: datetime
) -> dict[str, Any]:
    """The subscription as the API shows it at the instant `now` (status and current
    period on the customer's local date then)."""
    terms = sub.terms(plans)
    today = local_date(now, sub.timezone)
    period = current_period(terms, today)
    pending = terms.pending_change
    return {
        "id": sub.id,
        "customerId": sub.customer_id,
        "planId": sub.plan_id,
        "quantity": sub.quantity,
        "status": status_on(terms, today).value,
        "billingAnchor": sub.billing_anchor.value,
        "startDate": sub.start_date.isoformat(),
        "trialEndDate": _iso(sub.trial_end_date),
        "currentPeriodStart": _iso(period.start if period else None),
        "currentPeriodEnd": _iso(period.end if period else None),
        "cancelAt": _iso(sub.cancel_at),
        "canceledAt": rfc3339(sub.canceled_at) if sub.canceled_at else None,
        "pendingChange": None
        if pending is None
        else {
            "planId": pending.plan.id,
            "quantity": pending.quantity,
            "effectiveDate": pending.effective_date.isoformat(),
        },
        "createdAt": rfc3339(sub.created_at),
    }


async def subscriptions_page(
    conn: Conn,
    now: datetime,
    *,
    after: int,
    limit: int,
    customer_id: int | None = None,
    plan_id: int | None = None,
    status: SubscriptionStatus | None = None,
) -> tuple[list[SubscriptionRow], dict[int, Plan]]:
    """Up to `limit` subscriptions after the id `after`, by ascending id, and their plans;
    `status` as worked out on each customer's local date at `now` (the API's list and the
    dashboard's)."""
    repo, plan_repo = SubscriptionRepository(conn), PlanRepository(conn)
    plans: dict[int, Plan] = {}
    if status is None:
        rows = await repo.page(after=after, limit=limit, customer_id=customer_id, plan_id=plan_id)
    else:
        rows = []
        superset = may_have_status(status, now.date())
        while len(rows) < limit:
            step = max(_STATUS_CHUNK, limit)
            chunk = await repo.page(
                after=after, limit=step, customer_id=customer_id, plan_id=plan_id, where=superset
            )
            plans |= await plan_repo.many(i for r in chunk for i in r.plan_ids())
            rows.extend(
                r for r in chunk if status_on(r.terms(plans), local_date(now, r.timezone)) is status
            )
            if len(chunk) < step:
                break
            after = chunk[-1].id
        rows = rows[:limit]
    plans |= await plan_repo.many(i for r in rows for i in r.plan_ids() if i not in plans)
    return rows, plans


async def recurring_revenue(conn: Conn, now: datetime) -> tuple[dict[Currency, Money], int, int]:
    """MRR per currency of the subscriptions `active` at the instant `now` (each on its
    customer's local date; a pending cancel included, trials not), and how many are
    `active` and `trialing`. The database sums per plan; `monthly_recurring_revenue`
    (domain) sums exactly and rounds once per currency."""
    pages = SubscriptionPagesRepository(conn)
    zones = await pages.subscription_zones()
    per_plan = await pages.recurring({tz: local_date(now, tz) for tz in zones})
    plans = await PlanRepository(conn).many(p.plan_id for p in per_plan)
    items = [
        (plans[p.plan_id].amount, plans[p.plan_id].interval, plans[p.plan_id].interval_count, q)
        for p in per_plan
        if (q := p.active_quantity) > 0
    ]
    active = sum(p.active for p in per_plan)
    trialing = sum(p.trialing for p in per_plan)
    return monthly_recurring_revenue(items), active, trialing
