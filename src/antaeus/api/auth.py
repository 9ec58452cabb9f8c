"""Bearer-token authentication for every /rest/v1 route.

Tokens live in the database as hashes, so every API instance shares them. Each
process keeps the active hashes for a few seconds (`ANTAEUS_TOKEN_CACHE_SECONDS`)
and reloads them at most once in that time, whatever the load: an unknown token
costs no database work, so a flood of wrong tokens cannot queue a valid one
behind reloads. A token created or revoked by another process (`antaeus token
create`/`revoke`; the API has no route that does) counts within that time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response

from antaeus.api.errors import ApiError, UnauthorizedError
from antaeus.api.jsonio import ExactJSONRoute
from antaeus.security import ENV_TOKEN_NAME, find_token, hash_token
from antaeus.storage.database import Database
from antaeus.storage.repositories.tokens import TokenRepository


class TokenAuthority:
    def __init__(self, db: Database, env_token: str | None, ttl_seconds: float) -> None:
        self._db = db
        self._env_hash = hash_token(env_token) if env_token else None
        self._ttl = ttl_seconds
        self._known: dict[str, str] = {}
        self._loaded_at = float("-inf")  # when the reload that gave `_known` began
        self._lock = asyncio.Lock()

    def _fresh_for(self, arrived: float) -> bool:
        """Whether the hashes held are good enough for a request that arrived at `arrived`:
        younger than the cache time, or read by a reload that began after it arrived."""
        return self._loaded_at >= arrived or time.monotonic() - self._loaded_at <= self._ttl

    async def _hashes(self) -> dict[str, str]:
        arrived = time.monotonic()
        if self._fresh_for(arrived):
            return self._known
        async with self._lock:
            # Check again: whoever held the lock may have reloaded while this one waited.
            if self._fresh_for(arrived):
                return self._known
            began = time.monotonic()
            async with self._db.read() as conn:
                known = await TokenRepository(conn).active_hashes()
            if self._env_hash is not None:
                known[self._env_hash] = ENV_TOKEN_NAME
            self._known = known
            self._loaded_at = began
        return known

    async def authenticate(self, token: str) -> str | None:
        """The name of the token, or None when it is unknown or revoked."""
        presented = hash_token(token)
        return find_token(presented, await self._hashes())

    async def is_active(self, name: str) -> bool:
        """Whether a token of this name is still active (from the same cache: cheap).

        A dashboard session checks it on every request, so revoking the token
        that signed in ends its sessions within the cache time.
        """
        return name in (await self._hashes()).values()


def _unauthorized(message: str) -> ApiError:
    return UnauthorizedError(message, headers={"WWW-Authenticate": "Bearer"})


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
