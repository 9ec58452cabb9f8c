"""Webhooks end to end: the API makes an endpoint, the relay POSTs to a real local receiver.

Signatures are checked by the Standard Webhooks reference library, not by our code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from antaeus.clock import ManualClock
from antaeus.notify.relay import WEBHOOK_GIVE_UP, WEBHOOK_SCHEDULE
from antaeus.storage.database import Database
from antaeus.storage.tables import delivery_tries, event_deliveries
from tests.notify.helpers import (
    HUGE,
    Receiver,
    deliveries,
    event_ids,
    free_port,
    settled,
    webhook_relay,
)
from tests.notify.helpers import write_events as write


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    try:
        yield r
    finally:
        await r.stop()


async def add_webhook(client: httpx.AsyncClient, url: str, events: list[str] | None = None) -> dict:
    body: dict[str, object] = {"url": url}
    if events is not None:
        body["events"] = events
    answer = await client.post("/rest/v1/webhooks", json=body)
    assert answer.status_code == 201, answer.text
    made: dict = answer.json()
    return made


async def test_every_event_arrives_signed_and_filtered(
    client: httpx.AsyncClient, database: Database, clock: ManualClock, receiver: Receiver
) -> None:
    everything = await add_webhook(client, receiver.url("/all"))
    failed_only = await add_webhook(client, receiver.url("/failed"), ["invoice.failed"])
    assert everything["status"] == "enabled"
    assert everything["events"] == ["*"]
    assert everything["secret"].startswith("whsec_")
    assert failed_only["events"] == ["invoice.failed"]
    await write(database, clock.now(), 30, "invoice.paid")
    await write(database, clock.now(), 20, "invoice.failed", first=100)

    relay = webhook_relay(database, clock)
    try:
        await relay.run_until_idle()
    finally:
        await relay.aclose()

    ids = await event_ids(database)
    assert len(ids) == 50
    assert receiver.ids("/all") == {i: 1 for i in ids}
    assert set(receiver.ids("/failed")) == {
        h.id for h in receiver.ok("/all") if h.json()["type"] == "invoice.failed"
    }
    assert len(receiver.ok("/failed")) == 20
    for hit, secret in [(h, everything["secret"]) for h in receiver.ok("/all")] + [
        (h, failed_only["secret"]) for h in receiver.ok("/failed")
    ]:
        Webhook(secret).verify(hit.body, hit.headers)  # raises if the signature is wrong
        envelope = hit.json()
        assert set(envelope) == {"id", "type", "createdAt", "data"}
        assert hit.id == envelope["id"]
        assert isinstance(envelope["data"], dict)
        assert hit.headers["webhook-signature"].startswith("v1,")
        assert hit.headers["Content-Type"] == "application/json"
    # the other endpoint's secret does not verify
    with pytest.raises(WebhookVerificationError):
        Webhook(failed_only["secret"]).verify(
            receiver.ok("/all")[0].body, receiver.ok("/all")[0].headers
        )
    # and each envelope is what GET /events/{id} answers
    sample = receiver.ok("/all")[0]
    await settled(database)
    assert (await client.get(f"/rest/v1/events/{sample.id}")).json() == sample.json()


async def test_a_receiver_down_for_a_while_gets_every_event_once(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    port = free_port()  # nothing listens there yet: connection refused
    made = await add_webhook(client, f"http://127.0.0.1:{port}/hook")
    await write(database, clock.now(), 40)
    relay = webhook_relay(database, clock)
    receiver = Receiver(fail_first={"/hook": 25})  # up later, answering 500 at first
    try:
        await relay.run_until_idle()  # every try refused
        rows = await deliveries(database)
        assert len(rows) == 40
        assert all(r.tries == 1 and r.delivered_at is None for r in rows)
        assert all(r.last_error for r in rows)
        await receiver.start(port)
        for _ in range(10):
            clock.advance(timedelta(hours=3))  # past any next try so far
            await write(database, clock.now(), 2, first=1000 + _ * 2)  # more meanwhile
            await relay.run_until_idle()
            if all(r.delivered_at is not None for r in await deliveries(database)):
                break
    finally:
        await relay.aclose()
        await receiver.stop()
    ids = await event_ids(database)
    assert receiver.ids() == {i: 1 for i in ids}, "each event delivered exactly once"
    assert len([h for h in receiver.hits if h.status == 500]) == 25
    for hit in receiver.ok():
        Webhook(made["secret"]).verify(hit.body, hit.headers)
    rows = await deliveries(database)
    assert all(r.delivered_at is not None and r.lease_owner is None for r in rows)


async def _delivery(db: Database) -> object:
    async with db.read() as conn:
        return (await conn.execute(select(event_deliveries))).one()


async def test_retries_follow_the_schedule_then_three_days_disable(
    client: httpx.AsyncClient, database: Database, clock: ManualClock, receiver: Receiver
) -> None:
    receiver.modes["/hook"] = "fail"
    made = await add_webhook(client, receiver.url())
    await write(database, clock.now(), 1)
    relay = webhook_relay(database, clock)
    started = clock.now()
    waits: list[timedelta] = []
    try:
        for tries in range(1, 40):
            await relay.run_until_idle()
            row = await _delivery(database)
            assert row.tries == tries
            assert row.delivered_at is None
            status = (await client.get(f"/rest/v1/webhooks/{made['id']}")).json()["status"]
            if status == "disabled":
                break
            waits.append(row.next_try_at - clock.now())
            clock.set(row.next_try_at)
        else:
            pytest.fail("never disabled")
        # ~5 s, 5 min, 30 min, 2 h, 5 h, 10 h, then every 10 h (±10% jitter)
        for n, wait in enumerate(waits):
            expected = WEBHOOK_SCHEDULE[min(n, len(WEBHOOK_SCHEDULE) - 1)]
            assert expected * 0.9 <= wait <= expected * 1.1, (n, wait)
        assert len(waits) > len(WEBHOOK_SCHEDULE)
        # disabled at the first failed try three days after the first failure, not before
        assert clock.now() - started >= WEBHOOK_GIVE_UP
        assert clock.now() - started - waits[-1] < WEBHOOK_GIVE_UP
        shown = (await client.get(f"/rest/v1/webhooks/{made['id']}")).json()
        assert shown["status"] == "disabled"
        assert shown["disabledAt"]
        assert shown["failingSince"]
        listed = (await client.get("/rest/v1/webhooks")).json()
        assert [w["status"] for w in listed] == ["disabled"]
        # disabled: nothing is tried any more, however long we wait; new events wait too
        hits = len(receiver.hits)
        await write(database, clock.now(), 1, first=2)
        clock.advance(timedelta(days=2))
        await relay.run_until_idle()
        assert len(receiver.hits) == hits
        # a person fixes the receiver and enables it: every waiting event arrives
        receiver.modes["/hook"] = "ok"
        enabled = await client.post(f"/rest/v1/webhooks/{made['id']}/enable")
        assert enabled.status_code == 200
        assert enabled.json()["status"] == "enabled"
        assert enabled.json()["failingSince"] is None
        assert "secret" not in enabled.json()
        await relay.run_until_idle()
    finally:
        await relay.aclose()
    assert receiver.ids() == {i: 1 for i in await event_ids(database)}
    assert len(receiver.ids()) == 2


async def test_the_deliveries_endpoint_lists_each_try(
    client: httpx.AsyncClient, database: Database, clock: ManualClock, receiver: Receiver
) -> None:
    receiver.fail_first["/hook"] = 1
    made = await add_webhook(client, receiver.url())
    await write(database, clock.now(), 1)
    relay = webhook_relay(database, clock)
    try:
        await relay.run_until_idle()
        clock.advance(timedelta(seconds=6))
        await relay.run_until_idle()
    finally:
        await relay.aclose()
    answer = await client.get(f"/rest/v1/webhooks/{made['id']}/deliveries")
    assert answer.status_code == 200
    tries = answer.json()
    assert [t["delivered"] for t in tries] == [True, False]  # newest first
    assert {t["eventId"] for t in tries} == {"evt_1"}
    assert [t["httpStatus"] for t in tries] == [200, 500]
    assert tries[0]["error"] is None
    assert "500" in tries[1]["error"]
    assert all(isinstance(t["durationMs"], int) and t["durationMs"] >= 0 for t in tries)
    assert tries[0]["triedAt"] > tries[1]["triedAt"]
    page = await client.get(f"/rest/v1/webhooks/{made['id']}/deliveries?limit=1")
    assert len(page.json()) == 1
    assert 'rel="next"' in page.headers["Link"]
    following = page.headers["Link"].split(">")[0].lstrip("<")
    assert [t["delivered"] for t in (await client.get(following)).json()] == [False]
    assert (await client.get("/rest/v1/webhooks/999/deliveries")).status_code == 404


@pytest.mark.parametrize("mode", ["hang", "redirect", "huge", "trickle"])
async def test_a_bad_receiver_is_a_bounded_failed_try(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    receiver: Receiver,
    mode: str,
) -> None:
    receiver.modes["/hook"] = mode
    made = await add_webhook(client, receiver.url())
    await write(database, clock.now(), 1)
    timeout = 1.5
    relay = webhook_relay(database, clock, timeout=timeout)
    started = time.monotonic()
    try:
        await relay.run_until_idle()
    finally:
        await relay.aclose()
    took = time.monotonic() - started
    assert took < timeout + 1.0, f"{mode}: {took:.1f} s"
    row = (await deliveries(database))[0]
    assert row.delivered_at is None, mode
    assert row.tries == 1
    assert row.next_try_at > clock.now()
    async with database.read() as conn:
        tried = (await conn.execute(select(delivery_tries))).one()
    assert tried.ok == 0
    assert tried.duration_ms <= (timeout + 0.5) * 1000
    shown = (await client.get(f"/rest/v1/webhooks/{made['id']}/deliveries")).json()[0]
    assert shown["delivered"] is False
    assert shown["error"]
    if mode == "redirect":
        assert shown["httpStatus"] == 302
        assert "redirect" in shown["error"]
        assert [h.path for h in receiver.hits] == ["/hook"], "the redirect is not followed"
    if mode == "huge":
        assert receiver.sent_bytes < HUGE // 4, "the answer was not read to its end"
    if mode in ("hang", "trickle"):
        assert "no answer within" in shown["error"]


async def test_a_hanging_endpoint_does_not_delay_another(
    client: httpx.AsyncClient, database: Database, clock: ManualClock, receiver: Receiver
) -> None:
    # both on the same host and port: the connection pool must not be shared between them
    receiver.modes["/hang"] = "hang"
    await add_webhook(client, receiver.url("/hang"))
    await add_webhook(client, receiver.url("/ok"))
    await write(database, clock.now(), 60)
    relay = webhook_relay(database, clock, timeout=5.0, poll_interval=0.02)
    stop = asyncio.Event()
    started = time.monotonic()
    task = asyncio.create_task(relay.run(stop))
    try:
        while len(receiver.ok("/ok")) < 60 and time.monotonic() - started < 4.0:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        took = time.monotonic() - started
        assert len(receiver.ok("/ok")) == 60, "the healthy endpoint waited for the hanging one"
        assert took < 2.5, f"{took:.1f} s"
        hanging = [h for h in receiver.hits if h.path == "/hang"]
        assert 0 < len(hanging) <= relay.settings.per_destination
    finally:
        stop.set()
        await task
        await relay.aclose()


async def test_webhook_secret_is_shown_only_on_create(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    made = await add_webhook(
        client,
        "https://hooks.example.com/antaeus?x=1",
        ["invoice.paid", "invoice.failed", "invoice.paid"],
    )
    assert set(made) == {
        "id",
        "url",
        "events",
        "status",
        "secret",
        "createdAt",
        "failingSince",
        "disabledAt",
    }
    assert made["events"] == ["invoice.failed", "invoice.paid"]
    one = (await client.get(f"/rest/v1/webhooks/{made['id']}")).json()
    listed = (await client.get("/rest/v1/webhooks")).json()
    assert "secret" not in one
    assert all("secret" not in w for w in listed)
    assert made["secret"] not in str(one) + str(listed)
    assert {k: v for k, v in made.items() if k != "secret"} == one
    assert (await client.delete(f"/rest/v1/webhooks/{made['id']}")).status_code == 204
    assert (await client.get(f"/rest/v1/webhooks/{made['id']}")).status_code == 404
    assert (await client.delete(f"/rest/v1/webhooks/{made['id']}")).status_code == 404
    assert (await client.post(f"/rest/v1/webhooks/{made['id']}/enable")).status_code == 404


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"url": "ftp://hooks.example.com/x"}, "http"),
        ({"url": "file:///etc/passwd"}, "http"),
        ({"url": "https://user:pw@hooks.example.com/x"}, "credentials"),
        ({"url": "https://user@hooks.example.com/x"}, "credentials"),
        ({"url": "https://hooks.example.com/" + "a" * 2030}, "url"),
        ({"url": "https:///nohost"}, "host"),
        ({"url": "https://hooks.example.com/\x00"}, "url"),
        ({"url": ""}, "url"),
        ({"url": "https://hooks.example.com/", "events": ["invoice.exploded"]}, "invoice.exploded"),
        ({"url": "https://hooks.example.com/", "events": "invoice.paid"}, "events"),
        ({"url": "https://hooks.example.com/", "secret": "mine"}, "secret"),
        ({}, "url"),
    ],
    ids=[
        "ftp",
        "file",
        "password",
        "user",
        "too-long",
        "no-host",
        "nul",
        "empty",
        "unknown-type",
        "events-not-list",
        "extra-field",
        "missing",
    ],
)
async def test_webhooks_api_refuses_bad_input(
    client: httpx.AsyncClient, body: dict, named: str
) -> None:
    answer = await client.post("/rest/v1/webhooks", json=body)
    assert answer.status_code == 422, answer.text
    assert named in answer.text
    assert (await client.get("/rest/v1/webhooks")).json() == []


async def test_a_url_of_2048_characters_is_taken(client: httpx.AsyncClient) -> None:
    url = "https://hooks.example.com/" + "a" * (2048 - 26)
    assert len(url) == 2048
    assert (await client.post("/rest/v1/webhooks", json={"url": url})).status_code == 201
    longer = await client.post("/rest/v1/webhooks", json={"url": url + "a"})
    assert longer.status_code == 422


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/rest/v1/webhooks/abc", 422),
        ("/rest/v1/webhooks/1.5", 422),
        ("/rest/v1/webhooks/0", 422),
        ("/rest/v1/webhooks/99999999999999999999999", 422),
        ("/rest/v1/webhooks/12345", 404),
        ("/rest/v1/webhooks/12345/deliveries", 404),
        ("/rest/v1/webhooks/x/deliveries", 422),
    ],
)
async def test_webhook_ids(client: httpx.AsyncClient, path: str, status: int) -> None:
    assert (await client.get(path)).status_code == status
