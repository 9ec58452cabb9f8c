"""Claimed deliveries waiting here for a slot of their destination: started, or handed back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from antaeus.clock import ManualClock
from antaeus.storage.database import Database
from tests.notify.helpers import Receiver, deliveries, webhook_relay
from tests.notify.helpers import write_events as write


@pytest.fixture
async def hanging(client: httpx.AsyncClient) -> AsyncIterator[Receiver]:
    r = await Receiver(modes={"/hook": "hang"}).start()
    assert (await client.post("/rest/v1/webhooks", json={"url": r.url()})).status_code == 201
    try:
        yield r
    finally:
        await r.stop()


async def test_a_waiting_delivery_past_half_its_lease_is_handed_back_untried(
    database: Database, clock: ManualClock, hanging: Receiver
) -> None:
    await write(database, clock.now(), 2)
    ticks = [0.0]
    relay = webhook_relay(database, clock, timeout=0.3, per_destination=1)
    relay.monotonic = lambda: ticks[0]
    try:
        await relay.step()  # claims both: one tried, one waits for the slot
        assert len(relay._inflight) == 1
        assert sum(len(w) for w in relay._queued.values()) == 1
        ticks[0] += relay.settings.lease.total_seconds() / 2 + 1  # the wait ate half the lease
        await asyncio.wait(set(relay._inflight))
        assert not relay._inflight, "the waiting one was not started"
        assert len(hanging.hits) == 1
        assert [o.released for o in relay._done] == [False, True]
        await relay._record()  # the failed try and the one handed back
    finally:
        await relay.aclose()
    rows = sorted(await deliveries(database), key=lambda r: r.tries)
    assert [r.tries for r in rows] == [0, 1]
    assert rows[0].lease_owner is None, "handed back"
    assert rows[0].next_try_at <= clock.now(), "due again at once"
    assert rows[1].lease_owner is None
    assert rows[1].next_try_at > clock.now(), "the failed try waits for its backoff"


async def test_stopping_hands_back_what_waits(
    database: Database, clock: ManualClock, hanging: Receiver
) -> None:
    await write(database, clock.now(), 3)
    relay = webhook_relay(database, clock, timeout=0.3, per_destination=1)
    try:
        await relay.step()  # one tried, one waiting, one handed back at once
        await relay.drain()
    finally:
        await relay.aclose()
    assert len(hanging.hits) == 1, "nothing waiting is started once stopping"
    rows = await deliveries(database)
    assert sorted(r.tries for r in rows) == [0, 0, 1]
    assert all(r.lease_owner is None for r in rows), "every claim is written back"
    assert all(r.next_try_at <= clock.now() for r in rows if r.tries == 0), "due again now"


async def test_what_waits_starts_when_the_global_cap_frees_a_slot(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    receiver = await Receiver().start()
    for path in ("/a", "/b", "/c"):
        made = await client.post("/rest/v1/webhooks", json={"url": receiver.url(path)})
        assert made.status_code == 201
    await write(database, clock.now(), 1)
    # one try in flight in all: claims wait, some for destinations with none in flight
    relay = webhook_relay(database, clock, concurrency=1, per_destination=1)
    try:
        await relay.run_until_idle(within=30)
    finally:
        await relay.aclose()
    for path in ("/a", "/b", "/c"):
        assert receiver.ids(path) == {"evt_1": 1}, path
    assert not relay._queued
    assert all(r.delivered_at is not None for r in await deliveries(database))
    await receiver.stop()


async def test_a_wake_up_during_a_round_is_not_lost(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    receiver = await Receiver().start()
    assert (await client.post("/rest/v1/webhooks", json={"url": receiver.url()})).status_code
    # a try that ends, or (here) new events, wake the relay; it used to clear the
    # wake-up when it went to sleep, losing one that came during its round: it then
    # slept a whole poll interval with finished tries unrecorded
    relay = webhook_relay(database, clock, poll_interval=5.0)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        for batch in range(5):
            await write(database, clock.now(), 20, first=1 + 20 * batch)
            relay._wake.set()  # as a poll would: the events are there
            started = asyncio.get_running_loop().time()
            while asyncio.get_running_loop().time() - started < 4.0:
                rows = await deliveries(database)
                if len(rows) == 20 * (batch + 1) and all(r.delivered_at for r in rows):
                    break
                await asyncio.sleep(0.01)
            took = asyncio.get_running_loop().time() - started
            assert took < 2.0, f"batch {batch}: {took:.1f} s (a wake-up was lost)"
    finally:
        stop.set()
        await task
        await relay.aclose()
        await receiver.stop()
