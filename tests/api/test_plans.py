"""Plans (issue 21): create, list, read, archive; every refusal a 4xx naming its field,
on both engines."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest

from antaeus.clock import ManualClock
from antaeus.storage.database import Database
from tests.api.test_idempotency import race  # noqa: F401  (a fixture)

PLANS = "/rest/v1/plans"


def plan_body(code: str = "pro-monthly", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": code,
        "name": "Pro",
        "amount": {"value": "30.00", "currency": "EUR"},
        "interval": "month",
        "intervalCount": 1,
        "trialDays": 0,
    }
    body.update(over)
    return body


async def new_plan(client: httpx.AsyncClient, code: str = "pro-monthly", **over: Any) -> int:
    response = await client.post(PLANS, json=plan_body(code, **over))
    assert response.status_code == 201, response.text
    pid: int = response.json()["id"]
    return pid


async def test_create_answers_the_plan(client: httpx.AsyncClient) -> None:
    response = await client.post(PLANS, json=plan_body())
    assert response.status_code == 201, response.text
    body = response.json()
    assert body == {
        "id": body["id"],
        "code": "pro-monthly",
        "name": "Pro",
        "amount": {"value": 30.00, "currency": "EUR"},
        "interval": "month",
        "intervalCount": 1,
        "trialDays": 0,
        "createdAt": "2026-11-22T12:00:00Z",
        "archivedAt": None,
    }
    assert '"value":30.00' in response.text  # exact, with the currency's decimals
    assert response.headers["location"] == f"/rest/v1/plans/{body['id']}"
    got = await client.get(f"{PLANS}/{body['id']}")
    assert got.json() == body


async def test_defaults_interval_count_and_trial_days(client: httpx.AsyncClient) -> None:
    body = {
        "code": "x",
        "name": "X",
        "amount": {"value": "1", "currency": "JPY"},
        "interval": "day",
    }
    response = await client.post(PLANS, json=body)
    assert response.status_code == 201, response.text
    assert (response.json()["intervalCount"], response.json()["trialDays"]) == (1, 0)


@pytest.mark.parametrize(
    ("currency", "value", "shown"),
    [
        ("EUR", "0", "0.00"),
        ("EUR", "0.00", "0.00"),
        ("JPY", "1000", "1000"),
        ("KWD", "10.125", "10.125"),
        ("CLF", "1.2345", "1.2345"),
        ("EUR", "999999999999.99", "999999999999.99"),
        ("EUR", 5, "5.00"),
    ],
)
async def test_amounts_in_each_currencys_own_minor_units(
    client: httpx.AsyncClient, currency: str, value: Any, shown: str
) -> None:
    body = plan_body(amount={"value": value, "currency": currency})
    response = await client.post(PLANS, json=body)
    assert response.status_code == 201, response.text
    assert f'"value":{shown},' in response.text


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"code": ""}, "code"),
        ({"code": "a" * 65}, "code"),
        ({"code": "has space"}, "code"),
        ({"code": "ünïcode"}, "code"),
        ({"code": "a/b"}, "code"),
        ({"code": "nul\u0000"}, "code"),
        ({"code": 5}, "code"),
        ({"code": None}, "code"),
        ({"name": ""}, "name"),
        ({"name": "n" * 201}, "name"),
        ({"name": "Pro\u0000"}, "name"),
        ({"name": "Pro\nline"}, "name"),
        ({"amount": {"value": "-1.00", "currency": "EUR"}}, "amount.value"),
        ({"amount": {"value": "1.001", "currency": "EUR"}}, "amount.value"),
        ({"amount": {"value": "1.5", "currency": "JPY"}}, "amount.value"),
        ({"amount": {"value": 1.005, "currency": "EUR"}}, "amount.value"),
        ({"amount": {"value": "1e3", "currency": "EUR"}}, "amount.value"),
        ({"amount": {"value": "NaN", "currency": "EUR"}}, "amount.value"),
        ({"amount": {"value": "1000000000000.00", "currency": "EUR"}}, "amount.value"),
        ({"amount": {"value": "1.00", "currency": "XAU"}}, "amount.currency"),
        ({"amount": {"value": "1.00", "currency": "eur"}}, "amount.currency"),
        ({"amount": {"value": "1.00"}}, "amount.currency"),
        ({"amount": "30.00"}, "amount"),
        ({"interval": "fortnight"}, "interval"),
        ({"interval": "Month"}, "interval"),
        ({"intervalCount": 0}, "intervalCount"),
        ({"intervalCount": 25}, "intervalCount"),
        ({"intervalCount": "1"}, "intervalCount"),
        ({"intervalCount": 1.0}, "intervalCount"),
        ({"intervalCount": True}, "intervalCount"),
        ({"intervalCount": 2**70}, "intervalCount"),
        ({"interval": "year", "intervalCount": 6}, "intervalCount"),
        ({"interval": "week", "intervalCount": 53}, "intervalCount"),
        ({"interval": "day", "intervalCount": 366}, "intervalCount"),
        ({"trialDays": -1}, "trialDays"),
        ({"trialDays": 731}, "trialDays"),
        ({"trialDays": "3"}, "trialDays"),
        ({"color": "red"}, "color"),
    ],
)
async def test_bad_plans_are_refused_naming_the_field(
    client: httpx.AsyncClient, over: dict[str, Any], field: str
) -> None:
    body = plan_body(**over)
    if "amount" in over and isinstance(over["amount"], dict) and "currency" not in over["amount"]:
        body["amount"] = over["amount"]
    response = await client.post(PLANS, json=body)
    assert response.status_code == 422, response.text
    got = response.json()
    assert got["field"] == field, got
    assert field in got["message"], got
    assert (await client.get(PLANS)).json() == []


async def test_the_edges_of_each_range_are_accepted(client: httpx.AsyncClient) -> None:
    for n, (interval, count) in enumerate([("day", 365), ("week", 52), ("month", 24), ("year", 5)]):
        body = plan_body(f"p{n}", interval=interval, intervalCount=count, trialDays=730)
        response = await client.post(PLANS, json=body)
        assert response.status_code == 201, response.text
    code = "A-z_0.9" + "x" * 57
    assert (await client.post(PLANS, json=plan_body(code))).status_code == 201


async def test_a_missing_field_is_named(client: httpx.AsyncClient) -> None:
    for name in ("code", "name", "amount", "interval"):
        body = plan_body()
        del body[name]
        response = await client.post(PLANS, json=body)
        assert response.status_code == 422
        assert response.json()["field"] == name


async def test_a_code_is_unique(client: httpx.AsyncClient) -> None:
    await new_plan(client, "pro")
    response = await client.post(PLANS, json=plan_body("pro", name="Other"))
    assert response.status_code == 409, response.text
    assert response.json()["error"] == "already_exists"
    assert response.json()["field"] == "code"
    assert len((await client.get(PLANS)).json()) == 1
    # another case is another code
    assert (await client.post(PLANS, json=plan_body("PRO"))).status_code == 201


async def test_archive(client: httpx.AsyncClient, clock: ManualClock) -> None:
    pid = await new_plan(client)
    clock.advance(timedelta(seconds=60))
    response = await client.post(f"{PLANS}/{pid}/archive")
    assert response.status_code == 200, response.text
    assert response.json()["archivedAt"] == "2026-11-22T12:01:00Z"
    again = await client.post(f"{PLANS}/{pid}/archive")
    assert again.status_code == 409
    assert again.json()["error"] == "invalid_state"
    missing = await client.post(f"{PLANS}/{pid + 1}/archive")
    assert missing.status_code == 404


async def test_archive_is_idempotent_with_a_key(client: httpx.AsyncClient) -> None:
    pid = await new_plan(client)
    headers = {"Idempotency-Key": "archive-1"}
    first = await client.post(f"{PLANS}/{pid}/archive", headers=headers)
    second = await client.post(f"{PLANS}/{pid}/archive", headers=headers)
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"


async def test_list_filters_archived_and_paginates(client: httpx.AsyncClient) -> None:
    ids = [await new_plan(client, f"p{n}") for n in range(5)]
    for pid in ids[1::2]:
        assert (await client.post(f"{PLANS}/{pid}/archive")).status_code == 200
    everything = [p["id"] for p in (await client.get(PLANS)).json()]
    assert everything == ids
    archived = [p["id"] for p in (await client.get(PLANS, params={"archived": "true"})).json()]
    assert archived == ids[1::2]
    open_ = [p["id"] for p in (await client.get(PLANS, params={"archived": "false"})).json()]
    assert open_ == ids[0::2]
    bad = await client.get(PLANS, params={"archived": "maybe"})
    assert bad.status_code == 422
    assert bad.json()["field"] == "archived"
    # pages of two, following Link
    seen: list[int] = []
    url: str | None = f"{PLANS}?limit=2"
    while url:
        page = await client.get(url)
        assert page.status_code == 200
        seen += [p["id"] for p in page.json()]
        link = page.headers.get("link")
        url = link[1 : link.index(">")] if link else None
    assert seen == ids


@pytest.mark.parametrize(
    "path",
    [
        "/rest/v1/plans/0",
        "/rest/v1/plans/-1",
        "/rest/v1/plans/01",
        "/rest/v1/plans/1.0",
        "/rest/v1/plans/9223372036854775808",
        "/rest/v1/plans/" + "9" * 50,
        "/rest/v1/plans/abc",
    ],
)
async def test_bad_ids_are_422(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "id"
    archive = await client.post(f"{path}/archive")
    assert archive.status_code == 422, archive.text


async def test_unknown_plan_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{PLANS}/{2**63 - 1}")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_idempotent_create_replays(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "plan-1"}
    first = await client.post(PLANS, json=plan_body(), headers=headers)
    second = await client.post(PLANS, json=plan_body(), headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert second.headers["location"] == first.headers["location"]
    other = await client.post(PLANS, json=plan_body("other"), headers=headers)
    assert other.status_code == 422
    assert other.json()["error"] == "idempotency_key_reused"
    assert len((await client.get(PLANS)).json()) == 1


async def test_concurrent_creates_with_one_key_create_one(
    client: httpx.AsyncClient,
    database: Database,
    race: dict[str, int],  # noqa: F811
) -> None:
    headers = {"Idempotency-Key": "concurrent-plan"}
    responses = await asyncio.gather(
        *(client.post(PLANS, json=plan_body(), headers=headers) for _ in range(6))
    )
    assert [r.status_code for r in responses] == [201] * 6, [r.text for r in responses]
    assert len({r.text for r in responses}) == 1
    assert len((await client.get(PLANS)).json()) == 1


async def test_concurrent_creates_of_one_code_without_a_key(client: httpx.AsyncClient) -> None:
    responses = await asyncio.gather(*(client.post(PLANS, json=plan_body()) for _ in range(6)))
    assert sorted(r.status_code for r in responses) == [201] + [409] * 5
    assert len((await client.get(PLANS)).json()) == 1
