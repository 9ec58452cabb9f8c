"""Billing runs as the API writes them; shared with `antaeus bill` (no FastAPI import)."""

from __future__ import annotations

from typing import Any

from antaeus.api.schemas import run_json
from antaeus.storage.database import ReadConnection
from antaeus.storage.repositories.billing import BillingRepository


async def runs_json(conn: ReadConnection, run_ids: list[int]) -> list[dict[str, Any]]:
    """The runs of `run_ids` (those that exist), as the API writes them: three queries in all."""
    repo = BillingRepository(conn)
    paused, _ = await repo.pause_state()
    runs = await repo.get_runs(run_ids)
    stats = await repo.run_stats([r.id for r in runs])
    return [run_json(run, stats[run.id], paused) for run in runs]
