"""What a request handler needs, built once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from antaeus.api.auth import TokenAuthority
from antaeus.clock import Clock
from antaeus.config import Settings
from antaeus.domain.policy import PolicySettings
from antaeus.storage.database import Database


@dataclass
class AppContext:
    settings: Settings
    db: Database
    clock: Clock
    tokens: TokenAuthority
    policy: PolicySettings


def _context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(_context)]
