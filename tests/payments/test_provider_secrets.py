"""A provider URL's password never reaches a log line or an error message."""

from __future__ import annotations

import asyncio
import socket

import pytest
from structlog.testing import capture_logs

from antaeus.billing.worker import Worker, WorkerSettings
from antaeus.clock import ManualClock
from antaeus.config import Settings
from antaeus.domain.policy import PolicySettings
from antaeus.payments.factory import build_provider
from antaeus.payments.http import HttpPaymentProvider, ProviderUnreachableError
from antaeus.storage.database import Database

PASSWORD = "s3cret-pw-0123"


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _provider(client: str = "aiohttp") -> tuple[HttpPaymentProvider, str]:
    url = f"http://billing:{PASSWORD}@127.0.0.1:{_closed_port()}"
    settings = Settings(
        DATABASE_URL="sqlite:///unused.db",
        PAYMENT_PROVIDER_URL=url,
        PAYMENT_PROVIDER_HTTP_CLIENT=client,
        PAYMENT_PROVIDER_CONNECT_TIMEOUT=2,
    )
    provider = build_provider(settings)
    assert isinstance(provider, HttpPaymentProvider)
    return provider, url


@pytest.mark.parametrize("client", ["aiohttp", "httpx"])
async def test_check_and_describe_never_show_the_password(client: str) -> None:
    provider, url = _provider(client)
    try:
        assert PASSWORD not in provider.describe()
        assert "billing:***@127.0.0.1" in provider.describe()
        with pytest.raises(ProviderUnreachableError) as caught:
            await provider.check()
        assert PASSWORD not in str(caught.value)
        assert url not in str(caught.value)
        assert "billing:***@127.0.0.1" in str(caught.value)
    finally:
        await provider.aclose()


async def test_provider_unreachable_log_never_shows_the_password(
    database: Database, clock: ManualClock
) -> None:
    provider, _url = _provider()
    worker = Worker(database, provider, clock, PolicySettings(), WorkerSettings())
    stop = asyncio.Event()
    try:
        with capture_logs() as logs:
            waiting = asyncio.create_task(worker.wait_for_provider(stop))
            for _ in range(200):
                if any(e["event"] == "provider_unreachable" for e in logs):
                    break
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.wait_for(waiting, 10)
    finally:
        await provider.aclose()
    unreachable = [e for e in logs if e["event"] == "provider_unreachable"]
    assert unreachable, logs
    assert PASSWORD not in repr(logs)
    assert "billing:***@127.0.0.1" in unreachable[0]["error"]


def test_a_refused_provider_url_is_shown_masked() -> None:
    with pytest.raises(ValueError, match=r"ftp://billing:\*\*\*@provider") as caught:
        Settings(PAYMENT_PROVIDER_URL=f"ftp://billing:{PASSWORD}@provider.test")
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://app:{PASSWORD}@db/antaeus",
        f"app:{PASSWORD}@db/antaeus",
        f"postgresql://app:{PASSWORD}@db:notaport/antaeus",
    ],
    ids=["unsupported", "no-scheme", "unparseable"],
)
def test_a_refused_database_url_is_shown_masked(url: str) -> None:
    with pytest.raises(ValueError, match="DATABASE_URL") as caught:
        Settings(DATABASE_URL=url)
    assert PASSWORD not in str(caught.value)
