"""examples/subscriptions_app.py works: against a real `antaeus serve`, it signs a
customer up (once, however often the sign-up is sent), and receives and verifies
the webhook Antaeus delivers to it over HTTP."""

from __future__ import annotations

import importlib.util
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
import uvicorn

from antaeus.client import Client
from tests.client.conftest import Served

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "subscriptions_app.py"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("subscriptions_app", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def shop(served: Served) -> Iterator[str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    app = _example().create_app(served.base_url, served.token, url)
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the example app did not start"
        assert time.monotonic() < deadline, "the example app did not start in 30 s"
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_the_example_signs_up_once_and_receives_verified_webhooks(
    shop: str, served: Served
) -> None:
    signup = {"signupId": f"s-{time.monotonic_ns()}", "currency": "EUR", "quantity": 2}
    with httpx.Client(base_url=shop, timeout=30) as browser:
        first = browser.post("/signups", json=signup)
        assert first.status_code == 201, first.text
        again = browser.post("/signups", json=signup)  # a double click
        assert again.json() == first.json()
        made = first.json()
        assert made["status"] == "trialing"
        with Client(base_url=served.base_url, token=served.token) as api:
            subs = list(api.subscriptions.list(customer_id=made["customerId"]))
            assert [s.id for s in subs] == [made["subscriptionId"]]
            assert subs[0].quantity == 2

        deadline = time.monotonic() + 30
        while True:
            seen = browser.get("/events").json()
            created = [e for e in seen if e["type"] == "subscription.created"]
            if any(e["subscriptionId"] == made["subscriptionId"] for e in created):
                break
            assert time.monotonic() < deadline, f"no verified delivery in 30 s: {seen}"
            time.sleep(0.1)

        forged = browser.post(
            "/antaeus/webhooks",
            content=b'{"id":"evt_1"}',
            headers={"webhook-id": "evt_1", "webhook-timestamp": "1", "webhook-signature": "x"},
        )
        assert forged.status_code == 400
