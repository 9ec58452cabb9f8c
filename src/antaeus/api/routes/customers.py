from __future__ import annotations

from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Path, Request, Response

from antaeus.api.auth import AuthenticatedRoute, Principal
from antaeus.api.context import Ctx
from antaeus.api.errors import not_found
from antaeus.api.idempotency import IdempotencyKey, run_idempotent
from antaeus.api.jsonio import JSONResponse
from antaeus.api.pagination import Page, paginate
from antaeus.api.schemas import (
    ERROR_RESPONSES,
    MAX_ID,
    CustomerCreate,
    CustomerPatch,
    CustomerRead,
    DigitsInt,
    customer_json,
)
from antaeus.storage.database import WriteConnection
from antaeus.storage.repositories.customers import CustomerRepository
from antaeus.storage.repositories.subscriptions import SubscriptionRepository

log = structlog.get_logger("antaeus.api")

router = APIRouter(prefix="/rest/v1/customers", tags=["customers"], route_class=AuthenticatedRoute)

CustomerId = Annotated[DigitsInt, Path(ge=1, le=MAX_ID, description="customer id")]


@router.get(
    "",
    summary="List customers by ascending id",
    description="`limit` and `after` page; the next page is in the `Link` header.",
    response_model=list[CustomerRead],
    responses=ERROR_RESPONSES,
)
async def list_customers(request: Request, ctx: Ctx, _who: Principal, page: Page) -> JSONResponse:
    async with ctx.db.read() as conn:
        rows = await CustomerRepository(conn).page(after=page.after, limit=page.limit + 1)
    items, headers = paginate(request, rows, page)
    return JSONResponse([customer_json(c) for c in items], headers=headers)


@router.get(
    "/{id}",
    summary="One customer",
    description="The customer's currency, time zone and provider references.",
    response_model=CustomerRead,
    responses=ERROR_RESPONSES,
)
async def get_customer(id: CustomerId, ctx: Ctx, _who: Principal) -> JSONResponse:
    async with ctx.db.read() as conn:
        customer = await CustomerRepository(conn).get(id)
    if customer is None:
        raise not_found("customer", id)
    return JSONResponse(customer_json(customer))


@router.post(
    "",
    status_code=201,
    summary="Create a customer",
    description="`currency` (ISO 4217) and `timezone` (IANA) are required; "
    "`providerCustomerId` and `providerPaymentMethodId` are the customer's "
    "references at the payment provider (optional, needed by Stripe). With "
    "an `Idempotency-Key`, a repeat answers the first answer and creates "
    "nothing.",
    response_model=CustomerRead,
    responses=ERROR_RESPONSES,
)
async def create_customer(
    body: CustomerCreate, ctx: Ctx, _who: Principal, idempotency_key: IdempotencyKey = None
) -> Response:
    async def effect(conn: WriteConnection) -> tuple[int, Any, dict[str, str]]:
        customer = await CustomerRepository(conn).create(
            body.currency,
            body.timezone,
            ctx.clock.now(),
            provider_customer_id=body.providerCustomerId,
            provider_payment_method_id=body.providerPaymentMethodId,
        )
        return 201, customer_json(customer), {"Location": f"/rest/v1/customers/{customer.id}"}

    return await run_idempotent(
        ctx, "POST /rest/v1/customers", idempotency_key, body.model_dump(mode="json"), effect
    )


@router.patch(
    "/{id}",
    summary="Change a customer's provider references or time zone",
    description="Only `providerCustomerId`, `providerPaymentMethodId` and `timezone` can "
    "change; only the fields present change, and `null` clears a provider reference. A new "
    "time zone applies to the customer's invoices not yet due: one due at midnight on a first "
    "of the month in the old zone moves to the same first of the month in the new zone; "
    "invoices already due, attempted or in a billing run keep their due time.",
    response_model=CustomerRead,
    responses=ERROR_RESPONSES,
)
async def change_customer(
    id: CustomerId,
    body: CustomerPatch,
    ctx: Ctx,
    _who: Principal,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    changes = body.changes()
    moved: list[int] = []

    async def effect(conn: WriteConnection) -> tuple[int, Any, dict[str, str]]:
        changed = await CustomerRepository(conn).change(id, changes, ctx.clock.now())
        if changed is None:
            raise not_found("customer", id)
        if "timezone" in changes:  # its subscriptions' next periods fall due in the new zone
            await SubscriptionRepository(conn).follow_zone(id, ctx.clock.now())
        moved.append(changed.invoices_moved)
        return 200, customer_json(changed.customer), {}

    response = await run_idempotent(
        ctx,
        f"PATCH /rest/v1/customers/{id}",
        idempotency_key,
        body.model_dump(mode="json", exclude_unset=True),
        effect,
    )
    if moved and moved[-1]:  # once committed (not on a replay)
        log.info("customer_invoices_follow_timezone", customer_id=id, invoices_moved=moved[-1])
    return response
