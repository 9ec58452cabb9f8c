from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get("/rest/health", summary='Liveness: answers "ok"', response_model=str)
async def health() -> str:
    return "ok"
