"""A small FastAPI app that sells a monthly plan through Antaeus, with `antaeus.client`.

It creates the plan once, signs customers up (a customer and a subscription,
each with an idempotency key derived from the sign-up, so a double-clicked
form or a retried request never makes two), registers its own webhook endpoint
and receives Antaeus's events, verified with `verify_webhook` and deduplicated
by event id (delivery is at least once).

    antaeus serve                                  # with ANTAEUS_WEBHOOK_ALLOW_PRIVATE=true
    export ANTAEUS_URL=http://127.0.0.1:7000 ANTAEUS_TOKEN=ant_...
    export EXAMPLE_PUBLIC_URL=http://127.0.0.1:8000   # where Antaeus reaches this app
    uvicorn examples.subscriptions_app:app --port 8000

    curl -X POST localhost:8000/signups -H 'content-type: application/json' \\
         -d '{"signupId": "s-1", "currency": "EUR", "timezone": "Europe/Copenhagen"}'
    curl localhost:8000/events                     # what Antaeus told us so far
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal

from fastapi import FastAPI, HTTPException, Request, Response
from pydantic import BaseModel

from antaeus.client import (
    AsyncClient,
    ConflictError,
    Event,
    Plan,
    WebhookVerificationError,
    verify_webhook,
)

PLAN_CODE = "example-pro-monthly"


class Signup(BaseModel):
    signupId: str  # noqa: N815 (the JSON's name): your own id for the sign-up, retried as is
    currency: str = "EUR"
    timezone: str = "UTC"
    quantity: int = 1


@dataclass
class State:
    api: AsyncClient
    plan: Plan
    webhook_secret: str | None = None
    events: dict[str, Event] = field(default_factory=dict)  # by id: each handled once


async def _the_plan(api: AsyncClient) -> Plan:
    """The plan, made on the first start (a repeat, or a second process, finds it)."""
    try:
        return await api.plans.create(
            code=PLAN_CODE,
            name="Pro",
            amount=Decimal("30.00"),
            currency="EUR",
            interval="month",
            trial_days=14,
            idempotency_key=f"plan-{PLAN_CODE}",
        )
    except ConflictError:  # made before, with another key
        async for plan in api.plans.list(archived=False):
            if plan.code == PLAN_CODE:
                return plan
        raise


def create_app(
    base_url: str | None = None, token: str | None = None, public_url: str | None = None
) -> FastAPI:
    base_url = base_url or os.environ.get("ANTAEUS_URL", "http://127.0.0.1:7000")
    token = token or os.environ.get("ANTAEUS_TOKEN")
    public_url = public_url or os.environ.get("EXAMPLE_PUBLIC_URL")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncClient(base_url=base_url, token=token) as api:
            state = State(api, await _the_plan(api))
            if public_url:
                hook = await api.webhooks.create(
                    url=f"{public_url}/antaeus/webhooks",
                    events=["subscription.created", "subscription.canceled", "invoice.paid"],
                )
                state.webhook_secret = hook.secret  # shown once: keep it (here, in memory)
            app.state.shop = state
            yield

    app = FastAPI(title="A shop on Antaeus", lifespan=lifespan)

    @app.post("/signups", status_code=201)
    async def sign_up(signup: Signup, request: Request) -> dict[str, object]:
        state: State = request.app.state.shop
        customer = await state.api.customers.create(
            currency=signup.currency,
            timezone=signup.timezone,
            idempotency_key=f"signup-{signup.signupId}-customer",
        )
        subscription = await state.api.subscriptions.create(
            customer_id=customer.id,
            plan_id=state.plan.id,
            quantity=signup.quantity,
            idempotency_key=f"signup-{signup.signupId}-subscription",
        )
        return {
            "customerId": customer.id,
            "subscriptionId": subscription.id,
            "status": subscription.status,
            "trialEndDate": subscription.trial_end_date,
        }

    @app.post("/antaeus/webhooks", status_code=204)
    async def receive(request: Request) -> Response:
        state: State = request.app.state.shop
        if state.webhook_secret is None:
            raise HTTPException(404, "no webhook registered")
        try:
            event = verify_webhook(state.webhook_secret, request.headers, await request.body())
        except WebhookVerificationError as exc:
            raise HTTPException(400, f"refused: {exc}") from exc  # Antaeus tries again later
        if event.id not in state.events:
            state.events[event.id] = event
            # act on it here: provision on subscription.created, lock out on canceled...
        return Response(status_code=204)

    @app.get("/events")
    async def events(request: Request) -> list[dict[str, object]]:
        state: State = request.app.state.shop
        return [
            {
                "id": e.id,
                "type": e.type,
                "subscriptionId": e.subscription.id if e.subscription else None,
            }
            for e in state.events.values()
        ]

    return app


app = create_app()
