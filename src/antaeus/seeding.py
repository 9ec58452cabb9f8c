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
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from antaeus.domain.calendar import first_of_month_utc, shift_months
from antaeus.domain.customer import DEFAULT_TIMEZONE
from antaeus.domain.invoice import InvoiceStatus
from antaeus.domain.money import ORIGINAL_CURRENCIES
from antaeus.storage.database import Database
from antaeus.storage.repositories.customers import CustomerRepository
from antaeus.storage.repositories.invoices import InvoiceRepository

CURRENCIES = list(ORIGINAL_CURRENCIES)  # sample data: the five original currencies
CUSTOMERS_PER_BATCH = 5_000


@dataclass(frozen=True)
class SeedResult:
    customers: int
    invoices: int
    pending: int
    seed: int


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
    while done < customers:
        size = min(CUSTOMERS_PER_BATCH, customers - done)
        currencies = [rng.choice(CURRENCIES) for _ in range(size)]
        async with db.write() as conn:
            ids: list[int] = await CustomerRepository(conn).create_many(
                [(c, tz) for c in currencies], now
            )
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
    return SeedResult(
        customers=customers,
        invoices=customers * invoices_per_customer,
        pending=customers if invoices_per_customer else 0,
        seed=seed_value,
    )
