"""The relay a process runs, from its settings."""

from __future__ import annotations

from datetime import timedelta

from antaeus.clock import Clock
from antaeus.config import Settings
from antaeus.notify.relay import Relay, RelaySettings, Sender, WebhookDestinations
from antaeus.notify.webhooks import WebhookSender
from antaeus.storage.database import Database


def build_relay(db: Database, clock: Clock, settings: Settings) -> Relay:
    senders: list[Sender] = [
        WebhookDestinations(WebhookSender(allow_private=settings.WEBHOOK_ALLOW_PRIVATE))
    ]
    if settings.AMQP_URL is not None:
        from antaeus.notify.amqp import BrokerPublisher

        senders.append(BrokerPublisher(settings.AMQP_URL.get_secret_value()))
    return Relay(
        db,
        clock,
        senders,
        RelaySettings(
            concurrency=settings.RELAY_CONCURRENCY,
            poll_interval=settings.RELAY_POLL_INTERVAL,
            retention=timedelta(seconds=settings.EVENT_RETENTION),
        ),
    )
