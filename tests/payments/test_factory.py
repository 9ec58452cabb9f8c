"""The provider the settings choose, and how the HTTP adapter is sized."""

from __future__ import annotations

import pytest

from antaeus.config import Settings
from antaeus.payments.factory import build_provider
from antaeus.payments.http import HttpPaymentProvider
from antaeus.simulators.simulated import SimulatedPaymentProvider

URL = "http://provider.test"


def _settings(**kw: object) -> Settings:
    return Settings(DATABASE_URL="sqlite:///unused.db", **kw)  # type: ignore[arg-type]


async def _max_connections(settings: Settings, concurrency: int | None = None) -> int:
    provider = build_provider(settings, concurrency)
    try:
        assert isinstance(provider, HttpPaymentProvider)
        return provider.settings.max_connections
    finally:
        await provider.aclose()


async def test_connections_follow_the_worker_concurrency_unless_set() -> None:
    # no call ever waits for a free connection (its timeout would run while it waits)
    assert await _max_connections(_settings(PAYMENT_PROVIDER_URL=URL)) == 500
    assert await _max_connections(
        _settings(PAYMENT_PROVIDER_URL=URL, WORKER_CONCURRENCY=50)
    ) == 50  # fmt: skip
    assert await _max_connections(_settings(PAYMENT_PROVIDER_URL=URL), concurrency=1200) == 1200
    explicit = _settings(PAYMENT_PROVIDER_URL=URL, PAYMENT_PROVIDER_MAX_CONNECTIONS=64)
    assert await _max_connections(explicit, concurrency=1200) == 64


@pytest.mark.parametrize("value", [0, -1, 10_001])
def test_an_impossible_connection_count_is_refused(value: int) -> None:
    with pytest.raises(ValueError, match="PAYMENT_PROVIDER_MAX_CONNECTIONS"):
        _settings(PAYMENT_PROVIDER_URL=URL, PAYMENT_PROVIDER_MAX_CONNECTIONS=value)


async def test_without_a_url_the_simulated_provider_is_used() -> None:
    provider = build_provider(_settings(SIMULATED_STATE=":memory:"))
    try:
        assert isinstance(provider, SimulatedPaymentProvider)
    finally:
        await provider.aclose()
