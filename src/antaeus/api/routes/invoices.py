from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from antaeus.api.auth import AuthenticatedRoute, Principal
from antaeus.api.context import AppContext, Ctx
from antaeus.api.errors import (
    CurrencyMismatchError,
    CustomerNotFoundError,
    not_found,
)
from antaeus.api.idempotency import IdempotencyKey, run_idempotent, run_idempotent_in_steps
from antaeus.api.jsonio import JSONResponse
from antaeus.api.pagination import Page, paginate
from antaeus.api.schemas import (
    ERROR_RESPONSES,
    MAX_ID,
    ActionBody,
    ActionRead,
    AttemptRead,
    BulkActionBody,
    BulkResultRead,
    DigitsInt,
    InvoiceCreate,
    InvoiceRead,
    ResolveBody,
    action_json,
    attempt_json,
    invoice_json,
)
from antaeus.billing import service
from antaeus.domain.calendar import next_first_of_month
from antaeus.domain.events import InvoiceCreated, row
from antaeus.domain.invoice import FailureReason, Invoice, InvoiceStatus
from antaeus.domain.money import Money
from antaeus.storage.database import WriteConnection
from antaeus.storage.repositories.actions import ActionRepository
from antaeus.storage.repositories.billing import BillingRepository
from antaeus.storage.repositories.customers import CustomerRepository
from antaeus.storage.repositories.invoices import BulkAction, InvoiceRepository
from antaeus.storage.repositories.reconciliations import ReconciliationRepository

router = APIRouter(prefix="/rest/v1/invoices", tags=["invoices"], route_class=AuthenticatedRoute)

InvoiceId = Annotated[DigitsInt, Path(ge=1, le=MAX_ID, description="invoice id")]


@router.get(
    "",
    summary="List invoices by ascending id",
    description="`status`, `customerId` and `lastFailure` filter (all given must "
    "match); `limit` and `after` page, the next page in the `Link` header.",
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
        DigitsInt | None,
        Query(alias="customerId", ge=1, le=MAX_ID, description="only this customer's"),
    ] = None,
    last_failure: Annotated[
        FailureReason | None,
        Query(alias="lastFailure", description="only those whose last failure is this"),
    ] = None,
    subscription_id: Annotated[
        DigitsInt | None,
        Query(
            alias="subscriptionId",
            ge=1,
            le=MAX_ID,
            description="only those with a line of this subscription",
        ),
    ] = None,
) -> JSONResponse:
    async with ctx.db.read() as conn:
        repo = InvoiceRepository(conn)
        rows = await repo.page(
            after=page.after,
            limit=page.limit + 1,
            status=status,
            customer_id=customer_id,
            last_failure=last_failure,
            subscription_id=subscription_id,
        )
        items, headers = paginate(request, rows, page)
        lines = await repo.lines_of(i.id for i in items)
    return JSONResponse([invoice_json(i, lines[i.id]) for i in items], headers=headers)


async def _shown(ctx: AppContext, invoice: Invoice) -> JSONResponse:
    """The invoice with its lines, read after the action that answered it."""
    async with ctx.db.read() as conn:
        lines = await InvoiceRepository(conn).lines_of([invoice.id])
    return JSONResponse(invoice_json(invoice, lines[invoice.id]))


@router.get(
    "/{id}",
    summary="One invoice",
    description="The invoice's amount, status, due time, attempts so far, last failure "
    "and next attempt time.",
    response_model=InvoiceRead,
    responses=ERROR_RESPONSES,
)
async def get_invoice(id: InvoiceId, ctx: Ctx, _who: Principal) -> JSONResponse:
    async with ctx.db.read() as conn:
        repo = InvoiceRepository(conn)
        invoice = await repo.get(id)
        if invoice is None:
            raise not_found("invoice", id)
        lines = await repo.lines_of([id])
    return JSONResponse(invoice_json(invoice, lines[id]))


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
    async def effect(conn: WriteConnection) -> tuple[int, Any, dict[str, str]]:
        customer = await CustomerRepository(conn).get(body.customerId)
        if customer is None:
            raise CustomerNotFoundError(
                f"customer {body.customerId} does not exist",
                field="customerId",
            )
        if customer.currency is not body.amount.currency:
            raise CurrencyMismatchError(
                f"customer {customer.id} is billed in {customer.currency.value}, "
                f"not {body.amount.currency.value}",
                field="amount.currency",
            )
        now = ctx.clock.now()
        due_at = body.dueAt or next_first_of_month(now, customer.timezone)
        amount = Money(body.amount.value, body.amount.currency)
        repo = InvoiceRepository(conn)
        invoice = await repo.create(customer.id, amount, due_at, now)
        lines = (await repo.lines_of([invoice.id]))[invoice.id]
        await BillingRepository(conn).add_events([row(InvoiceCreated(invoice, tuple(lines)))], now)
        return 201, invoice_json(invoice, lines), {"Location": f"/rest/v1/invoices/{invoice.id}"}

    return await run_idempotent(
        ctx, "POST /rest/v1/invoices", idempotency_key, body.model_dump(mode="json"), effect
    )


_BULK_DESCRIPTION = (
    "Acts on every invoice matching the filter (`status`, `lastFailure`, `customerId`: "
    "every field given must match, at least one is required) whose status allows the "
    "action, each one as the single-invoice action does it (its own entry in "
    "`GET /rest/v1/invoices/{id}/actions`, with the `note`, and its own event), in "
    "batches of transactions. Invoices that do not allow it (or that a worker or a "
    "person changed first) are skipped. The filter goes in `filter` or at the top level "
    "of the body. With an `Idempotency-Key`, a repeat answers the first counts."
)


async def _bulk(
    action: BulkAction,
    body: BulkActionBody,
    ctx: AppContext,
    who: str,
    idempotency_key: str | None,
) -> Response:
    async def work() -> tuple[int, Any]:
        done = await service.bulk_action(
            ctx.db, ctx.clock, action, body.wanted(), actor=who, note=body.note
        )
        return 200, done.json()

    return await run_idempotent_in_steps(
        ctx, f"POST /rest/v1/invoices/{action}", idempotency_key, body.normalized(), work
    )


@router.post(
    "/retry",
    summary="Retry every FAILED invoice matching a filter",
    description="Each matching FAILED invoice becomes PENDING and due now (as "
    "`POST /rest/v1/invoices/{id}/retry`). " + _BULK_DESCRIPTION,
    response_model=BulkResultRead,
    responses=ERROR_RESPONSES,
)
async def retry_invoices(
    body: BulkActionBody, ctx: Ctx, who: Principal, idempotency_key: IdempotencyKey = None
) -> Response:
    return await _bulk("retry", body, ctx, who, idempotency_key)


@router.post(
    "/void",
    summary="Void every invoice matching a filter that may be voided",
    description="Each matching FAILED invoice, and each PENDING one with no attempt of "
    "unknown outcome open, becomes VOID (as `POST /rest/v1/invoices/{id}/void`). "
    + _BULK_DESCRIPTION,
    response_model=BulkResultRead,
    responses=ERROR_RESPONSES,
)
async def void_invoices(
    body: BulkActionBody, ctx: Ctx, who: Principal, idempotency_key: IdempotencyKey = None
) -> Response:
    return await _bulk("void", body, ctx, who, idempotency_key)


@router.post(
    "/{id}/retry",
    summary="Retry a FAILED invoice (after the cause was fixed)",
    description="The invoice becomes PENDING and due now; the next charge is a new attempt.",
    response_model=InvoiceRead,
    responses=ERROR_RESPONSES,
)
async def retry_invoice(
    id: InvoiceId,
    ctx: Ctx,
    who: Principal,
    body: ActionBody | None = None,
) -> JSONResponse:
    note = body.note if body else None
    invoice = await service.retry(ctx.db, ctx.clock, id, actor=who, note=note)
    return await _shown(ctx, invoice)


@router.post(
    "/{id}/resolve",
    summary="Resolve a REVIEW invoice after checking with the provider",
    description='`{"charged": true, "chargeId": "ch_..."}`: the provider did charge it; '
    'the invoice becomes PAID with that charge id. `{"charged": false}`: nothing moved; '
    "the invoice becomes PENDING, due now, and its next charge is a new attempt. "
    "`attempt` (optional): the attempt number you checked with the provider; if it is not "
    "the invoice's open attempt in REVIEW any more, 409 `invalid_state` with "
    "`currentAttempt`, and nothing is changed.",
    response_model=InvoiceRead,
    responses=ERROR_RESPONSES,
)
async def resolve_invoice(
    id: InvoiceId,
    body: ResolveBody,
    ctx: Ctx,
    who: Principal,
) -> JSONResponse:
    invoice = await service.resolve(
        ctx.db,
        ctx.clock,
        id,
        charged=body.charged,
        charge_id=body.chargeId,
        actor=who,
        note=body.note,
        attempt=body.attempt,
    )
    return await _shown(ctx, invoice)


@router.post(
    "/{id}/void",
    summary="Void an invoice: it is never charged again",
    description="Allowed from FAILED, and from PENDING when no attempt of unknown outcome is open.",
    response_model=InvoiceRead,
    responses=ERROR_RESPONSES,
)
async def void_invoice(
    id: InvoiceId,
    ctx: Ctx,
    who: Principal,
    body: ActionBody | None = None,
) -> JSONResponse:
    note = body.note if body else None
    invoice = await service.void(ctx.db, ctx.clock, id, actor=who, note=note)
    return await _shown(ctx, invoice)


@router.get(
    "/{id}/attempts",
    summary="Every charge attempt of an invoice",
    description="Oldest first: number, idempotency key, times, outcome, charge id, "
    "`declineCode`, run, `sends`, the provider references it was sent with, "
    "every answer the provider gave (`answers`), and what reconciliation "
    "asked and heard (`reconciliations`).",
    response_model=list[AttemptRead],
    responses=ERROR_RESPONSES,
)
async def invoice_attempts(id: InvoiceId, ctx: Ctx, _who: Principal) -> JSONResponse:
    async with ctx.db.read() as conn:
        invoice = await InvoiceRepository(conn).get(id)
        actions = ActionRepository(conn)
        rows = await actions.attempts(id) if invoice else []
        answers = await actions.answers(id) if rows else []
        asked = await ReconciliationRepository(conn).of_invoice(id) if rows else []
    if invoice is None:
        raise not_found("invoice", id)
    return JSONResponse([attempt_json(r, answers, asked) for r in rows])


@router.get(
    "/{id}/actions",
    summary="What people did to an invoice, oldest first",
    description="Every retry, resolve and void: the token's name that did it, the status "
    "before and after, the note and the charge id given. Paginated by action id.",
    response_model=list[ActionRead],
    responses=ERROR_RESPONSES,
)
async def invoice_actions(
    id: InvoiceId, request: Request, ctx: Ctx, _who: Principal, page: Page
) -> JSONResponse:
    async with ctx.db.read() as conn:
        invoice = await InvoiceRepository(conn).get(id)
        rows = (
            await ActionRepository(conn).history(id, after=page.after, limit=page.limit + 1)
            if invoice
            else []
        )
    if invoice is None:
        raise not_found("invoice", id)
    items, headers = paginate(request, rows, page)
    return JSONResponse([action_json(r) for r in items], headers=headers)
