from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from antaeus.api.auth import require_token
from antaeus.observability import metrics

router = APIRouter(tags=["health"])


@router.get(
    "/rest/health",
    summary='Liveness: answers "ok"',
    description="Needs no token. Answers while the process serves; it does not check "
    "the database or the provider (`GET /rest/v1/status` says how charging "
    "goes).",
    response_model=str,
)
async def health() -> str:
    return "ok"


@router.get("/metrics", summary="Prometheus metrics of this process", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    """Needs the API token (as /rest/v1 does) unless ANTAEUS_METRICS_PUBLIC=true; for a
    scraper without one, `antaeus serve --metrics-port` serves them on a port of their own.
    With worker processes (`serve --workers N`), the sum over them and this process."""
    if not request.app.state.ctx.settings.METRICS_PUBLIC:
        await require_token(request)
    return Response(generate_latest(metrics.registry()), media_type=CONTENT_TYPE_LATEST)
