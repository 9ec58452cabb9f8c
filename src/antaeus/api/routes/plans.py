"""Plans (issue 21): `POST`, `GET` (list and one) and `archive`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from antaeus.api.auth import AuthenticatedRoute, Principal
from antaeus.api.context import Ctx
from antaeus.api.errors import AlreadyExistsError, InvalidStateError, not_found
from antaeus.api.idempotency import IdempotencyKey, run_idempotent
from antaeus.api.jsonio import JSONResponse
from antaeus.api.pagination import Page, paginate
from antaeus.api.schemas import ERROR_RESPONSES, MAX_ID, DigitsInt, PlanCreate, PlanRead
from antaeus.domain.money import Money
from antaeus.domain.periods import Interval
from antaeus.exactjson import rfc3339
from antaeus.storage.database import WriteConnection
from antaeus.storage.repositories.plans import Plan, PlanRepository

router = APIRouter(prefix="/rest/v1/plans", tags=["plans"], route_class=AuthenticatedRoute)

PlanId = Annotated[DigitsInt, Path(ge=1, le=MAX_ID, description="plan id")]


def plan_json(p: Plan) -> dict[str, Any]:
    return {
        "id": p.id,
        "code": p.code,
        "name": p.name,
        "amount": {"value": p.amount.value, "currency": p.amount.currency.value},
        "interval": p.interval.value,
        "intervalCount": p.interval_count,
        "trialDays": p.trial_days,
        "createdAt": rfc3339(p.created_at),
        "archivedAt": rfc3339(p.archived_at) if p.archived_at else None,
    }


@router.get(
    "",
    summary="List plans by ascending id",
    description="`archived=false`: only plans open to new subscriptions; `true`: only "
    "archived ones; omitted: all.",
    response_model=list[PlanRead],
    responses=ERROR_RESPONSES,
)
async def list_plans(
    request: Request,
    ctx: Ctx,
    _who: Principal,
    page: Page,
    archived: Annotated[
        Literal["true", "false"] | None, Query(description="archived (true) or not (false)")
    ] = None,
) -> JSONResponse:
    wanted = None if archived is None else archived == "true"
    async with ctx.db.read() as conn:
        rows = await PlanRepository(conn).page(
            after=page.after, limit=page.limit + 1, archived=wanted
        )
    items, headers = paginate(request, rows, page)
    return JSONResponse([plan_json(p) for p in items], headers=headers)


@router.get(
    "/{id}",
    summary="One plan",
    description="The plan's code, name, price, interval, trial and whether it is archived.",
    response_model=PlanRead,
    responses=ERROR_RESPONSES,
)
async def get_plan(id: PlanId, ctx: Ctx, _who: Principal) -> JSONResponse:
    async with ctx.db.read() as conn:
        plan = await PlanRepository(conn).get(id)
    if plan is None:
        raise not_found("plan", id)
    return JSONResponse(plan_json(plan))


@router.post(
    "",
    status_code=201,
    summary="Create a plan",
    description="A price for one unit and one period, in the currency's own minor units "
    "(0 allowed), and an interval. `code` is unique (409 `already_exists`, field `code`). "
    "A plan's price and interval never change.",
    response_model=PlanRead,
    responses=ERROR_RESPONSES,
)
async def create_plan(
    body: PlanCreate, ctx: Ctx, _who: Principal, idempotency_key: IdempotencyKey = None
) -> Response:
    async def effect(conn: WriteConnection) -> tuple[int, Any, dict[str, str]]:
        plan = await PlanRepository(conn).create(
            code=body.code,
            name=body.name,
            amount=Money(body.amount.value, body.amount.currency),
            interval=Interval(body.interval),
            interval_count=body.intervalCount,
            trial_days=body.trialDays,
            now=ctx.clock.now(),
        )
        if plan is None:
            raise AlreadyExistsError(f"a plan with code {body.code!r} exists", field="code")
        return 201, plan_json(plan), {"Location": f"/rest/v1/plans/{plan.id}"}

    return await run_idempotent(
        ctx, "POST /rest/v1/plans", idempotency_key, body.model_dump(mode="json"), effect
    )


@router.post(
    "/{id}/archive",
    summary="Archive a plan: no new subscription to it",
    description="Existing subscriptions go on; a new subscription to it, or a change to it, "
    "is 409 `invalid_state`. Archiving an archived plan is 409 `invalid_state`.",
    response_model=PlanRead,
    responses=ERROR_RESPONSES,
)
async def archive_plan(
    id: PlanId, ctx: Ctx, _who: Principal, idempotency_key: IdempotencyKey = None
) -> Response:
    async def effect(conn: WriteConnection) -> tuple[int, Any, dict[str, str]]:
        repo = PlanRepository(conn)
        if not await repo.archive(id, ctx.clock.now()):
            if await repo.get(id) is None:
                raise not_found("plan", id)
            raise InvalidStateError(f"plan {id} is already archived")
        plan = await repo.get(id)
        assert plan is not None
        return 200, plan_json(plan), {}

    return await run_idempotent(
        ctx, f"POST /rest/v1/plans/{id}/archive", idempotency_key, {}, effect
    )
