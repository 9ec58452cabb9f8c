from __future__ import annotations

from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Path, Request, Response

from antaeus.api.auth import AuthenticatedRoute, Principal
from antaeus.api.context import Ctx
from antaeus.api.errors import CurrencyMismatchError, FieldInvalidError, not_found
from antaeus.api.idempotency import IdempotencyKey, run_idempotent
from antaeus.api.jsonio import JSONResponse
from antaeus.api.pagination import Page, paginate
from antaeus.api.schemas import (
    ERROR_RESPONSES,
    MAX_ID,
    CreditAdjustmentCreate,
    CreditEntryRead,
    CustomerCreate,
    CustomerPatch,
    CustomerRead,
    DigitsInt,
    credit_entry_json,
    customer_json,
)
from antaeus.domain.money import MAX_MINOR, Money
from antaeus.storage.database import WriteConnection
from antaeus.storage.repositories.credit import CreditReason, CreditRepository
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


# -- credit (issue 21) -----------------------------------------------------------------


@router.get(
    "/{id}/credit-entries",
    summary="The customer's credit entries by ascending id",
    description="Every change of the customer's credit balance (`creditBalance`), with its "
    "sign and the balance after it: `change` (a change `now` whose net was not positive), "
    "`cancel` (a cancel `now` with `prorate`), `invoice` (a generated invoice used it), "
    "`adjustment` (a person's, with a note). The sum of the amounts is the balance.",
    response_model=list[CreditEntryRead],
    responses=ERROR_RESPONSES,
)
async def list_credit_entries(
    id: CustomerId, request: Request, ctx: Ctx, _who: Principal, page: Page
) -> JSONResponse:
    async with ctx.db.read() as conn:
        if await CustomerRepository(conn).get(id) is None:
            raise not_found("customer", id)
        rows = await CreditRepository(conn).page(id, after=page.after, limit=page.limit + 1)
    items, headers = paginate(request, rows, page)
    return JSONResponse([credit_entry_json(e) for e in items], headers=headers)


@router.post(
    "/{id}/credit-entries",
    status_code=201,
    summary="Adjust the customer's credit",
    description="A person's adjustment (reason `adjustment`, the token's name as actor): "
    "`amount` positive adds credit, negative takes it, in the customer's currency (422 "
    "`currency_mismatch`, field `amount.currency`) with its decimals; the balance never "
    "falls below zero (422, field `amount`, nothing written). `note`: 1-500 characters, "
    "one line. Answers 201 with the entry.",
    response_model=CreditEntryRead,
    responses=ERROR_RESPONSES,
)
async def adjust_credit(
    id: CustomerId,
    body: CreditAdjustmentCreate,
    ctx: Ctx,
    who: Principal,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    async def effect(conn: WriteConnection) -> tuple[int, Any, dict[str, str]]:
        await SubscriptionRepository(conn).hold_customer_for_update(id)
        customer = await CustomerRepository(conn).get(id)
        if customer is None:
            raise not_found("customer", id)
        currency = customer.currency
        if body.amount.currency is not currency:
            raise CurrencyMismatchError(
                f"customer {id}'s credit is in {currency.value}, not {body.amount.currency.value}",
                field="amount.currency",
            )
        amount = Money(body.amount.value, currency)
        balance = customer.credit_minor + amount.minor
        if balance < 0:
            raise FieldInvalidError(
                f"amount: the credit would fall below zero ({customer.credit} less "
                f"{-amount} is {Money.from_minor(balance, currency)})",
                field="amount",
                creditBalance={"value": customer.credit.value, "currency": currency.value},
            )
        if balance > MAX_MINOR:
            raise FieldInvalidError(
                f"amount: the credit would pass the largest amount of {currency.value} "
                f"({currency.max_amount})",
                field="amount",
            )
        entry = await CreditRepository(conn).add(
            customer_id=id,
            currency=currency,
            amount_minor=amount.minor,
            balance_before=customer.credit_minor,
            reason=CreditReason.ADJUSTMENT,
            actor=who,
            now=ctx.clock.now(),
            note=body.note,
        )
        return 201, credit_entry_json(entry), {}

    return await run_idempotent(
        ctx,
        f"POST /rest/v1/customers/{id}/credit-entries",
        idempotency_key,
        body.model_dump(mode="json"),
        effect,
    )
