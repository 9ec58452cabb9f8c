"""The FastAPI application. The engine is built in the lifespan, not at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import antaeus
from antaeus.api.auth import TokenAuthority
from antaeus.api.context import AppContext
from antaeus.api.errors import install_error_handlers
from antaeus.api.routes import customers, health, invoices
from antaeus.clock import Clock, SystemClock
from antaeus.config import Settings
from antaeus.storage.database import Database

DESCRIPTION = """
Antaeus keeps customers and their invoices and charges every due invoice
exactly once through a payment provider.

Every `/rest/v1` route needs `Authorization: Bearer <token>`
(create one with `antaeus token create --name NAME`). Lists are ordered by
ascending id and paginated with `limit` and `after`; the next page is in the
`Link` header. Errors are `{"error", "message", "field"}`.
"""


def create_app(
    settings: Settings, *, clock: Clock | None = None, database: Database | None = None
) -> FastAPI:
    """Build the app. A `database` handed in is used as is (and not disposed of)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = database or Database.from_settings(settings)
        env_token = settings.API_TOKEN.get_secret_value() if settings.API_TOKEN else None
        app.state.ctx = AppContext(
            settings=settings,
            db=db,
            clock=clock or SystemClock(),
            tokens=TokenAuthority(db, env_token, settings.TOKEN_CACHE_SECONDS),
        )
        try:
            yield
        finally:
            if database is None:
                await db.dispose()

    app = FastAPI(
        title="Antaeus",
        version=antaeus.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        max_body_size=settings.MAX_BODY_BYTES,
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(customers.router)
    app.include_router(invoices.router)
    return app
