"""Bearer-token authentication for every /rest/v1 route.

Tokens live in the database as hashes, so every API instance shares them. Each
process keeps the active hashes for a few seconds (`ANTAEUS_TOKEN_CACHE_SECONDS`);
an unknown token triggers at most one reload a second, so a token created by
another process works at once and a flood of wrong tokens costs little.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response

from antaeus.api.errors import ApiError
from antaeus.api.jsonio import ExactJSONRoute
from antaeus.security import ENV_TOKEN_NAME, find_token, hash_token
from antaeus.storage.database import Database
from antaeus.storage.repositories.tokens import TokenRepository

_MISS_RELOAD_SECONDS = 1.0


class TokenAuthority:
    def __init__(self, db: Database, env_token: str | None, ttl_seconds: float) -> None:
        self._db = db
        self._env_hash = hash_token(env_token) if env_token else None
        self._ttl = ttl_seconds
        self._known: dict[str, str] = {}
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _reload(self) -> None:
        async with self._lock:
            async with self._db.read() as conn:
                known = await TokenRepository(conn).active_hashes()
            if self._env_hash is not None:
                known[self._env_hash] = ENV_TOKEN_NAME
            self._known = known
            self._loaded_at = time.monotonic()

    async def authenticate(self, token: str) -> str | None:
        """The name of the token, or None when it is unknown or revoked."""
        presented = hash_token(token)
        age = time.monotonic() - self._loaded_at
        if age > self._ttl:
            await self._reload()
            age = 0.0
        name = find_token(presented, self._known)
        if name is None and age > _MISS_RELOAD_SECONDS:
            await self._reload()
            name = find_token(presented, self._known)
        return name


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


async def require_token(request: Request) -> str:
    known: str | None = getattr(request.state, "principal", None)
    if known is not None:  # already checked, before the body was read
        return known
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized("missing Authorization header; send 'Authorization: Bearer <token>'")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 512:
        raise _unauthorized("malformed Authorization header; expected 'Bearer <token>'")
    authority: TokenAuthority = request.app.state.ctx.tokens
    name = await authority.authenticate(token)
    if name is None:
        raise _unauthorized("unknown or revoked token")
    request.state.principal = name
    return name


Principal = Annotated[str, Depends(require_token)]


class AuthenticatedRoute(ExactJSONRoute):
    """Checks the token before anything reads the body: an anonymous request gets 401,
    whatever it sent (the dependency then finds the principal already known)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def authenticated(request: Request) -> Response:
            await require_token(request)
            return await handler(request)

        return authenticated
