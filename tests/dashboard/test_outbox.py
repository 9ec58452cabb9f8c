"""Issue 20 item 6: the overview shows what the outbox owes each destination."""

from __future__ import annotations

import httpx

from antaeus.clock import ManualClock
from antaeus.storage.database import Database
from antaeus.storage.repositories.outbox import DeliveryRepository, DestinationRepository
from tests.dashboard.test_pages import browser, signed_in  # noqa: F401  (the fixtures)
from tests.notify.helpers import write_events


async def test_the_overview_shows_the_oldest_undelivered_event_per_destination(
    signed_in: httpx.AsyncClient,  # noqa: F811
    database: Database,
    clock: ManualClock,
) -> None:
    async with database.write() as conn:
        repo = DestinationRepository(conn)
        hook = await repo.create(
            "webhook", "https://hooks.example/x?token=s3cret", None, "whsec_dGVzdA==", clock.now()
        )
        await repo.ensure_amqp("amqp://guest:***@broker:5672/", clock.now())
    await write_events(database, clock.now(), 3, first=1)
    async with database.write() as conn:
        await DeliveryRepository(conn).fan_out(clock.now(), 100)
        await DestinationRepository(conn).retire_amqp(clock.now())
    page = await signed_in.get("/")
    assert page.status_code == 200, page.text
    assert "Events outbox" in page.text
    row = page.text.split(f'data-destination="{hook.id}"')[1].split("</tr>")[0]
    assert "https://hooks.example" in row
    assert "s3cret" not in row
    assert ">3<" in row
    assert "evt_1" in row
    assert "enabled" in row
    assert "retired" in page.text
