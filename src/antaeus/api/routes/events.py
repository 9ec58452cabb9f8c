"""The events API (`/rest/v1/events`) and webhook endpoints (`/rest/v1/webhooks`)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import AfterValidator, BaseModel, Field

from antaeus.api.auth import AuthenticatedRoute, Principal
from antaeus.api.context import Ctx
from antaeus.api.errors import FieldInvalidError, not_found
from antaeus.api.jsonio import JSONResponse
from antaeus.api.pagination import MAX_LIMIT, Page, PageParams, paginate
from antaeus.api.schemas import ERROR_RESPONSES, MAX_ID, DigitsInt, RequestBody, SingleLine
from antaeus.domain.events import EventType
from antaeus.exactjson import rfc3339
from antaeus.notify.addresses import url_problem
from antaeus.notify.envelope import PREFIX, StoredEvent, event_id, parse_event_id
from antaeus.notify.webhooks import new_secret
from antaeus.storage.repositories.outbox import Destination, DestinationRepository, EventRepository

router = APIRouter(prefix="/rest/v1", tags=["events"], route_class=AuthenticatedRoute)

ALL: Any = "*"
MAX_URL = 2048
EVENT_TYPES = tuple(t.value for t in EventType)


def _webhook_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not hold credentials (the signature authenticates us)")
    return value


def _event_type(value: str) -> str:
    if value != ALL and value not in EVENT_TYPES:
        raise ValueError(f"unknown event type {value!r}; known: {', '.join(EVENT_TYPES)} or *")
    return value


WebhookUrl = Annotated[
    SingleLine,
    Field(min_length=1, max_length=MAX_URL, examples=["https://example.com/antaeus"]),
    AfterValidator(_webhook_url),
]
EventTypeName = Annotated[SingleLine, Field(max_length=64), AfterValidator(_event_type)]


class WebhookCreate(RequestBody):
    url: WebhookUrl
    events: Annotated[
        list[EventTypeName] | None,
        Field(max_length=len(EVENT_TYPES) + 1, description="event types; omitted or *: all"),
    ] = None


class WebhookRead(BaseModel):
    id: int
    url: str
    events: list[str]
    status: str
    createdAt: str  # noqa: N815 (the JSON's names)
    failingSince: str | None  # noqa: N815
    disabledAt: str | None  # noqa: N815


class WebhookCreated(WebhookRead):
    secret: str


class EventRead(BaseModel):
    id: str
    type: str
    createdAt: str  # noqa: N815
    data: dict[str, Any]


class DeliveryTryRead(BaseModel):
    id: int
    eventId: str  # noqa: N815
    triedAt: str  # noqa: N815
    httpStatus: int | None  # noqa: N815
    error: str | None
    durationMs: int  # noqa: N815
    delivered: bool


def webhook_json(d: Destination) -> dict[str, Any]:
    return {
        "id": d.id,
        "url": d.url,
        "events": list(d.event_types) if d.event_types is not None else [ALL],
        "status": d.status,
        "createdAt": rfc3339(d.created_at),
        "failingSince": rfc3339(d.failing_since) if d.failing_since else None,
        "disabledAt": rfc3339(d.disabled_at) if d.disabled_at else None,
    }


WebhookId = Annotated[DigitsInt, Path(ge=1, le=MAX_ID, description="webhook id")]


# -- events ---------------------------------------------------------------------


def _after_id(value: str) -> int:
    found = parse_event_id(value) if value.startswith(PREFIX) else None
    if found is not None:
        return found
    if value == "0" or (value.isdigit() and not value.startswith("0") and len(value) <= 18):
        return int(value)
    digits = value.removeprefix(PREFIX)
    if digits.isascii() and digits.isdigit() and not digits.startswith("0"):
        raise ValueError(f"{value} is too large for an event id")
    raise ValueError("must be an event id (evt_...) or 0")


def _after_event(value: str) -> str:
    _after_id(value)  # raises ValueError naming the problem
    return value


@router.get(
    "/events",
    summary="List events in the order they became visible (poll with `after` = the last id "
    "seen: nothing is missed)",
    description="Ascending; `type` and `invoiceId` filter; `limit` and `after` page, "
    "the next page in the `Link` header. On PostgreSQL only events whose "
    "transaction ended before every transaction still open are listed, so "
    "following `after` from the last id seen misses nothing.",
    response_model=list[EventRead],
    responses=ERROR_RESPONSES,
)
async def list_events(
    request: Request,
    ctx: Ctx,
    _who: Principal,
    after: Annotated[
        Annotated[str, AfterValidator(_after_event)],
        Query(max_length=32, description="return events after this one (evt_...)"),
    ] = "0",
    limit: Annotated[DigitsInt, Query(ge=1, le=MAX_LIMIT, description="page size")] = 100,
    type: Annotated[
        Annotated[str, AfterValidator(_event_type)] | None,
        Query(max_length=64, description="only this type"),
    ] = None,
    invoice_id: Annotated[
        DigitsInt | None, Query(alias="invoiceId", ge=1, le=MAX_ID, description="only its events")
    ] = None,
) -> JSONResponse:
    start = _after_id(after)
    wanted = None if type in (None, ALL) else type
    async with ctx.db.read() as conn:
        rows = await EventRepository(conn).page(
            after=start, limit=limit + 1, type=wanted, invoice_id=invoice_id
        )
    items, headers = paginate(
        request, rows, PageParams(limit=limit, after=start), cursor=lambda r: event_id(r.id)
    )
    return JSONResponse([r.envelope() for r in items], headers=headers)


@router.get(
    "/events/{id}",
    summary="One event",
    description="The event as webhooks and RabbitMQ carry it: `id` (`evt_...`), `type`, "
    "`createdAt`, `data`. 404 until the list would show it.",
    response_model=EventRead,
    responses=ERROR_RESPONSES,
)
async def get_event(
    ctx: Ctx,
    _who: Principal,
    id: Annotated[str, Path(max_length=32, description="event id (evt_...)")],
) -> JSONResponse:
    row_id = parse_event_id(id)
    found: StoredEvent | None = None
    if row_id is not None:
        async with ctx.db.read() as conn:
            found = await EventRepository(conn).get(row_id)
    if found is None:
        raise not_found("event", id)
    return JSONResponse(found.envelope())


# -- webhooks -------------------------------------------------------------------


@router.post(
    "/webhooks",
    status_code=201,
    summary="Add a webhook endpoint (its signing secret is shown only in this answer)",
    description="Every event written from now on (of the types in `events`, or all) is "
    "`POST`ed to `url`, signed per Standard Webhooks with the secret "
    "(`whsec_...`) answered here. A URL inside the network (localhost, "
    "private, link-local, ...) is refused unless "
    "`ANTAEUS_WEBHOOK_ALLOW_PRIVATE=true`.",
    response_model=WebhookCreated,
    responses=ERROR_RESPONSES,
)
async def create_webhook(ctx: Ctx, _who: Principal, body: WebhookCreate) -> JSONResponse:
    # a receiver inside the network is refused (the deliveries list would scan it);
    # names are resolved and checked again at every delivery
    if (problem := url_problem(body.url, ctx.settings.WEBHOOK_ALLOW_PRIVATE)) is not None:
        raise FieldInvalidError(f"url: {problem}", field="url")
    types = None if body.events is None or ALL in body.events else sorted(set(body.events))
    secret = new_secret()
    async with ctx.db.write() as conn:
        created = await DestinationRepository(conn).create(
            "webhook", body.url, types, secret, ctx.clock.now()
        )
    return JSONResponse({**webhook_json(created), "secret": secret}, status_code=201)


@router.get(
    "/webhooks",
    summary="List webhook endpoints by ascending id",
    description="Each endpoint's URL, event types and status (`enabled`, or `disabled` "
    "after three days of failed tries); never its secret. `limit` and "
    "`after` page.",
    response_model=list[WebhookRead],
    responses=ERROR_RESPONSES,
)
async def list_webhooks(request: Request, ctx: Ctx, _who: Principal, page: Page) -> JSONResponse:
    async with ctx.db.read() as conn:
        rows = await DestinationRepository(conn).page(
            "webhook", after=page.after, limit=page.limit + 1
        )
    items, headers = paginate(request, rows, page)
    return JSONResponse([webhook_json(d) for d in items], headers=headers)


@router.get(
    "/webhooks/{id}",
    summary="One webhook endpoint",
    description="The endpoint's URL, event types, status and when it started failing; "
    "never its secret.",
    response_model=WebhookRead,
    responses=ERROR_RESPONSES,
)
async def get_webhook(id: WebhookId, ctx: Ctx, _who: Principal) -> JSONResponse:
    async with ctx.db.read() as conn:
        found = await DestinationRepository(conn).get(id, "webhook")
    if found is None:
        raise not_found("webhook", id)
    return JSONResponse(webhook_json(found))


@router.delete(
    "/webhooks/{id}",
    status_code=204,
    summary="Remove a webhook endpoint (its waiting deliveries go with it)",
    description="Nothing more is delivered to it; answers 204 with no body.",
    responses=ERROR_RESPONSES,
)
async def delete_webhook(id: WebhookId, ctx: Ctx, _who: Principal) -> Response:
    async with ctx.db.write() as conn:
        gone = await DestinationRepository(conn).delete(id, "webhook")
    if not gone:
        raise not_found("webhook", id)
    return Response(status_code=204)


@router.post(
    "/webhooks/{id}/enable",
    summary="Enable an endpoint again (its waiting deliveries are tried at once)",
    description="For an endpoint `disabled` after three days of failed tries, once its "
    "receiver works again; its waiting deliveries are kept and tried at "
    "once.",
    response_model=WebhookRead,
    responses=ERROR_RESPONSES,
)
async def enable_webhook(id: WebhookId, ctx: Ctx, _who: Principal) -> JSONResponse:
    async with ctx.db.write() as conn:
        found = await DestinationRepository(conn).enable(id, "webhook", ctx.clock.now())
    if found is None:
        raise not_found("webhook", id)
    return JSONResponse(webhook_json(found))


@router.get(
    "/webhooks/{id}/deliveries",
    summary="Every try to deliver to this endpoint, newest first (`after`: older than this try)",
    description="Each try's event, time, duration and result: `delivered`, the answer's "
    "`httpStatus`, or the `error` (such as `private_address`). `limit` and `after` page.",
    response_model=list[DeliveryTryRead],
    responses=ERROR_RESPONSES,
)
async def webhook_deliveries(
    request: Request,
    id: WebhookId,
    ctx: Ctx,
    _who: Principal,
    page: Page,
) -> JSONResponse:
    async with ctx.db.read() as conn:
        repo = DestinationRepository(conn)
        if await repo.get(id, "webhook") is None:
            raise not_found("webhook", id)
        rows = await repo.tries(id, after=page.after, limit=page.limit + 1)
    items, headers = paginate(request, rows, page)  # newest first: `after` = older than
    return JSONResponse(
        [
            {
                "id": t.id,
                "eventId": event_id(t.event_id),
                "triedAt": rfc3339(t.tried_at),
                "httpStatus": t.http_status,
                "error": t.error,
                "durationMs": t.duration_ms,
                "delivered": t.ok,
            }
            for t in items
        ],
        headers=headers,
    )
