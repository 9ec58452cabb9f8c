"""Property-based fuzzing of the whole REST API with Schemathesis.

Schemathesis reads the app's own OpenAPI document, generates valid and invalid
requests for every operation (boundary values, then random data) and sends
them, with a real token, to the real app on a real database (SQLite, and
PostgreSQL when `ANTAEUS_TEST_POSTGRES_URL` is set). A request fails the test
when the app answers 5xx, accepts invalid input, or answers something its own
schema does not describe.

The schema is loaded at import (it does not depend on the database), and each
test item sends its requests in-process to a fresh app whose lifespan
Schemathesis runs and ends with the item. (`schemathesis.pytest.from_fixture`
would be the natural fit, but Schemathesis 4.32 sets `Node._nodeid`, which
pytest 9.2 no longer has.) What the fuzzer found is pinned down at the end.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from antaeus.api.app import create_app
from antaeus.clock import ManualClock
from antaeus.config import Settings
from antaeus.domain.money import ORIGINAL_CURRENCIES, Currency, Money
from antaeus.domain.periods import BillingAnchor, Interval
from antaeus.storage.database import Database
from antaeus.storage.repositories.customers import CustomerRepository
from antaeus.storage.repositories.invoices import InvoiceRepository
from antaeus.storage.repositories.plans import PlanRepository
from antaeus.storage.repositories.subscriptions import SubscriptionRepository

#: Up to this many random requests per operation and mode, besides Schemathesis'
#: deterministic boundary-value ("coverage") cases: keeps the file under a minute.
#: For a deeper run: ANTAEUS_FUZZ_MAX_EXAMPLES=500 pytest tests/api/test_fuzz.py
MAX_EXAMPLES = int(os.environ.get("ANTAEUS_FUZZ_MAX_EXAMPLES", "20"))
MAX_ID = 2**63 - 1
BASE_URL = "http://testserver"

#: Seeded before every item, on empty tables: customer k bills in the k-th
#: currency and has invoices 2k-1 (due before the test clock's now) and 2k (due after).
PAST_DUE = datetime(2026, 11, 1, tzinfo=UTC)
NOT_YET_DUE = datetime(2026, 12, 1, tzinfo=UTC)
CUSTOMERS: dict[int, Currency] = {k: c for k, c in enumerate(ORIGINAL_CURRENCIES, start=1)}
INVOICE_IDS = list(range(1, 2 * len(CUSTOMERS) + 1))
#: one monthly plan per customer's currency, and each customer on its plan (same ids)
PLAN_IDS = list(CUSTOMERS)
KNOWN_IDS = {
    "/rest/v1/customers": list(CUSTOMERS),
    "/rest/v1/invoices": INVOICE_IDS,
    "/rest/v1/plans": PLAN_IDS,
    "/rest/v1/subscriptions": list(CUSTOMERS),
}

CHECKS = [
    schemathesis.checks.not_a_server_error,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
]

_openapi = create_app(Settings(DATABASE_URL="sqlite:///unused.db")).openapi()
schema = schemathesis.openapi.from_dict(_openapi)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=MAX_EXAMPLES,
    deterministic=True,  # the same requests every run: a default-suite test must not flake
    database="none",
)


def _is_id(value: object) -> bool:
    return type(value) is int and 1 <= value <= MAX_ID


@schema.hook("flatmap_path_parameters")
def existing_ids(context: schemathesis.HookContext, path_parameters: dict[str, Any]) -> Any:
    """Also try ids of rows that exist, so GET by id reaches real rows (valid ids only)."""
    assert context.operation is not None
    path = context.operation.path
    known = KNOWN_IDS.get(path.split("/{", 1)[0]) if "/{id}" in path else None
    value = (path_parameters or {}).get("id")
    if known is None or not _is_id(value):
        return st.just(path_parameters)  # an invalid id stays exactly as generated
    existing = st.sampled_from(known).map(lambda v: {**path_parameters, "id": v})
    return st.one_of(st.just(path_parameters), existing)


@schema.hook("flatmap_body")
def existing_customer(context: schemathesis.HookContext, body: Any) -> Any:
    """Also bill an existing customer in its own currency, so invoices get created."""
    assert context.operation is not None
    if context.operation.path == "/rest/v1/subscriptions" and isinstance(body, dict):
        if not (_is_id(body.get("customerId")) and _is_id(body.get("planId"))):
            return st.just(body)
        pairs = st.sampled_from(list(CUSTOMERS)).map(
            lambda cid: {**body, "customerId": cid, "planId": cid}
        )
        return st.one_of(st.just(body), pairs)
    if context.operation.path != "/rest/v1/invoices" or not isinstance(body, dict):
        return st.just(body)
    amount = body.get("amount")
    currency = amount.get("currency") if isinstance(amount, dict) else None
    if not _is_id(body.get("customerId")) or currency not in set(ORIGINAL_CURRENCIES):
        return st.just(body)
    matching = [cid for cid, cur in CUSTOMERS.items() if cur == currency]
    existing = st.sampled_from(matching).map(lambda cid: {**body, "customerId": cid})
    return st.one_of(st.just(body), existing)


async def _seed(database: Database, now: datetime) -> None:
    async with database.write() as conn:
        customers = CustomerRepository(conn)
        invoices = InvoiceRepository(conn)
        for expected_id, currency in CUSTOMERS.items():
            customer = await customers.create(currency, "Europe/Copenhagen", now)
            assert customer.id == expected_id
            for value, due in (("10.00", PAST_DUE), ("1234567.89", NOT_YET_DUE)):
                await invoices.create(customer.id, Money.of(value, currency), due, now)
        for cid, currency in CUSTOMERS.items():
            plan = await PlanRepository(conn).create(
                code=f"plan-{currency.code}",
                name=f"Monthly {currency.code}",
                amount=Money.of("30.00", currency),
                interval=Interval.MONTH,
                interval_count=1,
                trial_days=0,
                now=now,
            )
            assert plan is not None
            assert plan.id == cid
            sid = await SubscriptionRepository(conn).create(
                customer_id=cid,
                plan_id=plan.id,
                quantity=1,
                billing_anchor=BillingAnchor.CALENDAR,
                start_date=now.date(),
                trial_end_date=None,
                next_due_at=None,
                now=now,
            )
            assert sid == cid


@pytest.fixture
async def fuzz_app(settings: Settings, database: Database, clock: ManualClock) -> FastAPI:
    await _seed(database, clock.now())
    # No `database=` here: the app builds its own in its lifespan, which
    # Schemathesis runs on its own event loop and ends after the test.
    return create_app(settings, clock=clock)


# --- a known app bug -------------------------------------------------------------------
#
# A bare JSON number as the whole body is accepted by operations whose body is an
# optional object. The app parses JSON numbers to `Decimal` (api/jsonio.py) and
# FastAPI validates bodies with `from_attributes=True`, so pydantic takes the
# Decimal for an object without attributes, i.e. `{}`. Schemathesis' reproductions:
#   curl -X POST -H 'Authorization: Bearer …' -H 'Content-Type: application/json' \
#        -d -2.219809185268943e+16 http://testserver/rest/v1/invoices/5/void
# answered 200 and voided invoice 5; `-d -3.59e+151 …/rest/v1/billing` opened a run.
# `test_a_bare_number_is_not_a_json_object_body` pins it down. Fixed: every request
# body model refuses anything but a JSON object, so nothing is skipped any more.

NUMBER_BODY_BROKEN: set[str] = set()
NUMBER_BODY_BUG = pytest.mark.xfail(
    strict=True,
    reason="app bug: a bare JSON number body (parsed to Decimal) passes as an empty "
    "optional body model, through FastAPI's from_attributes validation",
)


def _is_known_number_body_bug(case: schemathesis.Case[Any]) -> bool:
    # A float is sent as a JSON number with a fraction or exponent (a Decimal to the
    # app); integers are rightly refused and stay in the run.
    label = f"{case.method.upper()} {case.operation.path}"
    return label in NUMBER_BODY_BROKEN and type(case.body) is float


@schema.parametrize()
# One app and database for all of an operation's requests, on purpose: created
# rows accumulate, as they do in production.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_api_survives_fuzzing(case: schemathesis.Case[Any], fuzz_app: FastAPI, token: str) -> None:
    assume(not _is_known_number_body_bug(case))
    case.call_and_validate(
        base_url=BASE_URL,
        app=fuzz_app,
        headers={"Authorization": f"Bearer {token}"},
        checks=CHECKS,
    )


# --- what the fuzzer found, pinned down -------------------------------------------------


def _object_body_operations() -> list[Any]:
    """Every operation that takes a JSON body, as a pytest param ("METHOD /path")."""
    params = []
    for path, item in _openapi["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                label = f"{method.upper()} {path}"
                marks = [NUMBER_BODY_BUG] if label in NUMBER_BODY_BROKEN else []
                params.append(pytest.param(method.upper(), path, id=label, marks=marks))
    return params


@pytest.mark.parametrize(("method", "path"), _object_body_operations())
async def test_a_bare_number_is_not_a_json_object_body(
    method: str, path: str, client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    await _seed(database, clock.now())
    url = path.replace("{id}", "1")  # invoice 1 (or customer 1) exists; invoice 1 is due
    response = await client.request(
        method, url, content=b"1.5", headers={"Content-Type": "application/json"}
    )
    # Refused by validation, before any lookup or state check (404, 409) could answer.
    assert response.status_code in (400, 422), (
        f"{method} {url}: {response.status_code} {response.text}"
    )
    assert (await client.get("/rest/v1/invoices/1")).json()["status"] == "PENDING"
