"""`running_fake_stripe(...)`: the fake Stripe (`antaeus.payments.fake_stripe`) on a free port.

    with running_fake_stripe(latency_ms=50) as fake:
        StripeProviderSettings(api_key=fake.api_key, api_base=fake.url)

uvicorn serves it in a thread of its own (its own event loop), so the test's
loop is the client's alone, as with a real Stripe; `fake.app` is the app, for
looking at its state.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from antaeus.payments.fake_stripe import FakeStripe
from antaeus.payments.simulator_server import DroppedConnection

API_KEY = "sk_test_fake_0123456789abcdefghijklmnop"


@dataclass(frozen=True)
class RunningFake:
    url: str
    app: FakeStripe
    api_key: str = API_KEY


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedConnection))


@contextmanager
def running_fake_stripe(**options: Any) -> Iterator[RunningFake]:
    options.setdefault("api_key", API_KEY)
    app = FakeStripe(**options)
    with running_asgi(app) as url:
        yield RunningFake(url, app, options["api_key"])


@contextmanager
def running_asgi(app: Any) -> Iterator[str]:
    """Serve an ASGI app on a free port in a thread; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="critical",
        server_header=False,
    )
    logging.getLogger("uvicorn.error").addFilter(_QuietDrops())
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]

    def run() -> None:
        asyncio.run(server.serve(sockets=[sock]))

    thread = threading.Thread(target=run, name=f"fake-stripe-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake Stripe did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
