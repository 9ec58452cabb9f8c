"""Generation's shortcut for lone subscriptions (rows made once per terms and zone) writes
what the ordinary way writes, and a stop between batches keeps what was committed."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import select

from antaeus.billing.generation import generate_due
from antaeus.clock import ManualClock
from antaeus.storage.database import Database
from antaeus.storage.tables import events, invoice_lines, invoices
from tests.api.test_plans import new_plan
from tests.api.test_subscriptions import customer, subscribe


def _moment(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def _expected_payloads(database: Database) -> dict[int, dict[str, Any]]:
    """Each invoice.created payload as the API's shape says it must be, from the rows."""
    async with database.read() as conn:
        rows = list(await conn.execute(select(invoices).order_by(invoices.c.id)))
        lines = list(await conn.execute(select(invoice_lines).order_by(invoice_lines.c.id)))
    expected = {}
    for r in rows:
        mine = [x for x in lines if x.invoice_id == r.id]
        expected[r.id] = {
            "invoice": {
                "id": r.id,
                "customerId": r.customer_id,
                "amount": {"value": Decimal(r.amount_minor).scaleb(-2), "currency": "EUR"},
                "status": r.status,
                "attemptCount": 0,
                "lastFailure": None,
                "nextAttemptAt": None,
                "lines": [
                    {
                        "id": x.id,
                        "kind": x.kind,
                        "subscriptionId": x.subscription_id,
                        "planId": x.plan_id,
                        "description": x.description,
                        "periodStart": str(x.period_start),
                        "periodEnd": str(x.period_end),
                        "quantity": x.quantity,
                        "amount": {
                            "value": Decimal(x.amount_minor).scaleb(-2),
                            "currency": "EUR",
                        },
                    }
                    for x in mine
                ],
                "dueAt": r.due_at,
            }
        }
    return expected


async def _payloads(database: Database) -> dict[int, dict[str, Any]]:
    async with database.read() as conn:
        rows = await conn.execute(
            select(events.c.invoice_id, events.c.payload).where(events.c.type == "invoice.created")
        )
        return {int(r.invoice_id): json.loads(r.payload, parse_float=Decimal) for r in rows}


async def test_lone_subscriptions_with_the_same_terms_each_get_their_own_ids(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    plan = await new_plan(client)
    clock.set(datetime(2027, 1, 14, 9, tzinfo=UTC))
    subs = []
    for _ in range(7):  # the same terms and zone: one computation, seven invoices
        cid = await customer(client, tz="Europe/Copenhagen")
        subs.append((cid, (await subscribe(client, customerId=cid, planId=plan))["id"]))
    clock.set(datetime(2027, 2, 1, 12, tzinfo=UTC))  # the prorated January and February
    made = await generate_due(database, clock, batch_size=3)
    assert (made.invoices, made.periods, made.subscriptions) == (14, 14, 7)
    assert made.amounts == {"EUR": Decimal("17.42") * 7 + Decimal("30.00") * 7}
    got, expected = await _payloads(database), await _expected_payloads(database)
    assert set(got) == set(expected)
    for invoice_id, payload in got.items():
        want = expected[invoice_id]
        due = want["invoice"].pop("dueAt")
        assert payload["invoice"].pop("dueAt") == _moment(due)
        assert payload == want
    # each invoice and line names its own customer and subscription
    async with database.read() as conn:
        owners = list(
            await conn.execute(
                select(invoices.c.customer_id, invoice_lines.c.subscription_id).join_from(
                    invoice_lines, invoices, invoices.c.id == invoice_lines.c.invoice_id
                )
            )
        )
    assert sorted((r[0], r[1]) for r in owners) == sorted(subs * 2)


async def test_a_stop_between_batches_keeps_what_was_committed_and_a_rerun_goes_on(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    plan = await new_plan(client)
    clock.set(datetime(2027, 3, 1, tzinfo=UTC))
    for _ in range(5):
        await subscribe(client, customerId=await customer(client), planId=plan)
    stop = asyncio.Event()
    made = await generate_due(
        database, clock, batch_size=2, on_batch=lambda _: stop.set(), stop=stop
    )
    assert made.stopped
    assert made.invoices == 2
    rest = await generate_due(database, clock, batch_size=2)
    assert not rest.stopped
    assert rest.invoices == 3
    assert (await generate_due(database, clock)).invoices == 0
    async with database.read() as conn:
        lines = [r[0] for r in await conn.execute(select(invoice_lines.c.subscription_id))]
    assert len(lines) == len(set(lines)) == 5
