"""The subscription events that time alone makes due (issue 21).

- `subscription.trial_will_end`: at the first instant of `trialEndDate` - 3 days
  (at creation if that is past), once; after downtime only if the trial has not
  ended by then.
- `subscription.canceled`: at the first instant of `cancelAt` (a cancel made
  earlier for a later date; a cancel that takes effect at once tells it itself).

Each subscription row keeps the local date it is due on (`trial_notice_on`,
`cancel_notice_on`), cleared in the transaction that writes the event, so that
each is told exactly once whoever tells it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import and_, select, update

from antaeus.billing.subscription_view import subscription_json
from antaeus.domain.events import EventType, SubscriptionEvent, row
from antaeus.domain.periods import first_instant
from antaeus.storage.database import Database
from antaeus.storage.repositories.plans import PlanRepository
from antaeus.storage.repositories.runs import BillingBase
from antaeus.storage.repositories.subscriptions import to_subscription_row
from antaeus.storage.tables import customers, subscriptions

_BATCH: Final = 500

_KINDS: Final = (
    ("trial_notice_on", EventType.SUBSCRIPTION_TRIAL_WILL_END),
    ("cancel_notice_on", EventType.SUBSCRIPTION_CANCELED),
)


async def tell_due_notices(db: Database, now: datetime) -> int:
    """Write every notice due by `now`; answers how many were written."""
    told = 0
    # every zone's local date is within a day of UTC's: a superset, decided row by row
    high = (now + timedelta(days=1)).date()
    for column_name, kind in _KINDS:
        column = subscriptions.c[column_name]
        after = 0
        while True:
            async with db.write() as conn:
                query = (
                    select(*subscriptions.c, customers.c.timezone)
                    .join_from(
                        subscriptions, customers, customers.c.id == subscriptions.c.customer_id
                    )
                    .where(and_(column.is_not(None), column <= high, subscriptions.c.id > after))
                    .order_by(subscriptions.c.id)
                    .limit(_BATCH)
                )
                if conn.dialect.name == "postgresql":
                    query = query.with_for_update(of=subscriptions, skip_locked=True)
                rows = list(await conn.execute(query))
                if not rows:
                    break
                after = int(rows[-1].id)
                subs = [(raw, to_subscription_row(raw)) for raw in rows]
                plans = await PlanRepository(conn).many(
                    i for _, sub in subs for i in sub.plan_ids()
                )
                events = []
                cleared = []
                for raw, sub in subs:
                    on = getattr(raw, column_name)
                    if first_instant(on, sub.timezone) > now:
                        continue
                    cleared.append(sub.id)
                    if kind is EventType.SUBSCRIPTION_TRIAL_WILL_END:
                        assert sub.trial_end_date is not None
                        if first_instant(sub.trial_end_date, sub.timezone) <= now:
                            continue  # the trial ended (downtime): too late to tell
                    events.append(row(SubscriptionEvent(kind, subscription_json(sub, plans, now))))
                if cleared:
                    await conn.execute(
                        update(subscriptions)
                        .where(subscriptions.c.id.in_(cleared))
                        .values({column_name: None})
                    )
                await BillingBase(conn).add_events(events, now)
                told += len(events)
    return told
