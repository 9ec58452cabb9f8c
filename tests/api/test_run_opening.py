"""Every run opening is logged and counted, whoever opens it (issue 10, item 14).

The API used to open runs through the repository directly: no `run_opened`
log line and no `antaeus_runs_opened_total` for API triggers.
"""

from __future__ import annotations

import httpx
from prometheus_client import REGISTRY
from structlog.testing import capture_logs


def opened(trigger: str) -> float:
    return REGISTRY.get_sample_value("antaeus_runs_opened_total", {"trigger": trigger}) or 0.0


async def test_an_api_trigger_logs_and_counts_its_run(client: httpx.AsyncClient) -> None:
    before = opened("api")
    with capture_logs() as logs:
        response = await client.post("/rest/v1/billing", headers={"Idempotency-Key": "k-1"})
        assert response.status_code == 202, response.text
        run_id = response.json()["id"]
        again = await client.post("/rest/v1/billing", headers={"Idempotency-Key": "k-1"})
        assert again.json()["id"] == run_id
    events = [e for e in logs if e["event"] == "run_opened"]
    assert events == [
        {"event": "run_opened", "run_id": run_id, "trigger": "api", "log_level": "info"}
    ]
    assert opened("api") == before + 1  # a replay opens nothing


async def test_a_retry_trigger_logs_and_counts_its_run(client: httpx.AsyncClient) -> None:
    before = opened("api")
    with capture_logs() as logs:
        response = await client.post("/rest/v1/billing/retry")
        assert response.status_code == 202, response.text
    assert [e["run_id"] for e in logs if e["event"] == "run_opened"] == [response.json()["id"]]
    assert opened("api") == before + 1


async def test_a_cli_trigger_through_the_api_keeps_its_name(client: httpx.AsyncClient) -> None:
    before = opened("cli")
    response = await client.post("/rest/v1/billing", json={"trigger": "cli"})
    assert response.status_code == 202, response.text
    assert response.json()["trigger"] == "cli"
    assert opened("cli") == before + 1
