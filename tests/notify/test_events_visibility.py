"""Issue 20 item 9: a poller following `after` from the last id it saw never misses an event.

On PostgreSQL an event's id is taken when its transaction writes it, and
transactions commit in any order: a poller that saw evt_2 (committed) and moved
`after` past it never saw evt_1, committed a moment later. The list now answers
only events of transactions that ended before every open one, in the order in
which they became visible. SQLite has one writer at a time: no filter needed.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from structlog.testing import capture_logs

from antaeus.clock import ManualClock
from antaeus.notify.relay import Relay
from antaeus.storage.database import Database, WriteConnection
from antaeus.storage.repositories.billing import BillingRepository


async def _add(conn: WriteConnection, clock: ManualClock, n: int) -> None:
    """An event as the worker writes it (`n` in its payload, for counting)."""
    await BillingRepository(conn).add_events(
        [("invoice.paid", n, None, json.dumps({"invoiceId": n}))], clock.now()
    )


async def _poll(client: httpx.AsyncClient, after: str, limit: int = 100) -> tuple[list[Any], str]:
    """One page from `after`, following the consumer's rule: `after` = the last id seen."""
    answer = await client.get("/rest/v1/events", params={"after": after, "limit": limit})
    assert answer.status_code == 200, answer.text
    page = answer.json()
    return page, (page[-1]["id"] if page else after)


def _numbers(events: list[Any]) -> list[int]:
    return [int(e["data"]["invoiceId"]) for e in events]


async def test_an_event_committed_after_a_later_one_is_not_missed(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    if database.is_sqlite:
        pytest.skip("SQLite: one writer at a time, ids commit in order (the other test runs)")
    older_may_go = asyncio.Event()
    slow_may_go = asyncio.Event()
    slow_wrote = asyncio.Event()
    older_has_xid = asyncio.Event()

    async def older() -> None:  # takes its transaction id first, writes its event second
        async with database.write() as conn:
            await conn.execute(text("SELECT pg_current_xact_id()"))
            older_has_xid.set()
            await older_may_go.wait()
            await _add(conn, clock, 2)

    async def slow() -> None:  # a younger transaction that writes evt_1 and stays open
        await older_has_xid.wait()
        async with database.write() as conn:
            await _add(conn, clock, 1)
            slow_wrote.set()
            await slow_may_go.wait()

    tasks = [asyncio.create_task(older()), asyncio.create_task(slow())]
    await slow_wrote.wait()
    older_may_go.set()
    await tasks[0]  # evt_2 committed; evt_1 (a smaller id) still open
    seen, after = await _poll(client, "0")
    slow_may_go.set()
    await tasks[1]
    # the horizon is the whole server's: another database's open transaction may hold it
    deadline = time.monotonic() + 30
    while len(seen) < 2 and time.monotonic() < deadline:
        more, after = await _poll(client, after)
        seen += more
        await asyncio.sleep(0.05)
    assert sorted(_numbers(seen)) == [1, 2], "the poller missed an event"
    # each event answers by id once visible
    for e in seen:
        assert (await client.get(f"/rest/v1/events/{e['id']}")).status_code == 200


async def test_slow_and_fast_writers_and_a_poller_lose_nothing(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    rng = random.Random(20)
    numbers = iter(range(1, 1_000_000))
    committed: list[int] = []
    writing = True
    pg = not database.is_sqlite

    async def fast(rounds: int) -> None:
        for _ in range(rounds):
            async with database.write() as conn:
                n = next(numbers)
                await _add(conn, clock, n)
                if pg:
                    await asyncio.sleep(rng.uniform(0, 0.005))  # commits interleave
            committed.append(n)

    async def slow(rounds: int) -> None:  # a transaction held open while others commit
        for _ in range(rounds):
            async with database.write() as conn:
                n = next(numbers)
                await _add(conn, clock, n)
                await asyncio.sleep(0.3 if pg else 0.01)
            committed.append(n)

    seen: list[int] = []

    async def poller() -> None:
        """Polls on after the writers end, until it has them all (or 30 s pass: missed)."""
        after = "0"
        deadline = None
        while deadline is None or time.monotonic() < deadline:
            if deadline is None and not writing:
                deadline = time.monotonic() + 30
            page, after = await _poll(client, after, limit=7)
            seen.extend(_numbers(page))
            if deadline is not None and set(seen) >= set(committed):
                return
            await asyncio.sleep(0.01)

    polling = asyncio.create_task(poller())
    await asyncio.gather(slow(4), *(fast(40) for _ in range(4)))
    writing = False
    await asyncio.wait_for(polling, 90)
    counted = Counter(seen)
    assert len(committed) == 4 + 160
    assert set(counted) == set(committed), f"missed: {sorted(set(committed) - set(counted))}"
    assert max(counted.values()) == 1, "no event listed twice"


def _said(logs: list[dict[str, Any]], pid: int) -> list[dict[str, Any]]:
    return [x for x in logs if x["event"] == "long_transaction" and x["pid"] == pid]


async def test_a_transaction_open_over_the_limit_is_logged_and_counted(
    database: Database, clock: ManualClock
) -> None:
    if database.is_sqlite:
        pytest.skip("SQLite: the list waits for no transaction")
    relay = Relay(database, clock, [], relay_id="watch")
    relay.settings.long_transaction = timedelta(seconds=1)
    before = REGISTRY.get_sample_value("antaeus_long_transactions_total") or 0.0
    release = asyncio.Event()
    opened = asyncio.Event()
    pid: list[int] = []

    async def held() -> None:
        async with database.write() as conn:
            await _add(conn, clock, 1)
            pid.append(int(await conn.scalar(text("SELECT pg_backend_pid()"))))
            opened.set()
            await release.wait()

    task = asyncio.create_task(held())
    try:
        await opened.wait()
        with capture_logs() as logs:
            await relay.watch_transactions()
            assert not _said(logs, pid[0]), "not yet"
            await asyncio.sleep(1.3)  # past the limit (the database's own clock)
            await relay.watch_transactions()
            await relay.watch_transactions()  # the same one is said and counted once
        lines = _said(logs, pid[0])
        assert len(lines) == 1
        assert lines[0]["log_level"] == "warning"
        assert lines[0]["seconds"] >= 1
        after = REGISTRY.get_sample_value("antaeus_long_transactions_total")
        assert after is not None
        assert after >= before + 1
    finally:
        release.set()
        await task
        await relay.aclose()
