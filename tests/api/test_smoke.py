from __future__ import annotations

import httpx


async def test_health_needs_no_token(anon: httpx.AsyncClient) -> None:
    response = await anon.get("/rest/health")
    assert response.status_code == 200
    assert response.json() == "ok"


async def test_create_and_read_customer(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/rest/v1/customers", json={"currency": "DKK", "timezone": "Europe/Copenhagen"}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body == {
        "id": body["id"],
        "currency": "DKK",
        "timezone": "Europe/Copenhagen",
        "providerCustomerId": None,
        "providerPaymentMethodId": None,
        "creditBalance": {"value": 0, "currency": "DKK"},
    }
    fetched = await client.get(f"/rest/v1/customers/{body['id']}")
    assert fetched.json() == body


async def test_metrics_are_exposed_for_prometheus(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")  # with the API token: see test_metrics.py
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "antaeus_charges_total" in response.text
