"""Issue 20 item 4: every lease owner fits its column, and a relay that cannot claim says so.

A host name of 80 characters made the relay's owner (host + pid) longer than the
64-character `lease_owner` column: on PostgreSQL every claim failed, nothing was
ever delivered, and the log said only `relay_failed`.
"""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from antaeus.billing.worker import Worker, new_worker_id
from antaeus.clock import ManualClock
from antaeus.domain.policy import PolicySettings
from antaeus.notify.relay import Relay, WebhookDestinations
from antaeus.notify.webhooks import WebhookSender
from antaeus.simulators.simulated import SimulatedPaymentProvider
from antaeus.storage.database import Database
from antaeus.storage.repositories.outbox import DestinationRepository
from tests.conftest import NOW
from tests.notify.helpers import Receiver, deliveries, write_events

LONG_HOST = "build-agent-" + "x" * 60 + ".eu-west-1.compute.internal"  # 99 characters
COLUMN = 64


@pytest.fixture
def long_host(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(socket, "gethostname", lambda: LONG_HOST)
    return LONG_HOST


async def test_a_relay_on_a_long_host_name_claims_and_delivers(
    database: Database, clock: ManualClock, long_host: str
) -> None:
    receiver = await Receiver().start()
    async with database.write() as conn:
        await DestinationRepository(conn).create(
            "webhook", receiver.url(), None, "whsec_dGVzdA==", clock.now()
        )
    await write_events(database, clock.now(), 5)
    relay = Relay(
        database, clock, [WebhookDestinations(WebhookSender(timeout=5, allow_private=True))]
    )
    try:
        assert len(relay.id) <= COLUMN
        assert relay.id.startswith(long_host[:16])  # still says which machine
        await relay.run_until_idle()
    finally:
        await relay.aclose()
        await receiver.stop()
    assert len(receiver.ids()) == 5
    assert all(r.delivered_at is not None for r in await deliveries(database))


def test_every_owner_id_fits_its_column(long_host: str) -> None:
    assert len(new_worker_id()) <= COLUMN
    ids = {
        Relay(Database("sqlite:///unused.db"), ManualClock(NOW), [], relay_id="r" * 200).id,
        Worker(
            Database("sqlite:///unused.db"),
            SimulatedPaymentProvider(),
            ManualClock(NOW),
            PolicySettings(),
            worker_id="w" * 200,
        ).id,
    }
    assert all(len(i) <= COLUMN for i in ids)
    assert len(ids) == 2
    # two relays of one process are told apart (their leases are checked by owner)
    relays = [Relay(Database("sqlite:///unused.db"), ManualClock(NOW), []) for _ in range(2)]
    assert relays[0].id != relays[1].id
    assert all(len(r.id) <= COLUMN for r in relays)


def _gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name)


async def test_a_relay_that_cannot_claim_for_a_minute_says_so_loudly(
    tmp_path: Path,
    clock: ManualClock,
    app: FastAPI,
    client: httpx.AsyncClient,
) -> None:
    # a database the relay cannot use (its directory does not exist yet): every round fails
    broken = Database(f"sqlite:///{tmp_path / 'later' / 'antaeus.db'}")
    relay = Relay(broken, clock, [WebhookDestinations()], relay_id="stuck")
    app.state.relay = relay  # as the app's lifespan does for the relay it runs
    try:
        with capture_logs() as logs:
            await _stalls_then_recovers(tmp_path, clock, client, relay, broken, logs)
    finally:
        await relay.aclose()
        await broken.dispose()


async def _stalls_then_recovers(
    tmp_path: Path,
    clock: ManualClock,
    client: httpx.AsyncClient,
    relay: Relay,
    broken: Database,
    logs: list[dict[str, Any]],
) -> None:
    def said(event: str) -> list[dict[str, Any]]:
        return [line for line in logs if line["event"] == event]

    if True:
        assert (await client.get("/rest/v1/status")).json()["relay"]["state"] == "running"
        assert await relay.attempt() is None  # failed
        clock.advance(timedelta(seconds=30))
        assert await relay.attempt() is None
        assert _gauge("antaeus_relay_stalled") == 0
        assert not said("relay_cannot_claim")
        body = (await client.get("/rest/v1/status")).json()["relay"]
        assert body["state"] == "running"
        assert body["failingSince"] is not None

        clock.advance(timedelta(seconds=31))  # a minute and a second without a round
        assert await relay.attempt() is None
        [alarm] = said("relay_cannot_claim")
        assert alarm["log_level"] == "error"
        assert "OperationalError" in alarm["error"]
        assert _gauge("antaeus_relay_stalled") == 1
        body = (await client.get("/rest/v1/status")).json()["relay"]
        assert body["state"] == "failing"
        assert body["failingSince"] == "2026-11-22T12:00:00Z"
        assert "OperationalError" in body["lastError"]

        # the cause goes away: the next round succeeds, and everything says so
        (tmp_path / "later").mkdir()
        from antaeus.storage import migrate

        await migrate.upgrade(broken)
        assert await relay.attempt() is False  # a round, with nothing to do
        assert _gauge("antaeus_relay_stalled") == 0
        assert said("relay_recovered")
        body = (await client.get("/rest/v1/status")).json()["relay"]
        assert body == {"state": "running", "failingSince": None, "lastError": None}


async def test_status_says_when_this_process_runs_no_relay(client: httpx.AsyncClient) -> None:
    assert (await client.get("/rest/v1/status")).json()["relay"] is None
