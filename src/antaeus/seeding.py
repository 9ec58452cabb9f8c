"""The original Antaeus sample data, reproducible with a seed, and large data sets fast.

Customer `k` (1-based within the batch) gets `invoices_per_customer` invoices in a
row: the first `PENDING` and already due (midnight on the first of the current
month), the rest `PAID` in the months before. Amounts are uniform in [10, 500)
with two decimals, in the customer's own currency (one of the five original
ones). With the defaults this is the original 100 customers and 1,000
invoices, 100 of them pending.

What charging them does is the payment provider's: the embedded simulator
gives its customers seeded profiles by customer id (see
`antaeus.simulators.simulated`), so the sample shows every outcome, `REVIEW`
included, and the same ones whatever the seed here.

Subscriptions (issue 21), two ways:

- `sample_subscriptions`: the first five customers of the batch get the sample
  plans and subscriptions (`_samples`: calendar and anniversary, a period
  caught up, a trial, a quantity above 1, two subscriptions consolidated on one
  invoice) and a credit of 500.00 (one `adjustment` credit entry), and their
  invoices due by now are generated at once (`generate_due`): the first `serve`
  shows generated invoices with their lines beside the original ones, PAID by
  the credit (a `balance` line), so the original 100 invoices stay the ones due.
- `subscriptions_per_customer` K: every customer gets K subscriptions (plan j
  of its currency for the j-th, plans made as needed), customers spread over the
  20 zones of `ZONES`, calendar monthly, starting today in each customer's zone:
  all due now, nothing generated (that is what `antaeus generate` measures).
  Bulk-inserted (COPY on PostgreSQL, one executemany on SQLite).

Seeding writes rows, not events: no `subscription.created` (as the seeded
invoices have no `invoice.created`); the generated invoices have theirs.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final

from antaeus.billing.generation import GenerationSummary, generate_due
from antaeus.clock import ManualClock
from antaeus.domain.calendar import first_of_month_utc, shift_months
from antaeus.domain.customer import DEFAULT_TIMEZONE
from antaeus.domain.invoice import InvoiceStatus
from antaeus.domain.money import ORIGINAL_CURRENCIES, Currency, Money
from antaeus.domain.periods import BillingAnchor, Interval, first_instant, local_date
from antaeus.domain.subscription import SubscriptionTerms, next_due_at, trial_will_end_date
from antaeus.storage.database import Database, WriteConnection
from antaeus.storage.repositories.customers import CustomerRepository
from antaeus.storage.repositories.generation import GenerationRepository
from antaeus.storage.repositories.invoices import InvoiceRepository
from antaeus.storage.repositories.plans import Plan, PlanRepository
from antaeus.storage.repositories.subscriptions import SubscriptionRepository

CURRENCIES = list(ORIGINAL_CURRENCIES)  # sample data: the five original currencies
CUSTOMERS_PER_BATCH = 5_000

#: the zones bulk-seeded customers are spread over (UTC+14 to UTC-11), in turn
ZONES: Final = (
    "Pacific/Kiritimati",
    "Pacific/Auckland",
    "Australia/Sydney",
    "Asia/Tokyo",
    "Asia/Shanghai",
    "Asia/Kolkata",
    "Asia/Dubai",
    "Europe/Moscow",
    "Europe/Athens",
    "Europe/Berlin",
    "Europe/London",
    "UTC",
    "Atlantic/Azores",
    "America/Sao_Paulo",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "Pacific/Honolulu",
    "Pacific/Pago_Pago",
)


@dataclass(frozen=True)
class SamplePlan:
    key: str
    name: str
    amount: str  # in the currency's units
    interval: Interval
    interval_count: int = 1


#: each sample customer's credit, which pays its generated invoices
SAMPLE_CREDIT: Final = "500.00"

SAMPLE_PLANS: Final = (
    SamplePlan("starter-monthly", "Starter", "9.00", Interval.MONTH),
    SamplePlan("pro-monthly", "Pro", "29.00", Interval.MONTH),
    SamplePlan("seat-monthly", "Team seat", "12.00", Interval.MONTH),
    SamplePlan("support-yearly", "Support", "120.00", Interval.YEAR),
)


def _samples(today: date) -> list[tuple[int, str, int, BillingAnchor, date, int]]:
    """(customer of the five, plan key, quantity, anchor, start date, trial days)."""
    first_of_month = today.replace(day=1)
    last_month_14th = (first_of_month - timedelta(days=1)).replace(day=14)
    return [
        # calendar from the 14th of last month: a prorated period, then a whole one
        (0, "starter-monthly", 1, BillingAnchor.CALENDAR, last_month_14th, 0),
        # anniversary from 40 days ago: two periods, each from the anchor
        (1, "pro-monthly", 1, BillingAnchor.ANNIVERSARY, today - timedelta(days=40), 0),
        # a 14-day trial from today: trialing, nothing billed yet
        (2, "pro-monthly", 1, BillingAnchor.CALENDAR, today, 14),
        # five seats from the first of the month
        (3, "seat-monthly", 5, BillingAnchor.CALENDAR, first_of_month, 0),
        # two subscriptions starting together: one invoice, two lines
        (4, "starter-monthly", 1, BillingAnchor.CALENDAR, first_of_month, 0),
        (4, "support-yearly", 1, BillingAnchor.ANNIVERSARY, first_of_month, 0),
    ]


@dataclass(frozen=True)
class SeedResult:
    customers: int
    invoices: int
    pending: int
    seed: int
    plans: int = 0  # plans created (existing ones with the same code are reused)
    subscriptions: int = 0
    generated: GenerationSummary | None = None  # the sample subscriptions' invoices


class SeedRefusedError(Exception):
    pass


async def seed(
    db: Database,
    *,
    now: datetime,
    seed_value: int,
    customers: int = 100,
    invoices_per_customer: int = 10,
    append: bool = False,
    progress: Callable[[int], None] | None = None,
    subscriptions_per_customer: int = 0,
    sample_subscriptions: bool = False,
) -> SeedResult:
    """Load sample data; refuses a database that has customers unless `append`."""
    rng = random.Random(seed_value)
    tz = DEFAULT_TIMEZONE
    local_year, local_month = now.year, now.month  # UTC customers: local month == UTC month
    due_dates = [
        first_of_month_utc(*shift_months(local_year, local_month, -k), tz)
        for k in range(invoices_per_customer)
    ]
    done = 0
    async with db.write() as conn:
        if not append and await CustomerRepository(conn).exists_any():
            raise SeedRefusedError("the database already has customers; use --append to add more")
    bulk = _Bulk(now, subscriptions_per_customer)
    samples: list[tuple[int, Currency]] = []
    while done < customers:
        size = min(CUSTOMERS_PER_BATCH, customers - done)
        currencies = [rng.choice(CURRENCIES) for _ in range(size)]
        zones = [ZONES[(done + k) % len(ZONES)] if bulk.k else tz for k in range(size)]
        async with db.write() as conn:
            ids: list[int] = await CustomerRepository(conn).create_many(
                list(zip(currencies, zones, strict=True)), now
            )
            if sample_subscriptions and not samples:
                samples = list(zip(ids, currencies, strict=True))[:5]
            await bulk.add(conn, ids, currencies, zones)
            rows: list[dict[str, Any]] = []
            for customer_id, currency in zip(ids, currencies, strict=True):
                for k in range(invoices_per_customer):
                    rows.append(
                        {
                            "customer_id": customer_id,
                            "currency": currency.value,
                            "amount_minor": rng.randrange(1_000, 50_000),
                            "status": (
                                InvoiceStatus.PENDING if k == 0 else InvoiceStatus.PAID
                            ).value,
                            "due_at": due_dates[k],
                            "eligible_at": due_dates[k],
                            "attempt_count": 0,
                            "created_at": now,
                            "updated_at": now,
                        }
                    )
            await InvoiceRepository(conn).insert_many(rows)
        done += size
        if progress is not None:
            progress(size)
    if bulk.subscriptions:
        async with db.write() as conn:
            await SubscriptionRepository(conn).analyze()
    plans, subscriptions, generated = bulk.plans, bulk.subscriptions, None
    if samples:
        made = await _seed_samples(db, now, samples)
        plans, subscriptions = plans + made[0], subscriptions + made[1]
        generated = await generate_due(db, ManualClock(now))
    return SeedResult(
        customers=customers,
        invoices=customers * invoices_per_customer,
        pending=customers if invoices_per_customer else 0,
        seed=seed_value,
        plans=plans,
        subscriptions=subscriptions,
        generated=generated,
    )


async def _plan(
    conn: WriteConnection,
    now: datetime,
    code: str,
    name: str,
    amount: Money,
    interval: Interval,
    count: int = 1,
) -> tuple[Plan, bool]:
    """The plan called `code`, created if there is none (True: created)."""
    repo = PlanRepository(conn)
    found = await repo.by_code(code)
    if found is not None:
        return found, False
    created = await repo.create(
        code=code,
        name=name,
        amount=amount,
        interval=interval,
        interval_count=count,
        trial_days=0,
        now=now,
    )
    if created is None:  # made meanwhile by another seeder
        found = await repo.by_code(code)
        assert found is not None
        return found, False
    return created, True


class _Bulk:
    """`subscriptions_per_customer` calendar monthly subscriptions, starting today in each
    customer's zone (so that all are due now), bulk-inserted batch by batch."""

    def __init__(self, now: datetime, k: int) -> None:
        self.now, self.k = now, k
        self.plans = 0
        self.subscriptions = 0
        self._plan_ids: dict[tuple[Currency, int], int] = {}
        self._today: dict[str, tuple[date, datetime]] = {}

    async def _cover(self, conn: WriteConnection, currencies: set[Currency]) -> None:
        """Plan j of each currency, for j < k (made when there is none)."""
        for currency in sorted(currencies):
            for j in range(self.k):
                if (currency, j) in self._plan_ids:
                    continue
                plan, created = await _plan(
                    conn,
                    self.now,
                    f"seed-monthly-{j + 1}-{currency.value.lower()}",
                    f"Monthly {j + 1}",
                    Money.from_minor(1_000 + 500 * j, currency),
                    Interval.MONTH,
                )
                self.plans += created
                self._plan_ids[(currency, j)] = plan.id

    async def add(
        self,
        conn: WriteConnection,
        ids: list[int],
        currencies: list[Currency],
        zones: list[str],
    ) -> None:
        if not self.k:
            return
        await self._cover(conn, set(currencies))
        now, calendar, plan_ids = self.now, BillingAnchor.CALENDAR.value, self._plan_ids
        rows: list[tuple[Any, ...]] = []
        for customer_id, currency, timezone in zip(ids, currencies, zones, strict=True):
            today = self._today.get(timezone)
            if today is None:
                start = local_date(now, timezone)
                today = self._today[timezone] = (start, first_instant(start, timezone))
            start, due = today
            for j in range(self.k):
                plan_id = plan_ids[(currency, j)]
                rows.append((customer_id, plan_id, 1, calendar, start, None, due, None, now, now))
        await SubscriptionRepository(conn).insert_many(rows)
        self.subscriptions += len(rows)


async def _seed_samples(
    db: Database, now: datetime, customers: list[tuple[int, Currency]]
) -> tuple[int, int]:
    """The sample plans and subscriptions (`_samples`) on up to five customers of the
    default zone; answers (plans created, subscriptions created)."""
    tz = DEFAULT_TIMEZONE
    today = local_date(now, tz)
    made_plans = made_subs = 0
    async with db.write() as conn:
        plans: dict[tuple[str, Currency], Plan] = {}
        for currency in {c for _, c in customers}:
            for sample in SAMPLE_PLANS:
                plan, created = await _plan(
                    conn,
                    now,
                    f"sample-{sample.key}-{currency.value.lower()}",
                    sample.name,
                    Money.of(sample.amount, currency),
                    sample.interval,
                    sample.interval_count,
                )
                plans[(sample.key, currency)] = plan
                made_plans += created
        repo = SubscriptionRepository(conn)
        for index, key, quantity, anchor, start, trial_days in _samples(today):
            if index >= len(customers):
                continue
            customer_id, currency = customers[index]
            plan = plans[(key, currency)]
            trial_end = start + timedelta(days=trial_days) if trial_days else None
            terms = SubscriptionTerms(
                id=0,
                plan=plan.terms,
                quantity=quantity,
                billing_anchor=anchor,
                start_date=start,
                trial_end_date=trial_end,
            )
            await repo.create(
                customer_id=customer_id,
                plan_id=plan.id,
                quantity=quantity,
                billing_anchor=anchor,
                start_date=start,
                trial_end_date=trial_end,
                next_due_at=next_due_at(terms, tz),
                now=now,
                trial_notice_on=trial_will_end_date(terms),
            )
            made_subs += 1
        # Each sample customer has credit, so that its invoices are created PAID with a
        # `balance` line (and the original 100 invoices stay the only ones due).
        generation = GenerationRepository(conn)
        credit = Money.of(SAMPLE_CREDIT, Currency.EUR).minor  # every original currency: 2 decimals
        await generation.insert_credit_entries(
            [
                (cid, currency.value, credit, credit, "adjustment", None, None, None,
                 "sample data", "seed", now)
                for cid, currency in customers
            ]
        )  # fmt: skip
        await generation.set_credit({cid: credit for cid, _ in customers})
    return made_plans, made_subs
