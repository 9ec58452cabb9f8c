from __future__ import annotations

from typing import Annotated, Any

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
    CustomerRead,
    DigitsInt,
    customer_json,
)
from antaeus.storage.database import WriteConnection
from antaeus.storage.repositories.customers import CustomerRepository

router = APIRouter(prefix="/rest/v1/customers", tags=["customers"], route_class=AuthenticatedRoute)

CustomerId = Annotated[DigitsInt, Path(ge=1, le=MAX_ID, description="customer id")]


@router.get(
    "",
    summary="List customers by ascending id",
    response_model=list[CustomerRead],
    responses=ERROR_RESPONSES,
)
async def list_customers(request: Request, ctx: Ctx, _who: Principal, page: Page) -> JSONResponse:
    async with ctx.db.read() as conn:
        rows = await CustomerRepository(conn).page(after=page.after, limit=page.limit + 1)
    items, headers = paginate(request, rows, page)
    return JSONResponse([customer_json(c) for c in items], headers=headers)


@router.get("/{id}", summary="One customer", response_model=CustomerRead, responses=ERROR_RESPONSES)
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
    response_model=CustomerRead,
    responses=ERROR_RESPONSES,
)
async def create_customer(
    body: CustomerCreate, ctx: Ctx, _who: Principal, idempotency_key: IdempotencyKey = None
) -> Response:
    async def effect(conn: WriteConnection) -> tuple[int, Any, dict[str, str]]:
        customer = await CustomerRepository(conn).create(
            body.currency, body.timezone, ctx.clock.now()
        )
        return 201, customer_json(customer), {"Location": f"/rest/v1/customers/{customer.id}"}

    return await run_idempotent(
        ctx, "POST /rest/v1/customers", idempotency_key, body.model_dump(mode="json"), effect
    )
