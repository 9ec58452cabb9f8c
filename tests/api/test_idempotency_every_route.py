"""Every creating or acting route honours `Idempotency-Key` (issue 22).

For each route: the first request acts; a repeat with the same key and body
answers the first answer (status, body, `Idempotent-Replayed: true`) and
creates or changes nothing (every table's rows, read before and after, are the
same). A test also reads the app's own routes: every one that is not a GET
declares the header, so a route added later without it fails here.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from antaeus.clock import ManualClock
from antaeus.simulators.simulated import SimulatedPaymentProvider
from antaeus.storage.database import Database
from antaeus.storage.tables import idempotency_keys, metadata
from tests.api.test_billing_api import (
    failed_invoice,
    new_customer,
    new_invoice,
    review_invoice,
    simulator,  # noqa: F401  (the fixture)
)

HOOK = "https://example.com/antaeus"


async def _rows(database: Database) -> dict[str, int]:
    """How many rows every table holds but the keys' own."""
    counts: dict[str, int] = {}
    async with database.read() as conn:
        for table in metadata.sorted_tables:
            if table is not idempotency_keys:
                counts[table.name] = int(await conn.scalar(select(func.count()).select_from(table)))
    return counts


async def _replayed(
    client: httpx.AsyncClient,
    database: Database,
    method: str,
    url: str,
    body: Any = None,
    *,
    status: int,
    key: str = "key-1",
) -> httpx.Response:
    """The first request acts; its repeat answers the same and changes nothing."""
    headers = {"Idempotency-Key": key}
    first = await client.request(method, url, json=body, headers=headers)
    assert first.status_code == status, first.text
    assert "idempotent-replayed" not in first.headers
    before = await _rows(database)
    for _ in range(2):
        again = await client.request(method, url, json=body, headers=headers)
        assert again.status_code == status, again.text
        assert again.content == first.content
        assert again.headers["idempotent-replayed"] == "true"
        if "location" in first.headers:
            assert again.headers["location"] == first.headers["location"]
    assert await _rows(database) == before
    return first


async def test_webhook_create_is_replayed_with_its_secret(
    client: httpx.AsyncClient, database: Database
) -> None:
    first = await _replayed(
        client, database, "POST", "/rest/v1/webhooks", {"url": HOOK}, status=201
    )
    assert first.json()["secret"].startswith("whsec_")
    assert first.headers["location"] == f"/rest/v1/webhooks/{first.json()['id']}"
    assert len((await client.get("/rest/v1/webhooks")).json()) == 1
    other = await client.post(
        "/rest/v1/webhooks", json={"url": HOOK + "/2"}, headers={"Idempotency-Key": "key-1"}
    )
    assert (other.status_code, other.json()["error"]) == (422, "idempotency_key_reused")


async def test_webhook_delete_is_replayed_as_204_not_404(
    client: httpx.AsyncClient, database: Database
) -> None:
    made = (await client.post("/rest/v1/webhooks", json={"url": HOOK})).json()
    first = await _replayed(
        client, database, "DELETE", f"/rest/v1/webhooks/{made['id']}", status=204
    )
    assert first.content == b""
    assert (await client.get(f"/rest/v1/webhooks/{made['id']}")).status_code == 404
    unkeyed = await client.delete(f"/rest/v1/webhooks/{made['id']}")
    assert unkeyed.status_code == 404  # without the key it is a request of its own


async def test_webhook_enable_is_replayed(client: httpx.AsyncClient, database: Database) -> None:
    made = (await client.post("/rest/v1/webhooks", json={"url": HOOK})).json()
    first = await _replayed(
        client, database, "POST", f"/rest/v1/webhooks/{made['id']}/enable", status=200
    )
    assert first.json()["status"] == "enabled"


async def test_invoice_retry_is_replayed_and_retries_once(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,  # noqa: F811
) -> None:
    iid = await failed_invoice(client, database, clock, simulator)
    first = await _replayed(
        client, database, "POST", f"/rest/v1/invoices/{iid}/retry", {"note": "fixed"}, status=200
    )
    assert first.json()["status"] == "PENDING"
    actions = (await client.get(f"/rest/v1/invoices/{iid}/actions")).json()
    assert [a["action"] for a in actions] == ["retried"]
    # the same key with another note is another request
    reused = await client.post(
        f"/rest/v1/invoices/{iid}/retry", json={"note": "x"}, headers={"Idempotency-Key": "key-1"}
    )
    assert reused.json()["error"] == "idempotency_key_reused"
    # no key: the retry of a PENDING invoice is refused as before
    refused = await client.post(f"/rest/v1/invoices/{iid}/retry")
    assert (refused.status_code, refused.json()["error"]) == (409, "invalid_state")


async def test_invoice_resolve_is_replayed(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    iid, _run = await review_invoice(client, database, clock)
    body = {"charged": True, "chargeId": "ch_1", "note": "seen in the provider"}
    first = await _replayed(
        client, database, "POST", f"/rest/v1/invoices/{iid}/resolve", body, status=200
    )
    assert first.json()["status"] == "PAID"


async def test_invoice_void_is_replayed(client: httpx.AsyncClient, database: Database) -> None:
    iid = await new_invoice(client, await new_customer(client), due_at="2027-01-01T00:00:00Z")
    first = await _replayed(client, database, "POST", f"/rest/v1/invoices/{iid}/void", status=200)
    assert first.json()["status"] == "VOID"


async def test_a_refused_action_stores_nothing_under_its_key(
    client: httpx.AsyncClient, database: Database
) -> None:
    iid = await new_invoice(client, await new_customer(client), due_at="2027-01-01T00:00:00Z")
    headers = {"Idempotency-Key": "too-early"}
    refused = await client.post(f"/rest/v1/invoices/{iid}/retry", headers=headers)
    assert (refused.status_code, refused.json()["error"]) == (409, "invalid_state")
    async with database.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(idempotency_keys)) == 0
    missing = await client.post("/rest/v1/invoices/999999/void", headers=headers)
    assert missing.status_code == 404


@pytest.mark.parametrize("action", ["retry", "void"])
async def test_bulk_actions_are_replayed(
    client: httpx.AsyncClient, database: Database, action: str
) -> None:
    cid = await new_customer(client)
    for _ in range(3):
        await new_invoice(client, cid, due_at="2027-01-01T00:00:00Z")
    body = {"customerId": cid, "note": "n"}
    first = await _replayed(
        client, database, "POST", f"/rest/v1/invoices/{action}", body, status=200
    )
    expected = {"matched": 3, "acted": 0 if action == "retry" else 3}
    assert {k: first.json()[k] for k in expected} == expected


async def test_billing_retry_is_replayed_with_the_same_run(
    client: httpx.AsyncClient, database: Database
) -> None:
    first = await _replayed(client, database, "POST", "/rest/v1/billing/retry", status=202)
    assert first.headers["location"] == f"/rest/v1/billing/runs/{first.json()['id']}"
    assert len((await client.get("/rest/v1/billing/runs")).json()) == 1


async def test_billing_trigger_is_replayed(client: httpx.AsyncClient, database: Database) -> None:
    await _replayed(client, database, "POST", "/rest/v1/billing", {"trigger": "api"}, status=202)


async def test_customer_create_and_patch_are_replayed(
    client: httpx.AsyncClient, database: Database
) -> None:
    made = await _replayed(
        client, database, "POST", "/rest/v1/customers", {"currency": "EUR"}, status=201
    )
    await _replayed(
        client,
        database,
        "PATCH",
        f"/rest/v1/customers/{made.json()['id']}",
        {"timezone": "Europe/Paris"},
        status=200,
        key="key-2",
    )


async def test_invoice_create_is_replayed(client: httpx.AsyncClient, database: Database) -> None:
    cid = await new_customer(client)
    body = {"customerId": cid, "amount": {"value": "10.00", "currency": "EUR"}}
    await _replayed(client, database, "POST", "/rest/v1/invoices", body, status=201)


async def test_plans_and_subscriptions_are_replayed(
    client: httpx.AsyncClient, database: Database
) -> None:
    plan = {
        "code": "pro",
        "name": "Pro",
        "amount": {"value": "30.00", "currency": "EUR"},
        "interval": "month",
        "trialDays": 30,
    }
    made = (await _replayed(client, database, "POST", "/rest/v1/plans", plan, status=201)).json()
    cid = await new_customer(client)
    sub = await _replayed(
        client,
        database,
        "POST",
        "/rest/v1/subscriptions",
        {"customerId": cid, "planId": made["id"]},
        status=201,
        key="key-2",
    )
    url = sub.headers["location"]
    await _replayed(
        client, database, "POST", f"{url}/change", {"quantity": 2}, status=200, key="key-3"
    )
    await _replayed(client, database, "POST", f"{url}/cancel", {}, status=200, key="key-4")
    await _replayed(client, database, "POST", f"{url}/reactivate", status=200, key="key-5")
    await _replayed(
        client, database, "POST", f"/rest/v1/plans/{made['id']}/archive", status=200, key="key-6"
    )


def test_every_route_that_is_not_a_read_declares_the_header(app: FastAPI) -> None:
    """A route added later without `Idempotency-Key` fails here (dashboard forms aside)."""
    writes = {
        (method.upper(), path): operation
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/rest/")
        for method, operation in operations.items()
        if method.upper() not in ("GET", "HEAD", "OPTIONS")
    }
    assert len(writes) >= 19, sorted(writes)
    without = [
        route
        for route, operation in writes.items()
        if not any(
            p["in"] == "header" and p["name"] == "Idempotency-Key"
            for p in operation.get("parameters", [])
        )
    ]
    assert without == []
