"""A person's resolve names the attempt they decided about (issue 20, item 3).

The confirm page is opened at attempt 1; meanwhile attempt 1 is resolved and
attempt 2 reaches REVIEW; the stale form must not settle attempt 2. Through the
REST API and the dashboard, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from antaeus.clock import ManualClock
from antaeus.payments.provider import KeyReusedError
from antaeus.storage.database import Database
from tests.api.test_billing_api import charge, get_json, new_customer, new_invoice, trigger
from tests.billing.fakes import ScriptedProvider
from tests.billing.helpers import attempts_of, invoice_row
from tests.dashboard.test_pages import (  # noqa: F401  (the fixtures)
    CSRF,
    browser,
    signed_in,
)

ATTEMPT = re.compile(r'name="attempt" value="([^"]+)"')


async def _to_review(client: httpx.AsyncClient, database: Database, clock: ManualClock) -> None:
    """Every due invoice is charged once and goes to REVIEW (its key used with another body)."""
    await trigger(client)
    await charge(database, ScriptedProvider(default=KeyReusedError("the provider says so")), clock)


async def _review_at_attempt_2(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> int:
    """A REVIEW invoice at attempt 2: attempt 1 went to REVIEW and was resolved not charged."""
    iid = await new_invoice(client, await new_customer(client))
    await _to_review(client, database, clock)
    first = await client.post(
        f"/rest/v1/invoices/{iid}/resolve", json={"charged": False, "attempt": 1}
    )
    assert first.status_code == 200, first.text
    await _to_review(client, database, clock)
    found = await get_json(client, f"/rest/v1/invoices/{iid}")
    assert (found["status"], found["attemptCount"]) == ("REVIEW", 2), found
    return iid


async def _unchanged(client: httpx.AsyncClient, database: Database, iid: int) -> None:
    """Still REVIEW at attempt 2, attempt 2 open, and only attempt 1's resolve recorded."""
    row = await invoice_row(database, iid)
    assert (row.status, row.attempt_count) == ("REVIEW", 2)
    assert row.attempt_open_since is not None
    attempts = await attempts_of(database, iid)
    assert [(a.number, a.finished_at is None, a.charge_id) for a in attempts] == [
        (1, False, None),
        (2, True, None),
    ]
    actions = await get_json(client, f"/rest/v1/invoices/{iid}/actions")
    assert [a["action"] for a in actions] == ["resolved_not_charged"]


@pytest.mark.parametrize(
    "body",
    [
        {"charged": False, "attempt": 1},
        {"charged": True, "chargeId": "ch_stale", "attempt": 1},
    ],
)
async def test_a_resolve_naming_an_older_attempt_is_409_with_the_current_one(
    client: httpx.AsyncClient, database: Database, clock: ManualClock, body: dict[str, Any]
) -> None:
    iid = await _review_at_attempt_2(client, database, clock)
    response = await client.post(f"/rest/v1/invoices/{iid}/resolve", json=body)
    assert response.status_code == 409, response.text
    answer = response.json()
    assert answer["error"] == "invalid_state"
    assert (answer["status"], answer["currentAttempt"]) == ("REVIEW", 2)
    assert "attempt 1" in answer["message"]
    assert "attempt 2" in answer["message"]
    await _unchanged(client, database, iid)


async def test_a_resolve_naming_the_open_attempt_or_none_settles_it(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    iid = await _review_at_attempt_2(client, database, clock)
    ok = await client.post(
        f"/rest/v1/invoices/{iid}/resolve",
        json={"charged": True, "chargeId": "ch_2", "attempt": 2},
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["status"] == "PAID"
    assert [a.charge_id for a in await attempts_of(database, iid)] == [None, "ch_2"]
    # without the field: today's behaviour (the invoice's open attempt)
    other = await _review_at_attempt_2(client, database, clock)
    plain = await client.post(f"/rest/v1/invoices/{other}/resolve", json={"charged": False})
    assert plain.status_code == 200, plain.text
    assert plain.json()["status"] == "PENDING"


async def test_a_resolve_naming_an_attempt_of_an_invoice_not_in_review_is_409(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    iid = await new_invoice(client, await new_customer(client))
    await _to_review(client, database, clock)
    done = await client.post(f"/rest/v1/invoices/{iid}/resolve", json={"charged": False})
    assert done.status_code == 200
    again = await client.post(
        f"/rest/v1/invoices/{iid}/resolve", json={"charged": False, "attempt": 1}
    )
    assert again.status_code == 409, again.text
    answer = again.json()
    assert (answer["error"], answer["status"], answer["currentAttempt"]) == (
        "invalid_state",
        "PENDING",
        1,
    )


@pytest.mark.parametrize("attempt", [0, -1, "1", "abc", 1.5, 1.0, True, [1], {}, 2**31, 10**30])
async def test_a_bad_attempt_is_422_naming_it_and_changes_nothing(
    client: httpx.AsyncClient, database: Database, clock: ManualClock, attempt: Any
) -> None:
    iid = await new_invoice(client, await new_customer(client))
    await _to_review(client, database, clock)
    response = await client.post(
        f"/rest/v1/invoices/{iid}/resolve", json={"charged": False, "attempt": attempt}
    )
    assert response.status_code == 422, response.text
    answer = response.json()
    assert (answer["error"], answer["field"]) == ("validation_error", "attempt"), answer
    assert "attempt" in answer["message"]
    assert (await get_json(client, f"/rest/v1/invoices/{iid}"))["status"] == "REVIEW"
    assert await get_json(client, f"/rest/v1/invoices/{iid}/actions") == []


# -- the dashboard ----------------------------------------------------------------------


@pytest.mark.parametrize("action", ["resolve-charged", "resolve-not-charged"])
async def test_the_confirm_form_carries_the_attempt_and_a_stale_one_is_refused(
    signed_in: httpx.AsyncClient,  # noqa: F811
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    action: str,
) -> None:
    """The issue's scenario: the page opened at attempt 1 cannot settle attempt 2."""
    iid = await new_invoice(client, await new_customer(client))
    await _to_review(client, database, clock)
    page = await signed_in.get(f"/invoices/{iid}/{action}")
    assert page.status_code == 200, page.text
    csrf, attempt = CSRF.search(page.text), ATTEMPT.search(page.text)
    assert csrf is not None, page.text
    assert attempt is not None, page.text
    assert attempt.group(1) == "1"
    assert "attempt 1" in page.text
    stale = {"csrf_token": csrf.group(1), "attempt": attempt.group(1), "note": "stale"}
    if action == "resolve-charged":
        stale["charge_id"] = "ch_stale"

    # meanwhile: attempt 1 resolved (by someone else), attempt 2 reaches REVIEW
    first = await client.post(f"/rest/v1/invoices/{iid}/resolve", json={"charged": False})
    assert first.status_code == 200, first.text
    await _to_review(client, database, clock)

    response = await signed_in.post(f"/invoices/{iid}/{action}", data=stale)
    assert response.status_code == 409, response.text
    assert "Nothing was changed" in response.text
    assert "attempt 2" in response.text
    await _unchanged(client, database, iid)

    # the page opened now carries attempt 2, and settles it
    page = await signed_in.get(f"/invoices/{iid}/{action}")
    fresh = ATTEMPT.search(page.text)
    assert fresh is not None
    assert fresh.group(1) == "2"
    response = await signed_in.post(
        f"/invoices/{iid}/{action}", data={**stale, "attempt": "2", "note": "fresh"}
    )
    assert response.status_code == 303, response.text
    row = await invoice_row(database, iid)
    assert row.status == ("PAID" if action == "resolve-charged" else "PENDING")


@pytest.mark.parametrize("attempt", ["0", "-1", "1.5", "x", "", "99999999999999999999"])
async def test_the_dashboard_refuses_a_bad_attempt_with_a_400_page(
    signed_in: httpx.AsyncClient,  # noqa: F811
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    attempt: str,
) -> None:
    iid = await new_invoice(client, await new_customer(client))
    await _to_review(client, database, clock)
    page = await signed_in.get(f"/invoices/{iid}/resolve-not-charged")
    csrf = CSRF.search(page.text)
    assert csrf is not None
    response = await signed_in.post(
        f"/invoices/{iid}/resolve-not-charged",
        data={"csrf_token": csrf.group(1), "attempt": attempt},
    )
    assert response.status_code == 400, response.text
    assert "attempt" in response.text
    assert (await get_json(client, f"/rest/v1/invoices/{iid}"))["status"] == "REVIEW"
