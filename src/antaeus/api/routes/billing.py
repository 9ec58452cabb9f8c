from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from antaeus.api.auth import AuthenticatedRoute, Caller, Principal
from antaeus.api.context import AppContext, Ctx
from antaeus.api.errors import not_found
from antaeus.api.idempotency import IdempotencyKey, run_idempotent
from antaeus.api.jsonio import JSONResponse
from antaeus.api.outbox_status import outbox_json, relay_json
from antaeus.api.pagination import Page, paginate
from antaeus.api.schemas import (
    ERROR_RESPONSES,
    MAX_ID,
    BillingTrigger,
    DigitsInt,
    RunRead,
    StatusRead,
)
from antaeus.billing import service
from antaeus.billing.generation import generate_due
from antaeus.billing.runs_view import runs_json
from antaeus.exactjson import rfc3339
from antaeus.storage.database import WriteConnection
from antaeus.storage.repositories.billing import BillingRepository

router = APIRouter(prefix="/rest/v1", tags=["billing"], route_class=AuthenticatedRoute)

RunId = Annotated[DigitsInt, Path(ge=1, le=MAX_ID, description="run id")]


async def _current_run(ctx: AppContext, _status: int, stored_body: str) -> Response:
    """A repeated trigger answers the same run, in its current state."""
    run_id = int(json.loads(stored_body)["id"])
    async with ctx.db.read() as conn:
        runs = await runs_json(conn, [run_id])
    return JSONResponse(runs[0], status_code=202)


@router.post(
    "/billing",
    status_code=202,
    summary="Open a billing run now",
    description="First generates every subscription invoice due by now (each period once), "
    "then takes every due invoice not already in an open run (possibly none: then the "
    "run is already complete). Workers charge it. With an `Idempotency-Key`, a repeated "
    "trigger answers the same run in its current state.",
    response_model=RunRead,
    responses=ERROR_RESPONSES,
)
async def bill(
    ctx: Ctx,
    _who: Principal,
    body: BillingTrigger | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    trigger = (body or BillingTrigger()).trigger
    # every period due by now becomes its invoice first, so that the run charges it
    await generate_due(ctx.db, ctx.clock)

    async with service.RunOpening() as opening:

        async def effect(conn: WriteConnection) -> tuple[int, Any, dict[str, str]]:
            run_id = await opening.open_in(conn, ctx.clock.now(), ctx.policy, trigger)
            run = (await runs_json(conn, [run_id]))[0]
            return 202, run, {"Location": f"/rest/v1/billing/runs/{run_id}"}

        async def replay(status: int, stored: str) -> Response:
            return await _current_run(ctx, status, stored)

        response = await run_idempotent(
            ctx, "POST /rest/v1/billing", idempotency_key, {"trigger": trigger}, effect, replay
        )
        if response.headers.get("Idempotent-Replayed") == "true":
            # the key's first use answered: any run opened here was rolled back with its key
            opening.discard()
        return response


@router.post(
    "/billing/retry",
    status_code=202,
    summary="Retry now every PENDING invoice that failed before",
    description="Every PENDING invoice with a past failure (waiting for a dunning retry or the "
    "repeat of an unknown outcome) becomes due now, and a run opens.",
    response_model=RunRead,
    responses=ERROR_RESPONSES,
)
async def retry_all(ctx: Ctx, _who: Principal) -> JSONResponse:
    run = await service.retry_failed_pending(ctx.db, ctx.clock, ctx.policy)
    return JSONResponse(run, status_code=202)


@router.get(
    "/billing/runs",
    summary="List billing runs by ascending id",
    description="Each run with its trigger, status, counts per outcome and the amounts "
    "collected per currency. `status` (`running` or `completed`) filters; "
    "`limit` and `after` page, the next page in the `Link` header.",
    response_model=list[RunRead],
    responses=ERROR_RESPONSES,
)
async def list_runs(
    request: Request,
    ctx: Ctx,
    _who: Principal,
    page: Page,
    status: Annotated[
        Literal["running", "completed"] | None, Query(description="only runs of this status")
    ] = None,
) -> JSONResponse:
    async with ctx.db.read() as conn:
        rows = await BillingRepository(conn).list_runs(
            after=page.after, limit=page.limit + 1, status=status
        )
        items, headers = paginate(request, rows, page)
        body = await runs_json(conn, [r.id for r in items])
    return JSONResponse(body, headers=headers)


@router.get(
    "/billing/runs/{id}",
    summary="One billing run",
    description="The run's trigger, status, opening and completion times, counts per "
    "outcome and the amounts collected per currency.",
    response_model=RunRead,
    responses=ERROR_RESPONSES,
)
async def get_run(id: RunId, ctx: Ctx, _who: Principal) -> JSONResponse:
    async with ctx.db.read() as conn:
        runs = await runs_json(conn, [id])
    if not runs:
        raise not_found("billing run", id)
    return JSONResponse(runs[0])


@router.get(
    "/status",
    summary="Whether charging runs or is paused (and why), open runs, the due backlog",
    description="`charging`: running or paused, with the reason; the open runs and the "
    "invoices due and not yet charged; `token`: the caller's own token "
    "(`name`, `scope`); `relay`: this process's outbox relay (`running` or "
    "`failing`, null when it runs none); `outbox`: per event destination "
    "its status and oldest undelivered event.",
    response_model=StatusRead,
    responses=ERROR_RESPONSES,
)
async def status(request: Request, ctx: Ctx, caller: Caller) -> JSONResponse:
    async with ctx.db.read() as conn:
        repo = BillingRepository(conn)
        reason, since = await repo.pause_state()
        open_runs = await repo.running_run_ids()
        backlog = await repo.due_backlog(ctx.clock.now())
        outbox = await outbox_json(conn)
    return JSONResponse(
        {
            "charging": "paused" if reason else "running",
            "pausedReason": reason,
            "pausedSince": rfc3339(since) if since else None,
            "schedule": ctx.settings.SCHEDULE,
            "openRuns": open_runs,
            "dueBacklog": backlog,
            "token": {"name": caller.name, "scope": caller.scope},  # the caller's own
            # issue 20: this process's relay, and what the outbox owes each destination
            "relay": relay_json(getattr(request.app.state, "relay", None)),
            "outbox": outbox,
        }
    )
