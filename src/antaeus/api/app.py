"""The FastAPI application. The engine is built in the lifespan, not at import time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import structlog
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

import antaeus
from antaeus.api.auth import ScopeGuard, TokenAuthority
from antaeus.api.context import AppContext
from antaeus.api.errors import ContentLengthLimit, install_error_handlers
from antaeus.api.routes import (
    billing,
    customers,
    events,
    health,
    invoices,
    plans,
    subscriptions,
    upcoming,
)
from antaeus.billing.reconcile import Reconciler
from antaeus.billing.runs import Scheduler
from antaeus.billing.worker import Worker, worker_settings
from antaeus.clock import Clock, SystemClock
from antaeus.config import Settings
from antaeus.dashboard import install as install_dashboard
from antaeus.notify.factory import build_relay
from antaeus.payments.factory import ProviderConfigError, build_provider
from antaeus.payments.provider import PaymentProvider
from antaeus.storage.database import Database

log = structlog.get_logger("antaeus.app")

DOCS_STATIC_URL = "/static-offline-docs"

DESCRIPTION = """
Antaeus keeps customers and their invoices and charges every due invoice
exactly once through a payment provider.

Every `/rest/v1` route needs `Authorization: Bearer <token>`
(create one with `antaeus token create --name NAME`). A token of scope `read`
(`--scope read`) may only read: any other method than GET is 403
`insufficient_scope`. Lists are ordered by ascending id and paginated with
`limit` and `after`; the next page is in the `Link` header. Errors are
`{"error", "message", "field"}`.
"""


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    database: Database | None = None,
    provider: PaymentProvider | None = None,
    embedded_worker: bool = False,
    scheduler: bool = False,
    relay: bool = False,
) -> FastAPI:
    """Build the app. A `database` or `provider` handed in is used as is (and not closed).

    `embedded_worker`, `scheduler` and `relay` run the charging worker, the run
    scheduler and the outbox relay as tasks of this process (what `antaeus
    serve` does by default).
    Request handlers never call the provider.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = database or Database.from_settings(settings)
        env_token = settings.API_TOKEN.get_secret_value() if settings.API_TOKEN else None
        the_clock = clock or SystemClock()
        app.state.ctx = AppContext(
            settings=settings,
            db=db,
            clock=the_clock,
            tokens=TokenAuthority(db, env_token, settings.TOKEN_CACHE_SECONDS),
            policy=settings.policy(),
        )
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        own_provider: PaymentProvider | None = None

        def the_provider() -> PaymentProvider:
            # one provider for the worker and the reconciler: built when first needed
            nonlocal own_provider
            if provider is not None:
                return provider
            if own_provider is None:
                own_provider = build_provider(settings)
            return own_provider

        # what the dashboard's "Ask the provider now" looks a REVIEW invoice up with
        app.state.provider = the_provider
        if embedded_worker:
            charging = the_provider()
            worker = Worker(
                db,
                charging,
                the_clock,
                settings.policy(charging.deduplicates_keys),
                worker_settings(settings),
            )
            app.state.worker = worker  # `antaeus serve` reports its stats at a stop
            tasks.append(asyncio.create_task(worker.run(stop), name="antaeus-worker"))
        if scheduler:
            try:
                reconciler: Reconciler | None = Reconciler.from_settings(
                    db, the_provider(), the_clock, settings
                )
            except ProviderConfigError as exc:  # the API and the scheduler still serve
                log.warning("reconciler_not_started", reason=str(exc))
                reconciler = None
            sched = Scheduler(
                db,
                the_clock,
                settings.policy(),
                settings.SCHEDULE,
                settings.SCHEDULER_INTERVAL,
                idempotency_retention=timedelta(seconds=settings.IDEMPOTENCY_KEY_RETENTION),
                reconciler=reconciler,
                reconcile_interval=settings.RECONCILE_INTERVAL,
            )
            tasks.append(asyncio.create_task(sched.run(stop), name="antaeus-scheduler"))
        the_relay = None
        if relay:
            the_relay = build_relay(db, the_clock, settings)
            app.state.relay = the_relay  # GET /rest/v1/status shows its health
            tasks.append(asyncio.create_task(the_relay.run(stop), name="antaeus-relay"))
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            if the_relay is not None:
                await the_relay.aclose()
            if own_provider is not None:
                await own_provider.aclose()
            if database is None:
                await db.dispose()

    # /docs (Swagger UI) and /redoc with their scripts, stylesheet and icon served
    # from the installed fastapi-offline package at DOCS_STATIC_URL, not from a
    # CDN: the pages work on a machine without the internet.
    app = FastAPIOffline(
        static_url=DOCS_STATIC_URL,
        title="Antaeus",
        version=antaeus.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,  # /rest/v1/invoices/ is a 404 JSON error, not a redirect
    )
    app.add_middleware(ContentLengthLimit, limit=settings.MAX_BODY_BYTES)
    # outermost: a read token's write is 403 before anything looks at its body (even its size)
    app.add_middleware(ScopeGuard)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(customers.router)
    app.include_router(upcoming.router)
    app.include_router(invoices.router)
    app.include_router(plans.router)
    app.include_router(subscriptions.router)
    app.include_router(billing.router)
    app.include_router(events.router)
    install_dashboard(app)  # the pages at /, after the API's routes
    return app
