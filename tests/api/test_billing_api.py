"""Billing over HTTP: triggers and runs, status, attempts, and what people do to invoices.

The real app runs in-process on real SQLite and PostgreSQL; charging is done by
a real `Worker` against the simulated provider (or a tiny fake one to force an
outcome the simulator does not make on demand).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from antaeus.billing.worker import Worker, WorkerSettings
from antaeus.clock import ManualClock
from antaeus.domain.money import Currency
from antaeus.domain.policy import PolicySettings
from antaeus.payments.provider import (
    Charged,
    KeyReusedError,
    OutcomeUnknownError,
    UnauthorizedError,
)
from antaeus.simulators.simulated import Account, SimulatedPaymentProvider
from antaeus.storage.database import Database
from antaeus.storage.repositories.installation import InstallationRepository
from antaeus.storage.tables import invoice_actions
from tests.billing.fakes import ScriptedProvider

RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")
LINK = re.compile(r'<([^>]+)>; rel="next"')
PAST = "2026-11-01T00:00:00Z"  # the clock stands at 2026-11-22T12:00Z
NOW_Z = "2026-11-22T12:00:00Z"
RUN_KEYS = {
    "id",
    "trigger",
    "status",
    "startedAt",
    "completedAt",
    "pausedReason",
    "counts",
    "collected",
}
COUNT_KEYS = {"due", "paid", "failed", "review", "rescheduled", "void"}
ATTEMPT_KEYS = {
    "number",
    "idempotencyKey",
    "startedAt",
    "finishedAt",
    "outcome",
    "chargeId",
    "declineCode",
    "runId",
    "sends",
    "providerCustomerId",
    "providerPaymentMethodId",
    "referencesRecorded",
    "answers",
    "reconciliations",
}


# -- helpers ----------------------------------------------------------------------


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatedPaymentProvider]:
    provider = SimulatedPaymentProvider(":memory:", failure_rate=0.0, seed=1)
    try:
        yield provider
    finally:
        await provider.aclose()


async def charge(
    database: Database, provider: SimulatedPaymentProvider | ScriptedProvider, clock: ManualClock
) -> None:
    worker = Worker(
        database,
        provider,
        clock,
        PolicySettings(),
        WorkerSettings(batch_size=100, concurrency=50),
    )
    await worker.run_until_idle()


async def new_customer(client: httpx.AsyncClient, currency: str = "EUR") -> int:
    response = await client.post("/rest/v1/customers", json={"currency": currency})
    assert response.status_code == 201, response.text
    cid: int = response.json()["id"]
    return cid


async def new_invoice(
    client: httpx.AsyncClient,
    customer_id: int,
    value: str = "89.50",
    currency: str = "EUR",
    due_at: str = PAST,
) -> int:
    response = await client.post(
        "/rest/v1/invoices",
        json={
            "customerId": customer_id,
            "amount": {"value": value, "currency": currency},
            "dueAt": due_at,
        },
    )
    assert response.status_code == 201, response.text
    iid: int = response.json()["id"]
    return iid


async def get_json(client: httpx.AsyncClient, url: str) -> Any:
    response = await client.get(url)
    assert response.status_code == 200, response.text
    return response.json()


async def trigger(client: httpx.AsyncClient, **kw: Any) -> dict[str, Any]:
    response = await client.post("/rest/v1/billing", **kw)
    assert response.status_code == 202, response.text
    run: dict[str, Any] = response.json()
    return run


async def installation_id(database: Database) -> str:
    async with database.read() as conn:
        return await InstallationRepository(conn).installation_id()


async def failed_invoice(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,
) -> int:
    """A FAILED invoice: the simulator has accounts, none for this customer."""
    simulator.store.set_accounts([Account(999_999, Currency.EUR, 10_000)])
    iid = await new_invoice(client, await new_customer(client))
    await trigger(client)
    await charge(database, simulator, clock)
    found = await get_json(client, f"/rest/v1/invoices/{iid}")
    assert (found["status"], found["lastFailure"]) == ("FAILED", "customer_not_found")
    return iid


async def paid_invoice(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,
) -> int:
    iid = await new_invoice(client, await new_customer(client))
    await trigger(client)
    await charge(database, simulator, clock)
    assert (await get_json(client, f"/rest/v1/invoices/{iid}"))["status"] == "PAID"
    return iid


async def review_invoice(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> tuple[int, int]:
    """A REVIEW invoice (the provider says its key was used with another body); its run id."""
    iid = await new_invoice(client, await new_customer(client))
    run = await trigger(client)
    await charge(database, ScriptedProvider(default=KeyReusedError("the provider says so")), clock)
    found = await get_json(client, f"/rest/v1/invoices/{iid}")
    assert (found["status"], found["lastFailure"]) == ("REVIEW", "idempotency_key_reused")
    return iid, run["id"]


def assert_run_shape(run: dict[str, Any]) -> None:
    assert set(run) == RUN_KEYS
    assert type(run["id"]) is int
    assert run["trigger"] in {"schedule", "api", "cli", "retry"}
    assert run["status"] in {"running", "completed"}
    assert isinstance(run["startedAt"], str)
    assert RFC3339.fullmatch(run["startedAt"])
    assert run["completedAt"] is None or RFC3339.fullmatch(run["completedAt"])
    assert run["pausedReason"] is None or isinstance(run["pausedReason"], str)
    assert set(run["counts"]) == COUNT_KEYS
    assert all(type(v) is int for v in run["counts"].values())
    assert isinstance(run["collected"], list)
    for money in run["collected"]:
        assert set(money) == {"value", "currency"}
        assert isinstance(money["value"], int | float)
        assert not isinstance(money["value"], bool)
        assert isinstance(money["currency"], str)


# -- POST /rest/v1/billing --------------------------------------------------------


async def test_trigger_answers_202_with_the_run(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,
) -> None:
    eur = await new_customer(client, "EUR")
    dkk = await new_customer(client, "DKK")
    await new_invoice(client, eur, "10.00", "EUR")
    await new_invoice(client, eur, "79.50", "EUR")
    await new_invoice(client, dkk, "100.05", "DKK")
    await new_invoice(client, eur, "5.00", "EUR", due_at="2026-12-01T00:00:00Z")  # not due

    response = await client.post("/rest/v1/billing")
    assert response.status_code == 202, response.text
    run = response.json()
    assert_run_shape(run)
    assert response.headers["location"] == f"/rest/v1/billing/runs/{run['id']}"
    assert run["trigger"] == "api"
    assert run["status"] == "running"
    assert run["startedAt"] == NOW_Z
    assert run["completedAt"] is None
    assert run["pausedReason"] is None
    assert run["counts"] == {
        "due": 3,
        "paid": 0,
        "failed": 0,
        "review": 0,
        "rescheduled": 0,
        "void": 0,
    }
    assert run["collected"] == []

    await charge(database, simulator, clock)
    response = await client.get(f"/rest/v1/billing/runs/{run['id']}")
    assert response.status_code == 200, response.text
    done = response.json()
    assert_run_shape(done)
    assert done["status"] == "completed"
    assert done["completedAt"] == NOW_Z
    assert done["counts"] == {
        "due": 3,
        "paid": 3,
        "failed": 0,
        "review": 0,
        "rescheduled": 0,
        "void": 0,
    }
    # exact JSON numbers with two decimals, one entry per currency
    assert '"collected":[{"value":100.05,"currency":"DKK"},{"value":89.50,"currency":"EUR"}]' in (
        response.text
    )
    parsed = json.loads(response.text, parse_float=Decimal)
    assert parsed["collected"] == [
        {"value": Decimal("100.05"), "currency": "DKK"},
        {"value": Decimal("89.50"), "currency": "EUR"},
    ]


async def test_an_empty_run_is_already_completed_and_a_cli_trigger_is_recorded(
    client: httpx.AsyncClient,
) -> None:
    await new_invoice(client, await new_customer(client), due_at="2026-12-01T00:00:00Z")
    run = await trigger(client, json={"trigger": "cli"})
    assert_run_shape(run)
    assert run["trigger"] == "cli"
    assert run["status"] == "completed"
    assert run["startedAt"] == run["completedAt"] == NOW_Z
    assert run["counts"] == dict.fromkeys(COUNT_KEYS, 0)
    assert run["collected"] == []
    assert (await get_json(client, f"/rest/v1/billing/runs/{run['id']}")) == run


async def test_invalid_trigger_is_a_422_json_error(client: httpx.AsyncClient) -> None:
    bodies: list[Any] = [
        {"trigger": "schedule"},
        {"trigger": "cron"},
        {"trigger": 1},
        {"trigger": "api", "x": 1},
    ]
    for body in bodies:
        response = await client.post("/rest/v1/billing", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"].startswith("application/json")
        error = response.json()
        assert error["error"] == "validation_error", body
        assert isinstance(error["message"], str)
        assert error["message"]
        assert error["field"] in {"trigger", "x"}, body
    assert (await get_json(client, "/rest/v1/billing/runs")) == []


async def test_repeated_trigger_with_idempotency_key_answers_the_same_run_as_it_is_now(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,
) -> None:
    cid = await new_customer(client)
    first_invoice = await new_invoice(client, cid)
    headers = {"Idempotency-Key": "cron-2026-11-22"}
    first = await trigger(client, headers=headers)
    assert (first["status"], first["counts"]["due"], first["counts"]["paid"]) == ("running", 1, 0)

    await charge(database, simulator, clock)
    late = await new_invoice(client, cid)  # due, but the repeat must not open a run for it
    response = await client.post("/rest/v1/billing", headers=headers)
    assert response.status_code == 202, response.text
    again = response.json()
    assert_run_shape(again)
    assert again["id"] == first["id"]
    assert again["status"] == "completed"
    assert again["counts"]["paid"] == 1
    assert again["collected"] == [{"value": 89.5, "currency": "EUR"}]
    assert [r["id"] for r in await get_json(client, "/rest/v1/billing/runs")] == [first["id"]]
    status = await get_json(client, "/rest/v1/status")
    assert (status["openRuns"], status["dueBacklog"]) == ([], 1)
    invoices = {i["id"]: i["status"] for i in await get_json(client, "/rest/v1/invoices")}
    assert invoices == {first_invoice: "PAID", late: "PENDING"}

    other = await client.post("/rest/v1/billing", headers=headers, json={"trigger": "cli"})
    assert other.status_code == 422, other.text
    assert other.json()["error"] == "idempotency_key_reused"


async def test_a_second_trigger_does_not_take_invoices_already_in_an_open_run(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,
) -> None:
    cid = await new_customer(client)
    a = [await new_invoice(client, cid), await new_invoice(client, cid)]
    first = await trigger(client)
    b = await new_invoice(client, cid)
    second = await trigger(client)
    third = await trigger(client)
    assert (first["counts"]["due"], second["counts"]["due"], third["counts"]["due"]) == (2, 1, 0)

    await charge(database, simulator, clock)
    runs = {r["id"]: r for r in await get_json(client, "/rest/v1/billing/runs")}
    assert runs[first["id"]]["counts"]["paid"] == 2
    assert runs[second["id"]]["counts"]["paid"] == 1
    assert sorted(e.invoice_id for e in simulator.store.ledger()) == sorted([*a, b])
    for iid in a:
        [attempt] = await get_json(client, f"/rest/v1/invoices/{iid}/attempts")
        assert attempt["runId"] == first["id"]
    [attempt] = await get_json(client, f"/rest/v1/invoices/{b}/attempts")
    assert attempt["runId"] == second["id"]


# -- runs and status ----------------------------------------------------------------


async def test_list_runs_paginates_and_filters_by_status(client: httpx.AsyncClient) -> None:
    cid = await new_customer(client)
    empty_1 = (await trigger(client))["id"]
    await new_invoice(client, cid)
    running = (await trigger(client))["id"]
    empty_2 = (await trigger(client))["id"]
    await new_invoice(client, cid)
    running_2 = (await trigger(client))["id"]

    response = await client.get("/rest/v1/billing/runs", params={"limit": 3})
    assert response.status_code == 200, response.text
    assert [r["id"] for r in response.json()] == [empty_1, running, empty_2]
    for run in response.json():
        assert_run_shape(run)
    match = LINK.fullmatch(response.headers["link"])
    assert match is not None, response.headers["link"]
    page_2 = await client.get(match.group(1))
    assert [r["id"] for r in page_2.json()] == [running_2]
    assert "link" not in page_2.headers

    by_status = {
        s: [r["id"] for r in await get_json(client, f"/rest/v1/billing/runs?status={s}")]
        for s in ("running", "completed")
    }
    assert by_status == {"running": [running, running_2], "completed": [empty_1, empty_2]}
    after = await get_json(client, f"/rest/v1/billing/runs?status=running&after={running}")
    assert [r["id"] for r in after] == [running_2]
    bad = await client.get("/rest/v1/billing/runs", params={"status": "open"})
    assert bad.status_code == 422
    assert bad.json()["field"] == "status"

    one = await client.get(f"/rest/v1/billing/runs/{running}")
    assert one.status_code == 200, one.text
    assert one.json() == response.json()[1]
    missing = await client.get(f"/rest/v1/billing/runs/{running_2 + 1}")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"


async def test_status_shows_open_runs_backlog_and_a_pause(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    status = await get_json(client, "/rest/v1/status")
    assert status == {
        "charging": "running",
        "pausedReason": None,
        "pausedSince": None,
        "schedule": "automatic",
        "openRuns": [],
        "dueBacklog": 0,
        "token": {"name": "tester", "scope": "write"},  # the caller's own token
        "relay": None,  # this app runs no relay
        "outbox": {"destinations": [], "notFannedOut": 0, "oldestNotFannedOutAt": None},
    }
    iid = await new_invoice(client, await new_customer(client))
    await new_invoice(client, await new_customer(client), due_at="2026-12-01T00:00:00Z")
    assert (await get_json(client, "/rest/v1/status"))["dueBacklog"] == 1
    run = await trigger(client)

    await charge(
        database, ScriptedProvider(default=UnauthorizedError("the provider says so")), clock
    )
    status = await get_json(client, "/rest/v1/status")
    assert set(status) == {
        "charging",
        "pausedReason",
        "pausedSince",
        "schedule",
        "openRuns",
        "dueBacklog",
        "token",
        "relay",
        "outbox",
    }
    assert status["charging"] == "paused"
    assert status["pausedReason"].startswith("provider_unauthorized")
    assert status["pausedSince"] == NOW_Z
    assert status["openRuns"] == [run["id"]]
    assert status["dueBacklog"] == 1
    paused_run = await get_json(client, f"/rest/v1/billing/runs/{run['id']}")
    assert paused_run["status"] == "running"
    assert paused_run["pausedReason"] == status["pausedReason"]
    assert (await get_json(client, f"/rest/v1/invoices/{iid}"))["status"] == "PENDING"


# -- attempts ---------------------------------------------------------------------------


async def test_charged_invoice_is_paid_and_its_attempt_names_the_providers_charge(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,
) -> None:
    iid = await new_invoice(client, await new_customer(client))
    run = await trigger(client)
    assert await get_json(client, f"/rest/v1/invoices/{iid}/attempts") == []
    await charge(database, simulator, clock)

    paid = await get_json(client, f"/rest/v1/invoices/{iid}")
    assert (paid["status"], paid["attemptCount"], paid["lastFailure"]) == ("PAID", 1, None)
    attempts = await get_json(client, f"/rest/v1/invoices/{iid}/attempts")
    assert len(attempts) == 1
    [attempt] = attempts
    assert set(attempt) == ATTEMPT_KEYS
    key = f"{await installation_id(database)}:{iid}:1"
    assert attempt["number"] == 1
    assert attempt["idempotencyKey"] == key
    assert attempt["startedAt"] == attempt["finishedAt"] == NOW_Z
    assert attempt["outcome"] == "charged"
    assert attempt["declineCode"] is None
    assert attempt["runId"] == run["id"]
    assert attempt["sends"] == 1
    # sent with the customer's references (none): recorded as such
    assert (attempt["providerCustomerId"], attempt["providerPaymentMethodId"]) == (None, None)
    assert attempt["referencesRecorded"] is True
    assert attempt["answers"] == [
        {
            "outcome": "charged",
            "chargeId": attempt["chargeId"],
            "runId": run["id"],
            "answeredAt": NOW_Z,
        }
    ]
    assert attempt["reconciliations"] == []  # never in REVIEW: never asked about
    [entry] = simulator.store.ledger()
    assert (entry.charge_id, entry.idempotency_key, entry.invoice_id) == (
        attempt["chargeId"],
        key,
        iid,
    )
    assert attempt["chargeId"].startswith("ch_")


# -- POST /rest/v1/billing/retry --------------------------------------------------------


async def test_billing_retry_makes_a_declined_invoice_due_now_with_a_new_attempt(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,
) -> None:
    cid = await new_customer(client)
    simulator.store.set_accounts([Account(cid, Currency.EUR, 1_000)])  # 10.00 < 89.50
    iid = await new_invoice(client, cid)
    first_run = await trigger(client)
    await charge(database, simulator, clock)
    declined = await get_json(client, f"/rest/v1/invoices/{iid}")
    assert declined["status"] == "PENDING"
    assert declined["lastFailure"] == "insufficient_funds"
    assert declined["nextAttemptAt"] == "2026-11-23T12:00:00Z"  # first dunning step: +1 day
    assert (await trigger(client))["counts"]["due"] == 0  # not due yet

    simulator.store.set_accounts([Account(cid, Currency.EUR, 100_000)])
    response = await client.post("/rest/v1/billing/retry")
    assert response.status_code == 202, response.text
    run = response.json()
    assert_run_shape(run)
    assert run["id"] != first_run["id"]
    assert (run["status"], run["counts"]["due"]) == ("running", 1)
    assert (await get_json(client, f"/rest/v1/invoices/{iid}"))["nextAttemptAt"] == NOW_Z

    await charge(database, simulator, clock)
    assert (await get_json(client, f"/rest/v1/invoices/{iid}"))["status"] == "PAID"
    attempts = await get_json(client, f"/rest/v1/invoices/{iid}/attempts")
    installation = await installation_id(database)
    assert [(a["number"], a["idempotencyKey"], a["outcome"], a["runId"]) for a in attempts] == [
        (1, f"{installation}:{iid}:1", "insufficient_funds", first_run["id"]),
        (2, f"{installation}:{iid}:2", "charged", run["id"]),
    ]
    assert [e.idempotency_key for e in simulator.store.ledger()] == [f"{installation}:{iid}:2"]


async def test_billing_retry_of_an_unknown_outcome_keeps_the_open_attempt_and_key(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    iid = await new_invoice(client, await new_customer(client))
    await trigger(client)
    provider = ScriptedProvider(default=OutcomeUnknownError("the provider says so"))
    await charge(database, provider, clock)
    clock.advance(PolicySettings().unknown_repeat_window + timedelta(seconds=1))
    await charge(database, provider, clock)  # still unknown: rescheduled, out of its run
    waiting = await get_json(client, f"/rest/v1/invoices/{iid}")
    assert (waiting["status"], waiting["lastFailure"]) == ("PENDING", "unknown_outcome")
    # the provider may have charged it: it cannot be voided now
    void = await client.post(f"/rest/v1/invoices/{iid}/void")
    assert void.status_code == 409, void.text
    assert (void.json()["error"], void.json()["status"]) == ("invalid_state", "PENDING")

    response = await client.post("/rest/v1/billing/retry")
    assert response.status_code == 202, response.text
    assert response.json()["counts"]["due"] == 1
    provider.default = Charged("ch_ok")
    await charge(database, provider, clock)
    assert (await get_json(client, f"/rest/v1/invoices/{iid}"))["status"] == "PAID"
    key = f"{await installation_id(database)}:{iid}:1"
    assert {c.idempotency_key for c in provider.calls} == {key}
    [attempt] = await get_json(client, f"/rest/v1/invoices/{iid}/attempts")
    assert (attempt["number"], attempt["outcome"]) == (1, "charged")


# -- invoice actions ------------------------------------------------------------------------


async def test_retry_of_a_failed_invoice_makes_it_pending_and_due_now(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,
) -> None:
    iid = await failed_invoice(client, database, clock, simulator)
    clock.advance(timedelta(hours=2))
    response = await client.post(
        f"/rest/v1/invoices/{iid}/retry", json={"note": "customer created at the provider"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == iid
    assert body["status"] == "PENDING"
    assert body["nextAttemptAt"] == "2026-11-22T14:00:00Z"

    found = await get_json(client, f"/rest/v1/invoices/{iid}")
    simulator.store.set_accounts([Account(found["customerId"], Currency.EUR, 100_000)])
    # the retry opened a run of this invoice, which says who opened it
    run = (await get_json(client, "/rest/v1/billing/runs"))[-1]
    assert (run["trigger"], run["counts"]["due"]) == ("retry", 1)
    assert (await trigger(client))["counts"]["due"] == 0  # it is in that run already
    await charge(database, simulator, clock)
    assert (await get_json(client, f"/rest/v1/invoices/{iid}"))["status"] == "PAID"
    attempts = await get_json(client, f"/rest/v1/invoices/{iid}/attempts")
    assert [(a["number"], a["outcome"]) for a in attempts] == [
        (1, "customer_not_found"),
        (2, "charged"),
    ]
    assert attempts[0]["idempotencyKey"] != attempts[1]["idempotencyKey"]


async def test_retry_and_void_of_a_paid_invoice_are_409(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,
) -> None:
    iid = await paid_invoice(client, database, clock, simulator)
    for action in ("retry", "void"):
        response = await client.post(f"/rest/v1/invoices/{iid}/{action}", json={"note": "n"})
        assert response.status_code == 409, response.text
        error = response.json()
        assert error["error"] == "invalid_state"
        assert error["status"] == "PAID"
        assert isinstance(error["message"], str)
        assert error["message"]
    assert (await get_json(client, f"/rest/v1/invoices/{iid}"))["status"] == "PAID"
    assert len(simulator.store.ledger()) == 1


async def test_void_of_a_failed_invoice(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,
) -> None:
    iid = await failed_invoice(client, database, clock, simulator)
    response = await client.post(f"/rest/v1/invoices/{iid}/void", json={"note": "closed"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "VOID"
    assert (await get_json(client, f"/rest/v1/invoices/{iid}"))["status"] == "VOID"
    retry = await client.post(f"/rest/v1/invoices/{iid}/retry")
    assert (retry.status_code, retry.json()["status"]) == (409, "VOID")


async def test_void_of_a_pending_invoice_keeps_it_out_of_every_run(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,
) -> None:
    cid = await new_customer(client)
    not_yet = await new_invoice(client, cid, due_at="2026-12-01T00:00:00Z")
    in_run = await new_invoice(client, cid)
    run = await trigger(client)
    for iid in (not_yet, in_run):
        response = await client.post(f"/rest/v1/invoices/{iid}/void")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "VOID"

    after = await get_json(client, f"/rest/v1/billing/runs/{run['id']}")
    assert after["status"] == "completed"
    assert (after["counts"]["due"], after["counts"]["void"]) == (1, 1)
    clock.advance(timedelta(days=30))
    assert (await trigger(client))["counts"]["due"] == 0
    await charge(database, simulator, clock)
    assert simulator.store.ledger() == []


async def test_resolve_charged_makes_a_review_invoice_paid_with_the_charge_id(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
) -> None:
    iid, run_id = await review_invoice(client, database, clock)
    run = await get_json(client, f"/rest/v1/billing/runs/{run_id}")
    assert (run["status"], run["counts"]["review"]) == ("completed", 1)
    response = await client.post(
        f"/rest/v1/invoices/{iid}/resolve",
        json={"charged": True, "chargeId": "ch_x", "note": "found it in the provider's dashboard"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["lastFailure"], body["nextAttemptAt"]) == ("PAID", None, None)
    [attempt] = await get_json(client, f"/rest/v1/invoices/{iid}/attempts")
    assert (attempt["chargeId"], attempt["outcome"]) == ("ch_x", "charged")
    assert attempt["finishedAt"] == NOW_Z
    async with database.read() as conn:
        [action] = list(
            await conn.execute(select(invoice_actions).where(invoice_actions.c.invoice_id == iid))
        )
    assert (action.action, action.note, action.charge_id, action.actor) == (
        "resolved_charged",
        "found it in the provider's dashboard",
        "ch_x",
        "tester",
    )
    again = await client.post(
        f"/rest/v1/invoices/{iid}/resolve", json={"charged": True, "chargeId": "ch_y"}
    )
    assert (again.status_code, again.json()["status"]) == (409, "PAID")


async def test_resolve_not_charged_makes_it_due_now_with_a_new_attempt(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,
) -> None:
    iid, _ = await review_invoice(client, database, clock)
    clock.advance(timedelta(minutes=10))
    response = await client.post(
        f"/rest/v1/invoices/{iid}/resolve", json={"charged": False, "note": "nothing moved"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["nextAttemptAt"]) == ("PENDING", "2026-11-22T12:10:00Z")

    run = await trigger(client)
    assert run["counts"]["due"] == 1
    await charge(database, simulator, clock)
    assert (await get_json(client, f"/rest/v1/invoices/{iid}"))["status"] == "PAID"
    attempts = await get_json(client, f"/rest/v1/invoices/{iid}/attempts")
    installation = await installation_id(database)
    assert [(a["number"], a["idempotencyKey"]) for a in attempts] == [
        (1, f"{installation}:{iid}:1"),
        (2, f"{installation}:{iid}:2"),
    ]
    assert attempts[1]["outcome"] == "charged"
    assert attempts[1]["runId"] == run["id"]
    [entry] = simulator.store.ledger()
    assert entry.idempotency_key == f"{installation}:{iid}:2"


async def test_resolve_needs_a_consistent_body_and_a_review_invoice(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    iid, _ = await review_invoice(client, database, clock)
    bodies: list[dict[str, Any]] = [
        {"charged": True},
        {"charged": True, "chargeId": ""},
        {"charged": False, "chargeId": "ch_1"},
        {"charged": "yes", "chargeId": "ch_1"},
    ]
    for body in bodies:
        response = await client.post(f"/rest/v1/invoices/{iid}/resolve", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"] == "validation_error"
    assert (await get_json(client, f"/rest/v1/invoices/{iid}"))["status"] == "REVIEW"

    pending = await new_invoice(client, await new_customer(client), due_at="2027-01-01T00:00:00Z")
    response = await client.post(f"/rest/v1/invoices/{pending}/resolve", json={"charged": False})
    assert response.status_code == 409, response.text
    assert (response.json()["error"], response.json()["status"]) == ("invalid_state", "PENDING")


async def test_an_unknown_invoice_is_404_for_every_action(client: httpx.AsyncClient) -> None:
    calls: list[tuple[str, dict[str, Any]]] = [
        ("retry", {"note": "n"}),
        ("void", {"note": "n"}),
        ("resolve", {"charged": True, "chargeId": "ch_x", "note": "n"}),
    ]
    for action, body in calls:
        response = await client.post(f"/rest/v1/invoices/424242/{action}", json=body)
        assert response.status_code == 404, (action, response.text)
        assert response.json()["error"] == "not_found"
    response = await client.get("/rest/v1/invoices/424242/attempts")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_each_action_records_its_note(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    simulator: SimulatedPaymentProvider,
) -> None:
    failed = await failed_invoice(client, database, clock, simulator)
    review, _ = await review_invoice(client, database, clock)
    pending = await new_invoice(client, await new_customer(client), due_at="2027-01-01T00:00:00Z")
    calls = [
        (failed, "retry", {"note": "retry: provider fixed"}),
        (review, "resolve", {"charged": False, "note": "resolve: nothing moved"}),
        (pending, "void", {"note": "void: duplicate"}),
    ]
    for iid, action, body in calls:
        response = await client.post(f"/rest/v1/invoices/{iid}/{action}", json=body)
        assert response.status_code == 200, (action, response.text)
    async with database.read() as conn:
        rows = list(await conn.execute(select(invoice_actions).order_by(invoice_actions.c.id)))
    assert [(r.invoice_id, r.action, r.note, r.from_status, r.to_status) for r in rows] == [
        (failed, "retried", "retry: provider fixed", "FAILED", "PENDING"),
        (review, "resolved_not_charged", "resolve: nothing moved", "REVIEW", "PENDING"),
        (pending, "voided", "void: duplicate", "PENDING", "VOID"),
    ]
    too_long = await client.post(f"/rest/v1/invoices/{pending}/void", json={"note": "x" * 2001})
    assert too_long.status_code == 422
