"""Customers' provider references and PATCH /rest/v1/customers/{id}, end to end via REST
on SQLite and PostgreSQL: validation, clearing, time zones of invoices not yet due, and
a refused invoice charged after its customer was fixed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from antaeus.clock import ManualClock
from antaeus.seeding import seed
from antaeus.storage.database import Database
from antaeus.storage.tables import customers, invoices
from tests.api.test_billing_api import charge, get_json, new_invoice, trigger
from tests.billing.fakes import ScriptedProvider, needs_payment_method
from tests.notify.helpers import settled

# NOW (tests/conftest.py) is 2026-11-22T12:00:00Z


async def _create(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/rest/v1/customers", json={"currency": "EUR", **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _patch(client: httpx.AsyncClient, cid: int, body: Any, **kw: Any) -> httpx.Response:
    return await client.patch(f"/rest/v1/customers/{cid}", json=body, **kw)


def _assert_422(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_error", body
    assert body["field"] == field, body
    assert field in body["message"], body


async def _customer_rows(database: Database) -> list[Any]:
    async with database.read() as conn:
        return list(await conn.execute(select(customers).order_by(customers.c.id)))


async def test_post_sets_both_references_and_get_shows_them(client: httpx.AsyncClient) -> None:
    created = await _create(
        client, providerCustomerId="cus_NffrFeUfNV2Hib", providerPaymentMethodId="pm_1Mq"
    )
    assert created["providerCustomerId"] == "cus_NffrFeUfNV2Hib"
    assert created["providerPaymentMethodId"] == "pm_1Mq"
    assert await get_json(client, f"/rest/v1/customers/{created['id']}") == created
    bare = await _create(client)
    assert (bare["providerCustomerId"], bare["providerPaymentMethodId"]) == (None, None)
    assert await get_json(client, "/rest/v1/customers") == [created, bare]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "at least 1"),
        ("x" * 256, "at most 255"),
        ("cus_\u00001", "control"),
        ("cus_\n1", "control"),
        ("cus_\u00851", "control"),
        ("cus_\u20281", "printable"),
        ("cus_\u200b1", "printable"),
        (12, "string"),
        (["cus_1"], "string"),
    ],
)
@pytest.mark.parametrize("field", ["providerCustomerId", "providerPaymentMethodId"])
async def test_bad_references_are_422_naming_the_field_and_write_nothing(
    client: httpx.AsyncClient, database: Database, field: str, value: Any, why: str
) -> None:
    response = await client.post("/rest/v1/customers", json={"currency": "EUR", field: value})
    _assert_422(response, field)
    assert why in response.json()["message"]
    cid = (await _create(client))["id"]
    response = await _patch(client, cid, {field: value})
    _assert_422(response, field)
    [row] = await _customer_rows(database)
    assert (row.provider_customer_id, row.provider_payment_method_id) == (None, None)


async def test_255_printable_characters_are_kept_exactly(client: httpx.AsyncClient) -> None:
    value = "cus_ é" + "x" * 249
    assert len(value) == 255
    created = await _create(client, providerCustomerId=value)
    assert created["providerCustomerId"] == value


async def test_patch_sets_clears_and_leaves_what_it_does_not_name(
    client: httpx.AsyncClient, database: Database
) -> None:
    cid = (await _create(client, timezone="Europe/Copenhagen"))["id"]
    response = await _patch(client, cid, {"providerCustomerId": "cus_1"})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": cid,
        "currency": "EUR",
        "timezone": "Europe/Copenhagen",
        "providerCustomerId": "cus_1",
        "providerPaymentMethodId": None,
        "creditBalance": {"value": 0, "currency": "EUR"},
    }
    response = await _patch(client, cid, {"providerPaymentMethodId": "pm_1"})
    assert response.json()["providerCustomerId"] == "cus_1"  # not named: unchanged
    assert response.json()["providerPaymentMethodId"] == "pm_1"
    response = await _patch(client, cid, {"providerPaymentMethodId": None})  # null clears
    assert response.status_code == 200, response.text
    assert (response.json()["providerCustomerId"], response.json()["providerPaymentMethodId"]) == (
        "cus_1",
        None,
    )
    response = await _patch(client, cid, {})  # nothing named: nothing changes
    assert response.status_code == 200
    assert await get_json(client, f"/rest/v1/customers/{cid}") == response.json()
    [row] = await _customer_rows(database)
    assert (row.provider_customer_id, row.provider_payment_method_id) == ("cus_1", None)
    assert (row.currency, row.timezone) == ("EUR", "Europe/Copenhagen")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"currency": "DKK"}, "currency"),
        ({"id": 9}, "id"),
        ({"createdAt": "2026-01-01T00:00:00Z"}, "createdAt"),
        ({"providerCustomerId": "cus_1", "nickname": "x"}, "nickname"),
        ({"timezone": None}, "timezone"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
    ],
)
async def test_patch_refuses_other_fields_naming_them_and_changes_nothing(
    client: httpx.AsyncClient, database: Database, body: dict[str, Any], field: str
) -> None:
    cid = (await _create(client))["id"]
    before = await _customer_rows(database)
    _assert_422(await _patch(client, cid, body), field)
    assert await _customer_rows(database) == before


async def test_patch_of_an_unknown_customer_is_404(client: httpx.AsyncClient) -> None:
    await _create(client)
    response = await _patch(client, 999, {"providerCustomerId": "cus_1"})
    assert response.status_code == 404, response.text
    assert response.json()["error"] == "not_found"
    assert "999" in response.json()["message"]


@pytest.mark.parametrize("bad", ["abc", "1.0", "0", "-1", "01", "9223372036854775808"])
async def test_patch_with_a_bad_id_is_422(client: httpx.AsyncClient, bad: str) -> None:
    response = await client.patch(f"/rest/v1/customers/{bad}", json={})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "id"


@pytest.mark.parametrize("body", ["[]", "12", '"x"', "null"])
async def test_patch_body_must_be_an_object(client: httpx.AsyncClient, body: str) -> None:
    cid = (await _create(client))["id"]
    response = await client.patch(
        f"/rest/v1/customers/{cid}", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text


async def test_patch_needs_a_token(anon: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    cid = (await _create(client))["id"]
    response = await anon.patch(f"/rest/v1/customers/{cid}", json={"providerCustomerId": "x"})
    assert response.status_code == 401
    assert (await get_json(client, f"/rest/v1/customers/{cid}"))["providerCustomerId"] is None


async def test_patch_honours_an_idempotency_key(client: httpx.AsyncClient) -> None:
    cid = (await _create(client))["id"]
    headers = {"Idempotency-Key": "fix-card-1"}
    first = await _patch(client, cid, {"providerPaymentMethodId": "pm_1"}, headers=headers)
    assert first.status_code == 200
    await _patch(client, cid, {"providerPaymentMethodId": "pm_2"})
    replay = await _patch(client, cid, {"providerPaymentMethodId": "pm_1"}, headers=headers)
    assert replay.status_code == 200
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()
    # the replay changed nothing: the later PATCH stands
    assert (await get_json(client, f"/rest/v1/customers/{cid}"))["providerPaymentMethodId"] == (
        "pm_2"
    )
    reused = await _patch(client, cid, {"providerPaymentMethodId": "pm_3"}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["error"] == "idempotency_key_reused"


async def test_post_with_references_honours_an_idempotency_key(
    client: httpx.AsyncClient, database: Database
) -> None:
    body = {"currency": "EUR", "providerCustomerId": "cus_1"}
    headers = {"Idempotency-Key": "new-customer-1"}
    first = await client.post("/rest/v1/customers", json=body, headers=headers)
    again = await client.post("/rest/v1/customers", json=body, headers=headers)
    assert first.json() == again.json()
    other = await client.post(
        "/rest/v1/customers", json={**body, "providerCustomerId": "cus_2"}, headers=headers
    )
    assert other.status_code == 422
    assert len(await _customer_rows(database)) == 1


async def _due_at(database: Database, invoice_id: int) -> Any:
    async with database.read() as conn:
        return (
            await conn.execute(
                select(invoices.c.due_at, invoices.c.eligible_at).where(invoices.c.id == invoice_id)
            )
        ).one()


async def test_a_new_time_zone_moves_invoices_not_yet_due_only(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    cid = (await _create(client, timezone="Europe/Copenhagen"))["id"]
    # the next first of the month in Copenhagen: 2026-12-01T00:00+01:00
    response = await client.post(
        "/rest/v1/invoices", json={"customerId": cid, "amount": {"value": "1", "currency": "EUR"}}
    )
    by_default = response.json()["id"]
    assert response.json()["dueAt"] == "2026-11-30T23:00:00Z"
    later = await new_invoice(client, cid, due_at="2027-02-28T23:00:00Z")  # 1 March, Copenhagen
    explicit = await new_invoice(client, cid, due_at="2026-12-15T09:30:00Z")  # a moment: stays
    past_due = await new_invoice(client, cid, due_at="2026-10-31T23:00:00Z")  # already due
    response = await _patch(client, cid, {"timezone": "America/New_York"})
    assert response.status_code == 200, response.text
    assert response.json()["timezone"] == "America/New_York"
    shown = await get_json(client, f"/rest/v1/invoices/{by_default}")
    assert shown["dueAt"] == "2026-12-01T05:00:00Z"  # midnight on 1 December in New York
    assert (await get_json(client, f"/rest/v1/invoices/{later}"))["dueAt"] == (
        "2027-03-01T05:00:00Z"
    )
    assert (await get_json(client, f"/rest/v1/invoices/{explicit}"))["dueAt"] == (
        "2026-12-15T09:30:00Z"
    )
    assert (await get_json(client, f"/rest/v1/invoices/{past_due}"))["dueAt"] == (
        "2026-10-31T23:00:00Z"
    )
    row = await _due_at(database, by_default)
    assert row.eligible_at == row.due_at  # charged when the new zone's first comes
    # the new zone decides the next invoices too
    response = await client.post(
        "/rest/v1/invoices", json={"customerId": cid, "amount": {"value": "1", "currency": "EUR"}}
    )
    assert response.json()["dueAt"] == "2026-12-01T05:00:00Z"
    # the same zone again moves nothing
    await _patch(client, cid, {"timezone": "America/New_York"})
    assert (await get_json(client, f"/rest/v1/invoices/{by_default}"))["dueAt"] == (
        "2026-12-01T05:00:00Z"
    )


async def test_invoices_in_a_run_keep_their_due_time(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    cid = (await _create(client))["id"]
    soon = await new_invoice(client, cid, due_at="2026-12-01T00:00:00Z")
    clock.advance(timedelta(days=9))  # 2026-12-01T12:00Z: due, and taken by a run
    await trigger(client)
    clock.set(clock.now() - timedelta(days=9))  # back before it was due (a clock set back)
    await _patch(client, cid, {"timezone": "Asia/Tokyo"})
    assert (await get_json(client, f"/rest/v1/invoices/{soon}"))["dueAt"] == (
        "2026-12-01T00:00:00Z"
    )


async def test_seed_leaves_the_references_empty(database: Database, clock: ManualClock) -> None:
    await seed(database, now=clock.now(), seed_value=7, customers=20, invoices_per_customer=1)
    async with database.read() as conn:
        filled = await conn.scalar(
            select(func.count())
            .select_from(customers)
            .where(
                customers.c.provider_customer_id.is_not(None)
                | customers.c.provider_payment_method_id.is_not(None)
            )
        )
        total = await conn.scalar(select(func.count()).select_from(customers))
    assert (total, filled) == (20, 0)


async def test_refused_for_a_missing_payment_method_then_charged_after_the_fix(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    """The issue's story: fails at once (no call, no attempt), PATCH, retry, charged."""
    cid = (await _create(client, providerCustomerId="cus_1"))["id"]
    iid = await new_invoice(client, cid)
    run = await trigger(client)
    provider = ScriptedProvider(default=lambda r: _charged(r), refuse=needs_payment_method)
    await charge(database, provider, clock)
    failed = await get_json(client, f"/rest/v1/invoices/{iid}")
    assert (failed["status"], failed["lastFailure"], failed["attemptCount"]) == (
        "FAILED",
        "payment_method_missing",
        0,
    )
    assert await get_json(client, f"/rest/v1/invoices/{iid}/attempts") == []
    assert provider.calls == []
    shown = await get_json(client, f"/rest/v1/billing/runs/{run['id']}")
    assert (shown["status"], shown["counts"]["failed"]) == ("completed", 1)
    await settled(database)
    [event] = await get_json(client, f"/rest/v1/events?invoiceId={iid}&type=invoice.failed")
    assert event["data"]["refusal"]["reason"] == "payment_method_missing"
    assert "providerPaymentMethodId" in event["data"]["refusal"]["detail"]

    response = await _patch(client, cid, {"providerPaymentMethodId": "pm_1"})
    assert response.status_code == 200, response.text
    response = await client.post(f"/rest/v1/invoices/{iid}/retry", json={"note": "card added"})
    assert response.status_code == 200, response.text
    await trigger(client)
    await charge(database, provider, clock)
    paid = await get_json(client, f"/rest/v1/invoices/{iid}")
    assert (paid["status"], paid["attemptCount"]) == ("PAID", 1)
    [attempt] = await get_json(client, f"/rest/v1/invoices/{iid}/attempts")
    assert (attempt["number"], attempt["outcome"], attempt["chargeId"]) == (
        1,
        "charged",
        "ch_cus_1_pm_1",
    )
    assert attempt["idempotencyKey"].endswith(f":{iid}:1")  # the key never consumed before
    [request] = provider.calls
    assert request.idempotency_key == attempt["idempotencyKey"]


def _charged(request: Any) -> Any:
    from antaeus.payments.provider import Charged

    return Charged(f"ch_{request.provider_customer_id}_{request.provider_payment_method_id}")


async def test_attempts_show_the_decline_code(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    from antaeus.payments.provider import CardDeclinedError

    iid = await new_invoice(client, (await _create(client))["id"])
    await trigger(client)
    await charge(database, ScriptedProvider(default=CardDeclinedError("expired_card")), clock)
    shown = await get_json(client, f"/rest/v1/invoices/{iid}")
    assert (shown["status"], shown["lastFailure"]) == ("FAILED", "card_declined")
    [attempt] = await get_json(client, f"/rest/v1/invoices/{iid}/attempts")
    assert (attempt["outcome"], attempt["declineCode"]) == ("card_declined", "expired_card")
    assert attempt["finishedAt"] is not None
    await settled(database)
    [event] = await get_json(client, f"/rest/v1/events?invoiceId={iid}&type=invoice.failed")
    assert event["data"]["attempt"]["declineCode"] == "expired_card"
