"""Build the payment provider the settings choose."""

from __future__ import annotations

from datetime import timedelta

from antaeus.config import Settings
from antaeus.payments.provider import PaymentProvider


class ProviderConfigError(Exception):
    pass


def build_provider(settings: Settings, concurrency: int | None = None) -> PaymentProvider:
    """The provider of `settings`, for a worker with `concurrency` calls in flight.

    Unless set, the HTTP adapter keeps as many connections as calls may be in
    flight: a call waiting for a free connection would spend its timeout waiting.
    """
    # Only the chosen adapter is imported: aiohttp, httpx and the Stripe library cost
    # a fifth of a second of start-up that `antaeus bill` on the simulator never needs.
    if settings.provider_kind == "simulated":
        from antaeus.simulators.simulated import SimulatedPaymentProvider

        return SimulatedPaymentProvider(
            settings.SIMULATED_STATE,
            failure_rate=settings.SIMULATED_FAILURE_RATE,
            seed=settings.SIMULATED_SEED,
            latency_ms=settings.SIMULATED_LATENCY_MS,
            jitter_ms=settings.SIMULATED_JITTER_MS,
            key_retention=timedelta(seconds=settings.PROVIDER_KEY_RETENTION),
        )
    # as many connections as calls may be in flight, unless set
    connections = (
        settings.PAYMENT_PROVIDER_MAX_CONNECTIONS or concurrency or settings.WORKER_CONCURRENCY
    )
    if settings.provider_kind == "stripe":
        from antaeus.payments.stripe import StripePaymentProvider, StripeProviderSettings

        if settings.STRIPE_API_KEY is None:
            raise ProviderConfigError("the Stripe provider needs ANTAEUS_STRIPE_API_KEY")
        return StripePaymentProvider(
            StripeProviderSettings(
                api_key=settings.STRIPE_API_KEY.get_secret_value(),
                api_base=settings.STRIPE_API_BASE,
                connect_timeout=settings.PAYMENT_PROVIDER_CONNECT_TIMEOUT,
                read_timeout=settings.PAYMENT_PROVIDER_READ_TIMEOUT,
                timeout=settings.PAYMENT_PROVIDER_TIMEOUT,
                max_connections=connections,
                client=settings.STRIPE_HTTP_CLIENT,
                retry_after_max=settings.RETRY_AFTER_MAX_SECONDS,
            )
        )
    if not settings.PAYMENT_PROVIDER_URL:
        raise ProviderConfigError("the HTTP payment provider needs ANTAEUS_PAYMENT_PROVIDER_URL")
    from antaeus.payments.http import HttpPaymentProvider, HttpProviderSettings

    key = settings.PAYMENT_PROVIDER_API_KEY
    return HttpPaymentProvider(
        HttpProviderSettings(
            base_url=settings.PAYMENT_PROVIDER_URL,
            api_key=key.get_secret_value() if key else None,
            key_retention=timedelta(seconds=settings.PROVIDER_KEY_RETENTION),
            connect_timeout=settings.PAYMENT_PROVIDER_CONNECT_TIMEOUT,
            read_timeout=settings.PAYMENT_PROVIDER_READ_TIMEOUT,
            timeout=settings.PAYMENT_PROVIDER_TIMEOUT,
            max_connections=connections,
            client=settings.PAYMENT_PROVIDER_HTTP_CLIENT,
            retry_after_max=settings.RETRY_AFTER_MAX_SECONDS,
        )
    )
