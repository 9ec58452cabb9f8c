"""Billing runs as the API writes them (`GET /rest/v1/billing/runs/{id}`).

The routes and `antaeus bill` both show runs this way; nothing here imports the
web framework or the API.
"""

from __future__ import annotations

from typing import Any

from antaeus.exactjson import rfc3339
from antaeus.storage.database import ReadConnection
from antaeus.storage.repositories.billing import BillingRepository, RunRow, RunStats


def run_json(run: RunRow, stats: RunStats, paused_reason: str | None) -> dict[str, Any]:
    return {
        "id": run.id,
        "trigger": run.trigger,
        "status": run.status,
        "startedAt": rfc3339(run.started_at),
        "completedAt": rfc3339(run.completed_at) if run.completed_at else None,
        "pausedReason": paused_reason if run.status == "running" else None,
        "counts": stats.counts,
        "collected": [{"value": m.value, "currency": m.currency.value} for m in stats.collected],
    }


async def runs_json(conn: ReadConnection, run_ids: list[int]) -> list[dict[str, Any]]:
    """The runs of `run_ids` (those that exist), as the API writes them: three queries in all."""
    repo = BillingRepository(conn)
    paused, _ = await repo.pause_state()
    runs = await repo.get_runs(run_ids)
    stats = await repo.run_stats([r.id for r in runs])
    return [run_json(run, stats[run.id], paused) for run in runs]
