"""Every event published to RabbitMQ (a real broker), and a broker outage that loses nothing.

Needs RabbitMQ at 127.0.0.1:5672 (guest/guest; CI has it): skipped, saying so, without it.
The outage test stops the broker's application with `rabbitmqctl stop_app` and always
starts it again.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aio_pika
import httpx
import pytest
from pydantic import ValidationError

from antaeus.clock import ManualClock
from antaeus.config import Settings, settings_error_message
from antaeus.notify.amqp import EXCHANGE, BrokerPublisher
from antaeus.notify.relay import WebhookDestinations, ensure_broker_destination
from antaeus.notify.webhooks import WebhookSender
from antaeus.storage.database import Database
from tests.cli.test_cli import Cli, _clean_env
from tests.notify.helpers import Receiver, deliveries, event_ids, webhook_relay
from tests.notify.helpers import write_events as write

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def _broker_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


needs_broker = pytest.mark.skipif(
    not _broker_up(), reason="RabbitMQ is not reachable at 127.0.0.1:5672: broker tests skipped"
)


@pytest.fixture
async def queue() -> AsyncIterator[str]:
    """A durable queue bound to antaeus.events with `#` (survives stop_app), deleted after."""
    name = f"antaeus-test-{secrets.token_hex(4)}"
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        q = await channel.declare_queue(name, durable=True)
        await q.bind(exchange, "#")
    try:
        yield name
    finally:
        for _ in range(30):  # the broker may still be coming back
            try:
                connection = await aio_pika.connect(AMQP_URL)
                async with connection:
                    channel = await connection.channel()
                    await channel.queue_delete(name)
                break
            except Exception:
                await asyncio.sleep(1)


async def consume(name: str, expected: int, within: float = 30.0) -> list[aio_pika.IncomingMessage]:
    """Messages from the queue until `expected` distinct ids came (or `within` passed)."""
    got: list[aio_pika.IncomingMessage] = []
    deadline = time.monotonic() + within
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        q = await channel.get_queue(name)
        while len({m.message_id for m in got}) < expected and time.monotonic() < deadline:
            message = await q.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            got.append(message)
        while (message := await q.get(no_ack=True, fail=False)) is not None:  # duplicates too
            got.append(message)
    return got


@needs_broker
async def test_every_event_is_published_once_persistent_with_its_id(
    database: Database, clock: ManualClock, queue: str
) -> None:
    publisher = BrokerPublisher(AMQP_URL)
    await ensure_broker_destination(database, clock, publisher.url_shown)
    await write(database, clock.now(), 40, "invoice.paid")
    await write(database, clock.now(), 10, "invoice.failed", first=100)
    relay = webhook_relay(database, clock, senders=[publisher])
    try:
        await relay.run_until_idle()
    finally:
        await relay.aclose()
    messages = await consume(queue, 50)
    ids = await event_ids(database)
    assert Counter(m.message_id for m in messages) == {i: 1 for i in ids}
    for m in messages:
        body = json.loads(m.body)
        assert set(body) == {"id", "type", "createdAt", "data"}
        assert body["id"] == m.message_id
        assert m.routing_key == body["type"] == m.type
        assert m.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert m.content_type == "application/json"
        assert m.exchange == EXCHANGE
        assert isinstance(body["data"], dict)
    assert Counter(m.routing_key for m in messages) == {"invoice.paid": 40, "invoice.failed": 10}
    assert all(r.delivered_at is not None for r in await deliveries(database))
    async with database.read() as conn:
        shown = await conn.exec_driver_sql("SELECT url FROM event_destinations WHERE kind='amqp'")
        assert "guest:guest" not in shown.scalar_one()


async def _rabbitmqctl(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    assert await asyncio.wait_for(process.wait(), 120) == 0, f"rabbitmqctl {' '.join(args)}"


async def _until(condition: object, within: float, clock: ManualClock | None = None) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await condition():  # type: ignore[operator]
            return True
        if clock is not None:
            clock.advance(timedelta(minutes=10))  # time passes: every backoff ends
        await asyncio.sleep(0.2)
    return False


@needs_broker
@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="rabbitmqctl is not installed")
async def test_a_broker_outage_delays_but_loses_nothing_and_webhooks_go_on(
    client: httpx.AsyncClient, database: Database, clock: ManualClock, queue: str
) -> None:
    receiver = await Receiver().start()
    answer = await client.post("/rest/v1/webhooks", json={"url": receiver.url()})
    assert answer.status_code == 201
    publisher = BrokerPublisher(AMQP_URL, timeout=3.0)
    relay = webhook_relay(
        database,
        clock,
        senders=[publisher, WebhookDestinations(WebhookSender(timeout=3.0, allow_private=True))],
        poll_interval=0.05,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    stopped = False
    try:
        await asyncio.sleep(0.5)  # the relay makes the broker's destination row
        await write(database, clock.now(), 30)

        async def all_delivered() -> bool:  # to the broker and the webhook
            rows = await deliveries(database)
            expected = 2 * len(await event_ids(database))
            return len(rows) == expected and all(r.delivered_at is not None for r in rows)

        assert await _until(all_delivered, 20)

        await _rabbitmqctl("stop_app")
        stopped = True
        await write(database, clock.now(), 30, first=1000)

        webhook = answer.json()["id"]

        async def webhooks_done() -> bool:  # received and recorded
            rows = await deliveries(database)
            mine = [r for r in rows if r.destination_id == webhook]
            return len(mine) == 60 and all(r.delivered_at is not None for r in mine)

        assert await _until(webhooks_done, 20), "webhook deliveries stopped with the broker"
        rows = await deliveries(database)
        waiting = [r for r in rows if r.delivered_at is None]
        assert len(waiting) == 30, "the broker's deliveries wait"
        assert len(receiver.ids()) == 60
        assert all(r.destination_id != webhook for r in waiting)
        assert any(r.tries >= 1 and r.last_error for r in waiting)  # tried (the rest claimed)
        assert not task.done(), "the relay kept running"
        # the API answers meanwhile
        assert (await client.get("/rest/v1/events?limit=1")).status_code == 200

        await _rabbitmqctl("start_app")
        stopped = False
        assert await _until(all_delivered, 60, clock), "the relay did not reconnect"
    finally:
        if stopped:
            await _rabbitmqctl("start_app")
        stop.set()
        await task
        await relay.aclose()
        await receiver.stop()
    assert not task.exception()
    messages = await consume(queue, 60)
    ids = await event_ids(database)
    assert len(ids) == 60
    assert set(Counter(m.message_id for m in messages)) == set(ids), "nothing lost"
    assert receiver.ids() == {i: 1 for i in ids}


@pytest.mark.parametrize("url", ["amqp://user:sekret@", "http://x", "amqp://user:sekret@h:99x"])
def test_a_malformed_amqp_url_is_refused_with_the_password_masked(url: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(DATABASE_URL="sqlite:///unused.db", AMQP_URL=url)
    message = settings_error_message(refused.value)
    assert message.startswith("ANTAEUS_AMQP_URL")
    assert "amqp://" in message
    assert "sekret" not in message
    assert "sekret" not in str(refused.value)


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_serve_and_worker_refuse_a_malformed_amqp_url_in_one_line(
    tmp_path: Path, command: str
) -> None:
    cli = Cli(
        tmp_path,
        _clean_env(ANTAEUS_AMQP_URL="amqp://user:sekret@", COLUMNS="80"),
        f"sqlite:///{tmp_path / 'antaeus.db'}",
    )
    done = cli.run(command, timeout=60)
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: invalid configuration: ANTAEUS_AMQP_URL"), lines
    assert "sekret" not in done.stderr + done.stdout
    assert "***" in lines[0]


@needs_broker
@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="rabbitmqctl is not installed")
async def test_the_exchange_is_declared_when_the_relay_starts_so_consumers_bind_at_once(
    database: Database, clock: ManualClock
) -> None:
    """Issue 20 item 17: before, `antaeus.events` existed only after the first publish, so a
    consumer starting first could not bind its queue (404 NOT_FOUND on the exchange)."""
    vhost = f"antaeus-test-{secrets.token_hex(4)}"  # a vhost of its own: no exchange yet
    await _rabbitmqctl("add_vhost", vhost)
    await _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    url = f"{AMQP_URL}{vhost}"
    publisher = BrokerPublisher(url)
    relay = webhook_relay(database, clock, senders=[publisher], poll_interval=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        connection = await aio_pika.connect(url)
        async with connection:
            found = None
            deadline = time.monotonic() + 10
            while found is None and time.monotonic() < deadline:
                channel = await connection.channel()
                try:  # passive: fails (and closes the channel) while it does not exist
                    found = await channel.get_exchange(EXCHANGE, ensure=True)
                except aio_pika.exceptions.ChannelClosed:
                    await asyncio.sleep(0.1)
            assert found is not None, "no event yet, and the exchange exists already"
            channel = await connection.channel()
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind(EXCHANGE, "#")
            await write(database, clock.now(), 1)
            message = await queue.get(timeout=None, fail=False)
            deadline = time.monotonic() + 20
            while message is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                message = await queue.get(fail=False)
            assert message is not None
            assert message.message_id == "evt_1"
            await message.ack()
    finally:
        stop.set()
        await task
        await relay.aclose()
        await _rabbitmqctl("delete_vhost", vhost)
