"""Several relays over one PostgreSQL database: each event fanned out and delivered once.

Claims are `FOR UPDATE SKIP LOCKED`: relays stepping at the same time never take the
same event (fan-out) or the same delivery. Skipped without ANTAEUS_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from antaeus.clock import ManualClock
from antaeus.notify.relay import ensure_broker_destination
from antaeus.notify.webhooks import new_secret
from antaeus.storage.database import Database
from antaeus.storage.repositories.outbox import DestinationRepository
from antaeus.storage.tables import delivery_tries, event_deliveries, event_destinations
from tests.conftest import _empty_tables
from tests.notify.helpers import Receiver, event_ids, webhook_relay
from tests.notify.helpers import write_events as write

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
async def databases(postgres_url: str) -> AsyncIterator[list[Database]]:
    """Three engines on one database (as three processes would have)."""
    dbs = [Database(postgres_url) for _ in range(3)]
    await _empty_tables(dbs[0])
    try:
        yield dbs
    finally:
        for db in dbs:
            await db.dispose()


@pytest.mark.parametrize("relays", [2, 3])
async def test_concurrent_relays_deliver_each_event_exactly_once(
    databases: list[Database], relays: int
) -> None:
    receiver = await Receiver().start()
    clock = ManualClock(NOW)
    db = databases[0]
    async with db.write() as conn:
        await DestinationRepository(conn).create(
            "webhook", receiver.url(), None, new_secret(), clock.now()
        )
    for first in range(1, 501, 100):
        await write(db, clock.now(), 100, first=first)
    steppers = [
        webhook_relay(databases[i], clock, relay_id=f"relay-{i}", batch=40, concurrency=16)
        for i in range(relays)
    ]
    try:
        await asyncio.gather(*(r.run_until_idle() for r in steppers))
    finally:
        for r in steppers:
            await r.aclose()
        await receiver.stop()

    ids = await event_ids(db)
    assert len(ids) == 500
    assert receiver.ids() == {i: 1 for i in ids}, "an event was delivered twice, or never"
    assert len(receiver.hits) == 500
    assert sum(r.stats.fanned_out for r in steppers) == 500, "an event was fanned out twice"
    assert sum(r.stats.delivered for r in steppers) == 500
    assert all(r.stats.delivered > 0 for r in steppers), "the relays did not share the work"
    async with db.read() as conn:
        rows = await conn.scalar(select(func.count()).select_from(event_deliveries))
        distinct = await conn.scalar(select(func.count(func.distinct(event_deliveries.c.event_id))))
        tries = await conn.scalar(select(func.count()).select_from(delivery_tries))
        undelivered = await conn.scalar(
            select(func.count())
            .select_from(event_deliveries)
            .where(event_deliveries.c.delivered_at.is_(None))
        )
    assert rows == distinct == 500
    assert tries == 500
    assert undelivered == 0


async def test_relays_starting_together_make_one_broker_destination(
    databases: list[Database],
) -> None:
    clock = ManualClock(NOW)
    for _ in range(5):  # a race: try it a few times
        await _empty_tables(databases[0])
        await asyncio.gather(
            *(ensure_broker_destination(db, clock, "amqp://guest:***@b/") for db in databases)
        )
        async with databases[0].read() as conn:
            kinds = list((await conn.execute(select(event_destinations.c.kind))).scalars())
        assert kinds == ["amqp"], "each event would be published once per row"
