"""The preview of a customer's next generated invoice (issue 21).

It calls the very function generation calls (`domain.subscription.upcoming_invoice`
shares `_invoices` with `due_invoices`) on the same rows, so that the invoice
generated later is the same, line for line, if nothing changes in between.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field
from sqlalchemy import select

from antaeus.api.auth import AuthenticatedRoute, Principal
from antaeus.api.context import Ctx
from antaeus.api.errors import NoUpcomingInvoiceError, not_found
from antaeus.api.jsonio import JSONResponse
from antaeus.api.schemas import ERROR_RESPONSES, MAX_ID, DigitsInt, InvoiceLineRead, MoneyRead
from antaeus.domain.events import line_data
from antaeus.domain.money import Money
from antaeus.domain.subscription import upcoming_invoice
from antaeus.exactjson import rfc3339
from antaeus.storage.repositories.customers import CustomerRepository
from antaeus.storage.repositories.plans import PlanRepository
from antaeus.storage.repositories.subscriptions import SubscriptionRepository
from antaeus.storage.tables import customers

router = APIRouter(prefix="/rest/v1/customers", tags=["customers"], route_class=AuthenticatedRoute)

CustomerId = Annotated[DigitsInt, Path(ge=1, le=MAX_ID, description="customer id")]


class UpcomingLineRead(InvoiceLineRead):
    id: None = Field(default=None, description="null: the line is not written yet")  # type: ignore[assignment]


class UpcomingInvoiceRead(BaseModel):
    customerId: int  # noqa: N815
    dueAt: datetime = Field(description="when it falls due (and is generated)")  # noqa: N815
    amount: MoneyRead
    lines: list[UpcomingLineRead] = Field(description="as they will be")


@router.get(
    "/{id}/upcoming-invoice",
    summary="The customer's next generated invoice, as it will be",
    description="Writes nothing. The invoice generation makes at `dueAt` (or at the next "
    "generation, if that moment is past) is the same, line for line, if nothing changes "
    "in between (a change, a cancel, credit, a time zone). 404 `no_upcoming_invoice` when "
    "no subscription of the customer has a period left to bill.",
    response_model=UpcomingInvoiceRead,
    responses=ERROR_RESPONSES,
)
async def upcoming(id: CustomerId, ctx: Ctx, _who: Principal) -> JSONResponse:
    async with ctx.db.read() as conn:
        customer = await CustomerRepository(conn).get(id)
        if customer is None:
            raise not_found("customer", id)
        credit_minor = await conn.scalar(
            select(customers.c.credit_minor).where(customers.c.id == id)
        )
        rows = await SubscriptionRepository(conn).billing_of(id)
        plans = await PlanRepository(conn).many(i for r in rows for i in r.plan_ids())
    credit = Money.from_minor(int(credit_minor or 0), customer.currency)
    draft = upcoming_invoice(
        [r.terms(plans) for r in rows], timezone=customer.timezone, credit=credit
    )
    if draft is None:
        raise NoUpcomingInvoiceError(f"customer {id} has no subscription period left to bill")
    amount = draft.amount
    return JSONResponse(
        {
            "customerId": id,
            "dueAt": rfc3339(draft.due_at),
            "amount": {"value": amount.value, "currency": amount.currency.value},
            "lines": [
                {
                    **line_data(
                        0,
                        line.kind,
                        line.description,
                        line.amount,
                        line.subscription_id,
                        line.plan_id,
                        line.period_start,
                        line.period_end,
                        line.quantity,
                    ),
                    "id": None,
                }
                for line in draft.lines
            ],
        }
    )
