"""Issue 20 item 6: unsetting ANTAEUS_AMQP_URL retires the broker's destination.

Before, the broker's row stayed `enabled` for ever once a relay had had a URL:
events written afterwards waited for a broker delivery nobody would make, and
pruning kept them (and everything after them) for ever.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import select

from antaeus.clock import ManualClock
from antaeus.config import Settings
from antaeus.notify.factory import build_relay
from antaeus.notify.relay import Relay
from antaeus.notify.webhooks import TryResult
from antaeus.storage.database import Database
from antaeus.storage.repositories.outbox import Claimed
from antaeus.storage.tables import event_destinations
from tests.notify.helpers import event_ids, webhook_relay, write_events


class RecordingBroker:
    """Stands in for the broker (kind `amqp`): takes every publish, records the event ids."""

    kind = "amqp"
    url_shown = "amqp://guest:***@127.0.0.1:5672/"

    def __init__(self) -> None:
        self.published: list[int] = []

    async def deliver(self, claimed: Claimed) -> TryResult:
        self.published.append(claimed.event.id)
        return TryResult(True, None, None, 1)

    async def aclose(self) -> None:
        return None


async def _amqp_status(db: Database) -> str:
    async with db.read() as conn:
        return str(
            await conn.scalar(
                select(event_destinations.c.status).where(event_destinations.c.kind == "amqp")
            )
        )


def _broker(status: dict[str, object]) -> dict[str, object]:
    outbox = status["outbox"]
    assert isinstance(outbox, dict)
    [found] = [d for d in outbox["destinations"] if d["kind"] == "amqp"]
    assert isinstance(found, dict)
    return found


async def test_a_relay_without_a_broker_url_retires_it_and_pruning_goes_on(
    client: httpx.AsyncClient, database: Database, clock: ManualClock, database_url: str
) -> None:
    started = clock.now()
    broker = RecordingBroker()
    first = webhook_relay(database, clock, senders=[broker], prune_every=0)
    await first.prepare()
    await write_events(database, clock.now(), 3)  # evt_1..3: published
    await first.run_until_idle()
    assert broker.published == [1, 2, 3]
    await write_events(database, clock.now(), 2, first=4)  # evt_4, 5: fanned out, not sent
    async with database.write() as conn:
        from antaeus.storage.repositories.outbox import DeliveryRepository

        await DeliveryRepository(conn).fan_out(clock.now(), 100)
    await first.aclose()
    status = (await client.get("/rest/v1/status")).json()
    assert _broker(status)["status"] == "enabled"
    assert _broker(status)["undelivered"] == 2
    assert _broker(status)["oldestUndeliveredEventId"] == "evt_4"

    # restarted without ANTAEUS_AMQP_URL: the broker's destination is retired
    clock.advance(timedelta(minutes=1))
    without = build_relay(database, clock, Settings(DATABASE_URL=database_url, AMQP_URL=None))
    await without.prepare()
    assert await _amqp_status(database) == "retired"
    status = (await client.get("/rest/v1/status")).json()
    assert _broker(status)["status"] == "retired"
    await write_events(database, clock.now(), 1, first=6)  # evt_6: written while retired
    await without.run_until_idle()
    await write_events(database, clock.now(), 1, first=7)  # evt_7: retired, not fanned out yet
    await without.aclose()

    # the URL set again: enabled, for events written from now on only
    clock.advance(timedelta(minutes=1))
    broker_again = RecordingBroker()
    again = webhook_relay(database, clock, senders=[broker_again], prune_every=0)
    await again.prepare()
    assert await _amqp_status(database) == "enabled"
    await write_events(database, clock.now(), 1, first=8)  # evt_8
    await again.run_until_idle()
    assert broker_again.published == [8], "old undelivered events are not flooded"
    assert _broker((await client.get("/rest/v1/status")).json())["undelivered"] == 0

    # every event goes once its retention ends: nothing waits for the retired time
    clock.set(started + timedelta(days=31))
    await again.run_until_idle()
    await again.aclose()
    assert await event_ids(database) == []


async def test_a_retired_broker_never_holds_back_pruning(
    database: Database, clock: ManualClock, database_url: str
) -> None:
    started = clock.now()
    broker = RecordingBroker()
    relay: Relay = webhook_relay(database, clock, senders=[broker])
    await relay.prepare()
    await relay.aclose()
    await write_events(database, clock.now(), 4)  # never published: the broker went away
    without = build_relay(database, clock, Settings(DATABASE_URL=database_url, AMQP_URL=None))
    without.settings.prune_every = 0
    await without.prepare()
    await without.run_until_idle()
    clock.set(started + timedelta(days=31))
    await without.run_until_idle()
    await without.aclose()
    assert await event_ids(database) == []
