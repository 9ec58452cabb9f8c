"""GET /rest/v1/events (pages, filters, bad input), GET /events/{id}, and pruning."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from antaeus.clock import ManualClock
from antaeus.storage.database import Database
from antaeus.storage.repositories.outbox import DeliveryRepository
from antaeus.storage.tables import delivery_tries, event_deliveries
from tests.notify.helpers import Receiver, event_ids, settled, webhook_relay
from tests.notify.helpers import write_events as write


def _next(answer: httpx.Response) -> str | None:
    link = answer.headers.get("Link")
    if link is None:
        return None
    assert link.endswith('>; rel="next"'), link
    return link[1 : link.index(">")]


async def test_events_are_listed_by_pages_with_a_link_to_the_next(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    await write(database, clock.now(), 7, "invoice.paid")
    await write(database, clock.now(), 3, "invoice.failed", first=100)
    await settled(database)
    seen: list[dict] = []
    url: str | None = "/rest/v1/events?limit=3"
    while url is not None:
        answer = await client.get(url)
        assert answer.status_code == 200, answer.text
        seen += answer.json()
        url = _next(answer)
        if url is not None:
            assert f"after={seen[-1]['id']}" in url
    assert [e["id"] for e in seen] == await event_ids(database)
    assert [e["id"] for e in seen] == [f"evt_{i}" for i in range(1, 11)]
    assert all(set(e) == {"id", "type", "createdAt", "data"} for e in seen)
    assert all(isinstance(e["data"], dict) for e in seen)
    # the last full page has no Link; `after` takes an evt_ id or a bare number
    assert "Link" not in (await client.get("/rest/v1/events?limit=10")).headers
    after = await client.get("/rest/v1/events?after=evt_8")
    assert [e["id"] for e in after.json()] == ["evt_9", "evt_10"]
    assert [e["id"] for e in (await client.get("/rest/v1/events?after=8")).json()] == [
        "evt_9",
        "evt_10",
    ]
    assert (await client.get("/rest/v1/events?after=evt_10")).json() == []


async def test_events_filtered_by_type_and_invoice(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    await write(database, clock.now(), 5, "invoice.paid")
    await write(database, clock.now(), 3, "invoice.failed", first=3)
    await settled(database)
    failed = (await client.get("/rest/v1/events?type=invoice.failed")).json()
    assert [e["type"] for e in failed] == ["invoice.failed"] * 3
    for_invoice = (await client.get("/rest/v1/events?invoiceId=3")).json()
    assert sorted(e["type"] for e in for_invoice) == ["invoice.failed", "invoice.paid"]
    both = (await client.get("/rest/v1/events?invoiceId=4&type=invoice.failed")).json()
    assert [(e["id"], e["type"]) for e in both] == [("evt_7", "invoice.failed")]
    page = await client.get("/rest/v1/events?type=invoice.paid&limit=2")
    following = _next(page)
    assert following is not None
    assert "type=invoice.paid" in following
    rest = (await client.get(following)).json()
    assert [e["id"] for e in rest] == ["evt_3", "evt_4"]
    assert len((await client.get("/rest/v1/events?type=*")).json()) == 8
    assert (await client.get("/rest/v1/events?type=run.opened")).json() == []
    assert (await client.get("/rest/v1/events?invoiceId=999")).json() == []


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("type=invoice.exploded", "invoice.exploded"),
        ("type=", "type"),
        ("after=evt_abc", "after"),
        ("after=evt_0", "after"),
        ("after=-1", "after"),
        ("after=01", "after"),
        ("after=" + "9" * 40, "after"),
        ("after=inv_3", "after"),
        ("after=evt_9999999999999999999", "after"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("invoiceId=abc", "invoiceId"),
        ("invoiceId=0", "invoiceId"),
    ],
)
async def test_events_refuse_bad_queries(client: httpx.AsyncClient, query: str, named: str) -> None:
    answer = await client.get(f"/rest/v1/events?{query}")
    assert answer.status_code == 422, answer.text
    assert named in answer.text


async def test_one_event_by_id(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    await write(database, clock.now(), 2, "invoice.review")
    await settled(database)
    one = await client.get("/rest/v1/events/evt_2")
    assert one.status_code == 200
    assert one.json()["id"] == "evt_2"
    assert one.json()["type"] == "invoice.review"
    listed = (await client.get("/rest/v1/events")).json()
    assert one.json() == listed[1]
    for missing in [
        "evt_3",
        "evt_999999",
        "evt_9223372036854775807",  # the largest bigint
        "evt_9999999999999999999",  # past it
        "evt_0",
        "evt_01",
        "2",
        "evt_",
        "abc",
        "evt_-1",
    ]:
        answer = await client.get(f"/rest/v1/events/{missing}")
        assert answer.status_code == 404, (missing, answer.text)
    # longer than any id: refused as input (the path's bound), as every id path does
    assert (await client.get("/rest/v1/events/evt_" + "9" * 30)).status_code == 422


async def _count(db: Database, table: object) -> int:
    async with db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)  # type: ignore[arg-type]


async def test_pruning_deletes_old_events_delivered_everywhere_and_keeps_the_rest(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    receiver = await Receiver(modes={"/down": "fail"}).start()
    up = await client.post("/rest/v1/webhooks", json={"url": receiver.url("/up")})
    down = await client.post(
        "/rest/v1/webhooks", json={"url": receiver.url("/down"), "events": ["invoice.failed"]}
    )
    assert up.status_code == down.status_code == 201
    started = clock.now()
    await write(database, started, 5, "invoice.paid")  # evt_1..5: go to /up only
    await write(database, started, 5, "invoice.failed", first=6)  # evt_6..10: /down fails
    relay = webhook_relay(database, clock, retention=timedelta(days=30), prune_every=0)
    try:
        await relay.run_until_idle()
        assert relay.stats.pruned == 0, "nothing is old yet"
        await write(database, started, 1, "invoice.paid", first=11)  # evt_11: not fanned out
        clock.advance(timedelta(days=1))
        await write(database, clock.now(), 1, "invoice.paid", first=12)  # evt_12: young

        clock.set(started + timedelta(days=31))
        async with database.write() as conn:  # the relay's prune statement, alone
            pruned = await DeliveryRepository(conn).prune(clock.now() - timedelta(days=30), 500)
        assert pruned == 5
        assert await event_ids(database) == [f"evt_{i}" for i in range(6, 13)]
        for gone in range(1, 6):
            assert (await client.get(f"/rest/v1/events/evt_{gone}")).status_code == 404
        async with database.read() as conn:
            left = set(
                (await conn.execute(select(event_deliveries.c.event_id).distinct())).scalars()
            )
            tried = set(
                (await conn.execute(select(delivery_tries.c.event_id).distinct())).scalars()
            )
        assert left == tried == set(range(6, 11)), "their deliveries and tries go with them"

        # the relay runs on: /down fails again after three days, so it is disabled; its
        # waiting deliveries do not keep their events past the retention (documented)
        await relay.run_until_idle()
        status = (await client.get(f"/rest/v1/webhooks/{down.json()['id']}")).json()["status"]
        assert status == "disabled"
        await relay.run_until_idle()  # evt_11 fanned out and delivered, then pruned too
    finally:
        await relay.aclose()
        await receiver.stop()
    assert await event_ids(database) == ["evt_12"]
    assert receiver.ids("/up") == {f"evt_{i}": 1 for i in range(1, 13)}
    assert await _count(database, event_deliveries) == 1
