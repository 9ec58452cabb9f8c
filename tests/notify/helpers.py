"""A real local webhook receiver (aiohttp, on 127.0.0.1) and helpers to write and relay events."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import select, text

from antaeus.clock import Clock
from antaeus.config import Settings
from antaeus.notify.relay import Relay, RelaySettings, Sender, WebhookDestinations
from antaeus.notify.webhooks import WebhookSender
from antaeus.storage.database import Database
from antaeus.storage.repositories.billing import BillingRepository
from antaeus.storage.tables import event_deliveries, events

HUGE = 100 * 1024 * 1024


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers each path as `modes` says (default `ok`); records every request.

    Modes: ok (200), fail (500), hang (never answers), redirect (302 to /target),
    huge (200 with a 100 MB body, streamed), trickle (200, then a byte every 50 ms).
    `fail_first[path] = n`: the first n requests to that path answer 500.
    """

    modes: dict[str, str] = field(default_factory=dict)
    fail_first: dict[str, int] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    sent_bytes: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None

    async def start(self, port: int = 0) -> Receiver:
        app = web.Application(client_max_size=1024**2)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ok(self, path: str | None = None) -> list[Hit]:
        return [h for h in self.hits if 200 <= h.status < 300 and path in (None, h.path)]

    def ids(self, path: str | None = None) -> Counter[str]:
        return Counter(h.id for h in self.ok(path))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        path = request.path
        mode = self.modes.get(path, "ok")
        if self.fail_first.get(path, 0) > 0:
            self.fail_first[path] -= 1
            mode = "fail"
        status = {"fail": 500, "redirect": 302, "hang": 0}.get(mode, 200)
        self.hits.append(Hit(path, dict(request.headers), body, status, time.monotonic()))
        if mode == "ok":
            return web.Response(status=200, text="thanks")
        if mode == "fail":
            return web.Response(status=500, text="down")
        if mode == "redirect":
            raise web.HTTPFound("/target")
        if mode == "hang":
            await asyncio.sleep(3600)
        answer = web.StreamResponse(status=200)
        if mode == "huge":
            answer.content_length = HUGE
        await answer.prepare(request)
        chunk = b"x" * 65536 if mode == "huge" else b"x"
        try:
            for _ in range(HUGE // len(chunk)):
                await answer.write(chunk)
                self.sent_bytes += len(chunk)
                if mode == "trickle":
                    await asyncio.sleep(0.05)
        except (ConnectionError, RuntimeError):  # the client hung up: as it should
            pass
        return answer


def allowing_private(database_url: str) -> Settings:
    """The tests' settings with ANTAEUS_WEBHOOK_ALLOW_PRIVATE=true: they deliver to 127.0.0.1."""
    return Settings(
        DATABASE_URL=database_url,
        API_TOKEN=None,
        TOKEN_CACHE_SECONDS=0,
        WEBHOOK_ALLOW_PRIVATE=True,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def write_events(
    db: Database, now: datetime, n: int, type: str = "invoice.paid", first: int = 1
) -> None:
    """n events as the worker writes them (a JSON object each; its fields are not ours)."""
    async with db.write() as conn:
        await BillingRepository(conn).add_events(
            [
                (type, i, None, json.dumps({"invoiceId": i, "n": i}))
                for i in range(first, first + n)
            ],
            now,
        )


async def event_ids(db: Database) -> list[str]:
    async with db.read() as conn:
        return [f"evt_{i}" for i in (await conn.execute(select(events.c.id))).scalars()]


async def deliveries(db: Database) -> list[Any]:
    async with db.read() as conn:
        return list(
            (await conn.execute(select(event_deliveries).order_by(event_deliveries.c.id))).all()
        )


def webhook_relay(
    db: Database,
    clock: Clock,
    timeout: float = 10.0,
    relay_id: str = "test-relay",
    senders: list[Sender] | None = None,
    **settings: Any,
) -> Relay:
    # the receiver is on 127.0.0.1: allowed as ANTAEUS_WEBHOOK_ALLOW_PRIVATE=true allows it
    return Relay(
        db,
        clock,
        senders or [WebhookDestinations(WebhookSender(timeout=timeout, allow_private=True))],
        RelaySettings(**settings),
        relay_id=relay_id,
        rng=random.Random(7),
    )


async def settled(db: Database, within: float = 30.0) -> None:
    """Until every committed event is listed by GET /rest/v1/events (PostgreSQL: below the
    horizon; a transaction another test holds open on the same server delays that)."""
    if db.is_sqlite:
        return
    deadline = time.monotonic() + within
    query = text(
        "SELECT coalesce(max(xact_id), 0) < pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
        " FROM events"
    )
    while True:
        async with db.read() as conn:
            if await conn.scalar(query):
                return
        if time.monotonic() > deadline:
            raise TimeoutError("an open transaction held the events list back for 30 s")
        await asyncio.sleep(0.05)
