"""A subscription as the API, its events and the dashboard show it (one home for the shape)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from antaeus.domain.periods import local_date
from antaeus.domain.subscription import current_period, status_on
from antaeus.exactjson import rfc3339
from antaeus.storage.repositories.plans import Plan
from antaeus.storage.repositories.subscriptions import SubscriptionRow


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
