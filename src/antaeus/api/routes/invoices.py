from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from antaeus.api.auth import Principal
from antaeus.api.context import Ctx
from antaeus.api.errors import ApiError, not_found
from antaeus.api.idempotency import IdempotencyKey, run_idempotent
from antaeus.api.jsonio import ExactJSONRoute, JSONResponse
from antaeus.api.pagination import Page, paginate
from antaeus.api.schemas import (
    ERROR_RESPONSES,
    MAX_ID,
    InvoiceCreate,
    InvoiceRead,
    invoice_json,
)
from antaeus.domain.calendar import next_first_of_month
from antaeus.domain.invoice import InvoiceStatus
from antaeus.domain.money import Money
from antaeus.storage.repositories.customers import CustomerRepository
from antaeus.storage.repositories.invoices import InvoiceRepository

router = APIRouter(prefix="/rest/v1/invoices", tags=["invoices"], route_class=ExactJSONRoute)

InvoiceId = Annotated[int, Path(ge=1, le=MAX_ID, description="invoice id")]


@router.get(
    "",
    summary="List invoices by ascending id",
    response_model=list[InvoiceRead],
    responses=ERROR_RESPONSES,
)
async def list_invoices(
    request: Request,
    ctx: Ctx,
    _who: Principal,
    page: Page,
    status: Annotated[InvoiceStatus | None, Query(description="only this status")] = None,
    customer_id: Annotated[
        int | None, Query(alias="customerId", ge=1, le=MAX_ID, description="only this customer's")
    ] = None,
) -> JSONResponse:
    async with ctx.db.read() as conn:
        rows = await InvoiceRepository(conn).page(
            after=page.after, limit=page.limit + 1, status=status, customer_id=customer_id
        )
    items, headers = paginate(request, rows, page)
    return JSONResponse([invoice_json(i) for i in items], headers=headers)


@router.get("/{id}", summary="One invoice", response_model=InvoiceRead, responses=ERROR_RESPONSES)
async def get_invoice(id: InvoiceId, ctx: Ctx, _who: Principal) -> JSONResponse:
    async with ctx.db.read() as conn:
        invoice = await InvoiceRepository(conn).get(id)
    if invoice is None:
        raise not_found("invoice", id)
    return JSONResponse(invoice_json(invoice))


@router.post(
    "",
    status_code=201,
    summary="Create an invoice",
    description="`dueAt` defaults to the next first of the month at midnight in the customer's "
    "time zone. The amount's currency must be the customer's.",
    response_model=InvoiceRead,
    responses=ERROR_RESPONSES,
)
async def create_invoice(
    body: InvoiceCreate, ctx: Ctx, _who: Principal, idempotency_key: IdempotencyKey = None
) -> Response:
    async def effect(conn: AsyncConnection) -> tuple[int, Any, dict[str, str]]:
        customer = await CustomerRepository(conn).get(body.customerId)
        if customer is None:
            raise ApiError(
                422,
                "customer_not_found",
                f"customer {body.customerId} does not exist",
                field="customerId",
            )
        if customer.currency is not body.amount.currency:
            raise ApiError(
                422,
                "currency_mismatch",
                f"customer {customer.id} is billed in {customer.currency.value}, "
                f"not {body.amount.currency.value}",
                field="amount.currency",
            )
        now = ctx.clock.now()
        due_at = body.dueAt or next_first_of_month(now, customer.timezone)
        amount = Money(body.amount.value, body.amount.currency)
        invoice = await InvoiceRepository(conn).create(customer.id, amount, due_at, now)
        return 201, invoice_json(invoice), {"Location": f"/rest/v1/invoices/{invoice.id}"}

    return await run_idempotent(
        ctx, "POST /rest/v1/invoices", idempotency_key, body.model_dump(mode="json"), effect
    )
