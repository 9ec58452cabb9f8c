"""Publishing every event to RabbitMQ (aio-pika), with publisher confirms.

The relay connects when it starts and declares the durable topic exchange
`antaeus.events` then (consumers can bind at once, before any event). Each
event goes to that exchange with the event
type as routing key, as a persistent message whose `message_id` is the event
id and whose body is the event's JSON. A delivery counts only when the broker
confirmed it (`Basic.Ack`); a nack, a lost connection or no confirm within the
timeout is a failed try, tried again with backoff by the relay (so a consumer
may see an event twice: deduplicate by `message_id`). After a failure the
connection is dropped and the next try connects anew: the relay reconnects by
itself, and a broker outage delays deliveries without blocking anything else.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

from antaeus.exactjson import rfc3339
from antaeus.notify.envelope import event_id
from antaeus.notify.webhooks import TryResult
from antaeus.security import mask_url, scrub
from antaeus.storage.repositories.outbox import Claimed

EXCHANGE: Final = "antaeus.events"
TIMEOUT_SECONDS: Final = 10.0


class BrokerPublisher:
    """The `amqp` destination kind: one connection and one confirming channel per process."""

    kind = "amqp"
    max_in_flight = 64  # publishes awaiting their confirm on the one channel

    def __init__(self, url: str, timeout: float = TIMEOUT_SECONDS) -> None:
        self.url = url
        self.url_shown = mask_url(url)
        self.timeout = timeout
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._connecting = asyncio.Lock()

    async def _ready(self) -> AbstractExchange:
        async with self._connecting:
            channel = self._channel
            if self._exchange is not None and channel is not None and not channel.is_closed:
                return self._exchange
            await self._drop()
            self._connection = await aio_pika.connect(self.url, timeout=self.timeout)
            self._channel = await self._connection.channel(publisher_confirms=True)
            self._exchange = await self._channel.declare_exchange(
                EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
            )
            return self._exchange

    async def connect(self) -> None:
        """Reach the broker now and declare the exchange (the relay does at its start), so
        that consumers can bind their queues before the first event is published."""
        try:
            async with asyncio.timeout(self.timeout):
                await self._ready()
        except Exception as exc:
            await self._drop()
            raise ConnectionError(scrub(f"{type(exc).__name__}: {exc}", self.url)) from None

    async def deliver(self, claimed: Claimed) -> TryResult:
        event = claimed.event
        started = time.monotonic()

        def took() -> int:
            return int((time.monotonic() - started) * 1000)

        message = aio_pika.Message(
            event.body().encode(),
            message_id=event_id(event.id),
            type=event.type,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers={"createdAt": rfc3339(event.created_at)},
        )
        try:
            async with asyncio.timeout(self.timeout):
                exchange = await self._ready()
                await exchange.publish(message, routing_key=event.type, mandatory=False)
        except TimeoutError:
            await self._drop()
            return TryResult(False, None, f"no confirm within {self.timeout:g} s", took())
        except Exception as exc:  # nack, closed channel, refused connection, ...
            await self._drop()
            why = scrub(f"{type(exc).__name__}: {exc}", self.url)
            return TryResult(False, None, why[:500], took())
        return TryResult(True, None, None, took())

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        self._channel = None
        self._exchange = None
        if connection is not None:
            try:
                await asyncio.wait_for(connection.close(), timeout=2)
            except Exception:  # already gone: nothing more to close
                return

    async def aclose(self) -> None:
        async with self._connecting:
            await self._drop()
