"""Relay throughput: one relay delivering N events to a webhook receiver and to RabbitMQ.

    python benchmarks/relay.py                                   # 20,000 events, SQLite
    python benchmarks/relay.py --database postgres               # PostgreSQL (re-created)
    python benchmarks/relay.py --target webhook --events 5000
    python benchmarks/billing_run.py --relay-compare --invoices 20000   # billing with/without

The webhook receiver is an aiohttp server in another process that answers 200 at once;
the broker is RabbitMQ at --amqp-url with a durable queue bound to `antaeus.events`
(deleted afterwards). The events are written before the clock starts; the relay runs
in this process with its default settings. Prints events/s per target. The PostgreSQL
database given (--postgres-url) is dropped and re-created.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

from antaeus.clock import SystemClock
from antaeus.notify.relay import (
    Relay,
    RelaySettings,
    Sender,
    WebhookDestinations,
    ensure_broker_destination,
)
from antaeus.notify.webhooks import WebhookSender, new_secret
from antaeus.storage import migrate
from antaeus.storage.database import Database
from antaeus.storage.repositories.billing import BillingRepository
from antaeus.storage.repositories.outbox import DestinationRepository

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.billing_run import recreate_pg


def _serve(port: int) -> None:
    from aiohttp import web

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def start_receiver() -> tuple[multiprocessing.Process, str]:
    """A webhook receiver in another process; answers its URL once it listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = multiprocessing.get_context("spawn").Process(target=_serve, args=(port,))
    process.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"http://127.0.0.1:{port}/hook"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the receiver did not start")


async def fresh_database(kind: str, pg_url: str, work: Path) -> Database:
    if kind == "postgres":
        await recreate_pg(pg_url)
        db = Database(pg_url)
    else:
        db = Database(f"sqlite:///{work / f'relay-{time.monotonic_ns()}.db'}")
    await migrate.upgrade(db)
    return db


async def write_events(db: Database, n: int) -> None:
    now = SystemClock().now()
    payload = json.dumps({"invoiceId": 1, "customerId": 1, "amount": "12.34", "currency": "EUR"})
    for first in range(0, n, 1000):
        async with db.write() as conn:
            await BillingRepository(conn).add_events(
                [("invoice.paid", i, None, payload) for i in range(first, min(n, first + 1000))],
                now,
            )


async def bench(kind: str, pg_url: str, work: Path, target: str, n: int, amqp_url: str) -> float:
    db = await fresh_database(kind, pg_url, work)
    clock = SystemClock()
    senders: list[Sender]
    receiver = None
    queue = None
    try:
        if target == "webhook":
            receiver, url = start_receiver()
            async with db.write() as conn:
                await DestinationRepository(conn).create(
                    "webhook", url, None, new_secret(), clock.now()
                )
            # the receiver is on 127.0.0.1: ANTAEUS_WEBHOOK_ALLOW_PRIVATE=true, as it were
            senders = [WebhookDestinations(WebhookSender(allow_private=True))]
        else:
            import aio_pika

            from antaeus.notify.amqp import EXCHANGE, BrokerPublisher

            publisher = BrokerPublisher(amqp_url)
            await ensure_broker_destination(db, clock, publisher.url_shown)
            connection = await aio_pika.connect(amqp_url)
            channel = await connection.channel()
            exchange = await channel.declare_exchange(
                EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(f"antaeus-bench-{os.getpid()}", durable=True)
            await queue.bind(exchange, "#")
            senders = [publisher]
        await write_events(db, n)
        relay = Relay(db, clock, senders, RelaySettings(), relay_id="bench")
        started = time.perf_counter()
        try:
            await relay.run_until_idle(within=900)
        finally:
            await relay.aclose()
        elapsed = time.perf_counter() - started
        assert relay.stats.delivered == n, relay.stats
        if queue is not None:
            declared = await queue.declare()
            assert declared.message_count is not None
            assert declared.message_count >= n, declared.message_count
            await queue.delete(if_unused=False, if_empty=False)
            await connection.close()
        return n / elapsed
    finally:
        if receiver is not None:
            receiver.terminate()
            receiver.join(10)
        await db.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--postgres-url", default="postgresql://postgres@127.0.0.1:5432/antaeus_bench_relay"
    )
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--target", choices=["webhook", "amqp", "both"], default="both")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="antaeus-relay-bench-"))
    targets = ["webhook", "amqp"] if args.target == "both" else [args.target]
    print(f"database: {args.database}; events: {args.events:,}; one relay, default settings")
    for target in targets:
        rate = await bench(
            args.database, args.postgres_url, work, target, args.events, args.amqp_url
        )
        print(f"{target}: {rate:,.0f} events/s")


if __name__ == "__main__":
    asyncio.run(main())
