"""The use cases live in billing/service.py: every caller's change is logged and counted.

The API's actions and triggers, `antaeus bill` and the scheduler all go through
it, so none can change the database without its log line and metric.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from structlog.testing import capture_logs

from antaeus.billing import service
from antaeus.billing.runs import Scheduler
from antaeus.cli.billing import _bill_direct
from antaeus.clock import ManualClock
from antaeus.config import Settings
from antaeus.domain.errors import ActionRefusedError, InvoiceNotFoundError
from antaeus.domain.invoice import InvoiceStatus
from antaeus.domain.policy import PolicySettings
from antaeus.simulators.simulated import SimulatedPaymentProvider
from antaeus.storage.database import Database
from antaeus.storage.tables import events
from tests.api.test_billing_api import (
    failed_invoice,
    new_customer,
    new_invoice,
    review_invoice,
    simulator,  # noqa: F401  (the fixture)
)


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def actions_counted(action: str) -> float:
    return counted("antaeus_invoice_actions_total", action=action)


def runs_counted(trigger: str) -> float:
    return counted("antaeus_runs_opened_total", trigger=trigger)


async def test_api_actions_are_logged_and_counted_by_the_service(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    token: str,
    simulator: SimulatedPaymentProvider,  # noqa: F811
) -> None:
    failed = await failed_invoice(client, database, clock, simulator)
    review, _ = await review_invoice(client, database, clock)
    pending = await new_invoice(client, await new_customer(client), due_at="2027-01-01T00:00:00Z")
    names = ("retried", "resolved_charged", "voided")
    before = {a: actions_counted(a) for a in names}
    with capture_logs() as logs:
        for iid, path, body in [
            (failed, "retry", {"note": "fixed"}),
            (review, "resolve", {"charged": True, "chargeId": "ch_seen"}),
            (pending, "void", None),
        ]:
            response = await client.post(f"/rest/v1/invoices/{iid}/{path}", json=body)
            assert response.status_code == 200, response.text
    lines = [e for e in logs if e["event"] == "invoice_action"]
    assert lines == [
        {
            "event": "invoice_action",
            "invoice_id": failed,
            "action": "retried",
            "actor": "tester",
            "from_status": "FAILED",
            "status": "PENDING",
            "log_level": "info",
        },
        {
            "event": "invoice_action",
            "invoice_id": review,
            "action": "resolved_charged",
            "actor": "tester",
            "from_status": "REVIEW",
            "status": "PAID",
            "log_level": "info",
        },
        {
            "event": "invoice_action",
            "invoice_id": pending,
            "action": "voided",
            "actor": "tester",
            "from_status": "PENDING",
            "status": "VOID",
            "log_level": "info",
        },
    ]
    assert token not in repr(logs)  # the token's name, never the token
    assert {a: actions_counted(a) - before[a] for a in names} == dict.fromkeys(names, 1.0)


async def test_actions_write_their_events_in_the_outbox(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    review, _ = await review_invoice(client, database, clock)
    response = await client.post(
        f"/rest/v1/invoices/{review}/resolve",
        json={"charged": True, "chargeId": "ch_seen", "note": "in the dashboard"},
    )
    assert response.status_code == 200, response.text
    async with database.read() as conn:
        rows = (
            await conn.execute(
                select(events.c.type, events.c.run_id, events.c.payload)
                .where(events.c.invoice_id == review)
                .order_by(events.c.id)
            )
        ).all()
    assert [r.type for r in rows] == ["invoice.created", "invoice.review", "invoice.resolved"]
    assert rows[-1].run_id is None
    data = json.loads(rows[-1].payload)
    assert data["action"] == {
        "action": "resolved_charged",
        "actor": "tester",
        "note": "in the dashboard",
        "chargeId": "ch_seen",
        "fromStatus": "REVIEW",
        "toStatus": "PAID",
    }
    assert (data["invoice"]["id"], data["invoice"]["status"]) == (review, "PAID")


async def test_refusals_are_domain_errors_and_say_nothing(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    iid = await new_invoice(client, await new_customer(client))
    before = actions_counted("retried")
    with capture_logs() as logs:
        with pytest.raises(InvoiceNotFoundError) as missing:
            await service.void(database, clock, 10**12, actor="ops")
        with pytest.raises(ActionRefusedError) as refused:
            await service.retry(database, clock, iid, actor="ops")
    assert missing.value.invoice_id == 10**12
    assert (refused.value.status, str(refused.value)) == (
        InvoiceStatus.PENDING,
        f"invoice {iid} is PENDING",
    )
    assert [e for e in logs if e["event"] == "invoice_action"] == []
    assert actions_counted("retried") == before
    # the API answers them as before: 404 not_found, 409 invalid_state with the status
    response = await client.post(f"/rest/v1/invoices/{iid}/retry")
    assert response.status_code == 409
    assert response.json() == {
        "error": "invalid_state",
        "message": f"invoice {iid} is PENDING",
        "status": "PENDING",
    }
    response = await client.post(f"/rest/v1/invoices/{10**12}/void")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_the_cli_bill_opens_its_run_through_the_service(
    database: Database, database_url: str
) -> None:
    settings = Settings(
        DATABASE_URL=database_url, SIMULATED_STATE=":memory:", SIMULATED_FAILURE_RATE=0
    )
    before = runs_counted("cli")
    with capture_logs() as logs:
        followed, _stopping, _stats, _waiting = await _bill_direct(
            settings, time.monotonic() + 30, 1
        )
    [state] = followed  # no run was left open: one new run
    assert state["status"] == "completed"
    assert [(e["run_id"], e["trigger"]) for e in logs if e["event"] == "run_opened"] == [
        (state["id"], "cli")
    ]
    assert runs_counted("cli") == before + 1


async def test_the_scheduler_opens_its_run_through_the_service(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    await new_invoice(client, await new_customer(client))
    before = runs_counted("schedule")
    scheduler = Scheduler(database, clock, PolicySettings(), "automatic")
    with capture_logs() as logs:
        run_id = await scheduler.tick()
    assert run_id is not None
    assert [(e["run_id"], e["trigger"]) for e in logs if e["event"] == "run_opened"] == [
        (run_id, "schedule")
    ]
    assert runs_counted("schedule") == before + 1


async def test_a_run_opened_in_a_transaction_that_fails_is_not_announced(
    database: Database, clock: ManualClock
) -> None:
    class BoomError(Exception):
        pass

    async def fails() -> None:
        async with service.RunOpening() as opening, database.write() as conn:
            await opening.open_in(conn, clock.now(), PolicySettings(), "api")
            raise BoomError  # rolled back: no run was opened

    before = runs_counted("api")
    with capture_logs() as logs:
        with pytest.raises(BoomError):
            await fails()
        async with service.RunOpening() as opening:
            async with database.write() as conn:
                await opening.open_in(conn, clock.now(), PolicySettings(), "api")
            opening.discard()  # e.g. the Idempotency-Key's first use answered instead
    assert [e for e in logs if e["event"] == "run_opened"] == []
    assert runs_counted("api") == before
    with pytest.raises(RuntimeError, match="outside"):
        async with database.write() as conn:
            await service.RunOpening().open_in(conn, clock.now(), PolicySettings(), "api")
