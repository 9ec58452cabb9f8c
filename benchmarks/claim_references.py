"""The claim's cost of carrying the customer's provider references (indicative).

    python benchmarks/claim_references.py                       # SQLite, 20,000 invoices
    python benchmarks/claim_references.py --database-url postgresql://postgres@127.0.0.1/bench

Claims every invoice of one open run in batches of 1,000, with the references read
by the claim statement (correlated lookups of the customer's primary key in its
RETURNING) and, for comparison, with NULLs in their place. Prints claims/s of each,
alternating, `--rounds` times. A PostgreSQL database given here is dropped and
re-created.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta

import asyncpg
from sqlalchemy import null

from antaeus.billing.service import open_run
from antaeus.clock import ManualClock
from antaeus.domain.policy import PolicySettings
from antaeus.seeding import seed
from antaeus.storage import migrate
from antaeus.storage.database import Database
from antaeus.storage.repositories import charges
from antaeus.storage.repositories.billing import BillingRepository

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
WITH_REFERENCES = (charges._CUSTOMER_REF, charges._PAYMENT_METHOD_REF)


async def _fresh(url: str | None) -> str:
    if url is None:
        return f"sqlite:///{tempfile.mkdtemp()}/claims.db"
    base, _, name = url.rpartition("/")
    conn = await asyncpg.connect(f"{base}/postgres".replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url


async def _claims_per_second(url: str, invoices: int, references: bool) -> float:
    charges._CUSTOMER_REF, charges._PAYMENT_METHOD_REF = (
        WITH_REFERENCES if references else (null(), null())
    )
    db = Database(url)
    try:
        await migrate.upgrade(db)
        await seed(db, now=NOW, seed_value=1, customers=invoices, invoices_per_customer=1)
        clock = ManualClock(NOW + timedelta(days=40))
        await open_run(db, clock, PolicySettings(), "api")
        now = clock.now()
        claimed, spent = 0, 0.0
        while True:
            start = time.perf_counter()
            async with db.write() as conn:
                got = await BillingRepository(conn).claim(
                    "bench", now, now + timedelta(minutes=5), now - timedelta(days=1), 1000, "b"
                )
            spent += time.perf_counter() - start
            if not got:
                return claimed / spent
            claimed += len(got)
    finally:
        await db.dispose()
        charges._CUSTOMER_REF, charges._PAYMENT_METHOD_REF = WITH_REFERENCES


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=20_000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for _ in range(args.rounds):
        for references in (False, True):
            url = await _fresh(args.database_url)
            rate = await _claims_per_second(url, args.invoices, references)
            label = "with references" if references else "without (NULLs)"
            print(f"claim {label}: {rate:,.0f} invoices/s")


if __name__ == "__main__":
    asyncio.run(main())
