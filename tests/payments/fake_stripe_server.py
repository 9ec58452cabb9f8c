"""`running_fake_stripe(...)`: the fake Stripe (`antaeus.simulators.fake_stripe`) on a free port.

    with running_fake_stripe(latency_ms=50) as fake:
        StripeProviderSettings(api_key=fake.api_key, api_base=fake.url)

uvicorn serves it in a thread of its own (its own event loop), so the test's
loop is the client's alone, as with a real Stripe; `fake.app` is the app, for
looking at its state.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from antaeus.simulators.fake_stripe import FakeStripe
from antaeus.simulators.server import serve_in_thread

API_KEY = "sk_test_fake_0123456789abcdefghijklmnop"


@dataclass(frozen=True)
class RunningFake:
    url: str
    app: FakeStripe
    api_key: str = API_KEY


@contextmanager
def running_fake_stripe(**options: Any) -> Iterator[RunningFake]:
    options.setdefault("api_key", API_KEY)
    app = FakeStripe(**options)
    with running_asgi(app) as url:
        yield RunningFake(url, app, options["api_key"])


@contextmanager
def running_asgi(app: Any) -> Iterator[str]:
    """Serve an ASGI app on a free port in a thread; yield its base URL."""
    with serve_in_thread(app) as url:
        yield url
