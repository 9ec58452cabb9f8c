"""Build the payment provider the settings choose."""

from __future__ import annotations

from datetime import timedelta

from antaeus.config import Settings
from antaeus.payments.provider import PaymentProvider
from antaeus.payments.simulated import SimulatedPaymentProvider


class ProviderConfigError(Exception):
    pass


def build_provider(settings: Settings) -> PaymentProvider:
    if settings.provider_kind == "simulated":
        return SimulatedPaymentProvider(
            settings.SIMULATED_STATE,
            failure_rate=settings.SIMULATED_FAILURE_RATE,
            seed=settings.SIMULATED_SEED,
            latency_ms=settings.SIMULATED_LATENCY_MS,
            jitter_ms=settings.SIMULATED_JITTER_MS,
            key_retention=timedelta(seconds=settings.PROVIDER_KEY_RETENTION),
        )
    raise ProviderConfigError(
        "the HTTP payment provider adapter is not available in this version; "
        "unset ANTAEUS_PAYMENT_PROVIDER_URL to use the simulated provider"
    )
