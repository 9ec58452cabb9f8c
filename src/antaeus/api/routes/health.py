from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["health"])


@router.get("/rest/health", summary='Liveness: answers "ok"', response_model=str)
async def health() -> str:
    return "ok"


@router.get("/metrics", summary="Prometheus metrics of this process", include_in_schema=False)
async def prometheus_metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
