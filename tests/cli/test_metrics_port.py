"""`antaeus serve --metrics-port`: Prometheus metrics on a port of their own, without a token,
while /metrics on the API port needs the API token."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.cli.test_cli import Cli, _clean_env, _free_port, serving

API_TOKEN = "ant_metrics_port_test_token_0123456789abcdef"


def test_serve_metrics_port(tmp_path: Path) -> None:
    cli = Cli(
        tmp_path, _clean_env(ANTAEUS_API_TOKEN=API_TOKEN), f"sqlite:///{tmp_path / 'antaeus.db'}"
    )
    port = _free_port()
    with serving(cli, "--metrics-port", str(port), "--no-worker") as server:
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert scraped.status_code == 200, scraped.text
        assert "antaeus_charges_total" in scraped.text
        api = f"{server.base_url}/metrics"
        assert httpx.get(api, timeout=10).status_code == 401
        with_token = httpx.get(api, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)
        assert with_token.status_code == 200
        assert "antaeus_charges_total" in with_token.text
