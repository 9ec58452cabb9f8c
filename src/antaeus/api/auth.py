"""Bearer-token authentication for every /rest/v1 route.

Tokens live in the database as hashes, so every API instance shares them. Each
process keeps the active hashes for a few seconds (`ANTAEUS_TOKEN_CACHE_SECONDS`)
and reloads them at most once in that time, whatever the load: an unknown token
costs no database work, so a flood of wrong tokens cannot queue a valid one
behind reloads. A token created or revoked by another process (`antaeus token
create`/`revoke`; the API has no route that does) counts within that time.

Scopes: a `read` token may use every GET (HEAD, OPTIONS) and nothing else. The
refusal (403 `insufficient_scope`) is by HTTP method, for every path under /rest,
in a middleware (`ScopeGuard`) that answers before any route reads or validates
the body, so a route added later is covered without naming it anywhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from antaeus.api.errors import ApiError, InsufficientScopeError, UnauthorizedError, error_response
from antaeus.api.jsonio import ExactJSONRoute
from antaeus.security import (
    ENV_TOKEN_NAME,
    SAFE_METHODS,
    WRITE,
    TokenGrant,
    find_token,
    hash_token,
)
from antaeus.storage.database import Database
from antaeus.storage.repositories.tokens import TokenRepository


class TokenAuthority:
    def __init__(self, db: Database, env_token: str | None, ttl_seconds: float) -> None:
        self._db = db
        self._env_hash = hash_token(env_token) if env_token else None
        self._ttl = ttl_seconds
        self._known: dict[str, TokenGrant] = {}
        self._loaded_at = float("-inf")  # when the reload that gave `_known` began
        self._lock = asyncio.Lock()

    def _fresh_for(self, arrived: float) -> bool:
        """Whether the hashes held are good enough for a request that arrived at `arrived`:
        younger than the cache time, or read by a reload that began after it arrived."""
        return self._loaded_at >= arrived or time.monotonic() - self._loaded_at <= self._ttl

    async def _hashes(self) -> dict[str, TokenGrant]:
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
                known[self._env_hash] = TokenGrant(ENV_TOKEN_NAME, WRITE, self._env_hash)
            self._known = known
            self._loaded_at = began
        return known

    async def identify(self, token: str) -> TokenGrant | None:
        """The token presented (name, scope, hash), or None when it is unknown or revoked."""
        return find_token(hash_token(token), await self._hashes())

    async def authenticate(self, token: str) -> str | None:
        """The name of the token, or None when it is unknown or revoked."""
        grant = await self.identify(token)
        return grant.name if grant else None

    async def grant_of(self, token_hash: str) -> TokenGrant | None:
        """The active token of this hash (from the same cache: cheap), or None.

        A dashboard session checks the hash of the token that opened it on every
        request, so revoking that token, or changing ANTAEUS_API_TOKEN, ends its
        sessions within the cache time (a name alone would outlive both).
        """
        return find_token(token_hash, await self._hashes())


def _unauthorized(message: str) -> ApiError:
    return UnauthorizedError(message, headers={"WWW-Authenticate": "Bearer"})


def _insufficient_scope(grant: TokenGrant, method: str) -> ApiError:
    return InsufficientScopeError(
        f"token {grant.name!r} has the scope {grant.scope!r}: it may read (GET) but not "
        f"{method}; use a token created with --scope write",
        scope=grant.scope,
    )


async def require_grant(request: Request) -> TokenGrant:
    """The request's token (401 without a valid one; 403 for a write it may not do)."""
    known: TokenGrant | None = getattr(request.state, "grant", None)
    if known is None:  # else already checked, before the body was read
        header = request.headers.get("authorization")
        if not header:
            raise _unauthorized(
                "missing Authorization header; send 'Authorization: Bearer <token>'"
            )
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > 512:
            raise _unauthorized("malformed Authorization header; expected 'Bearer <token>'")
        authority: TokenAuthority = request.app.state.ctx.tokens
        known = await authority.identify(token)
        if known is None:
            raise _unauthorized("unknown or revoked token")
        request.state.grant = known
        request.state.principal = known.name
    if not known.allows(request.method):
        raise _insufficient_scope(known, request.method)
    return known


async def require_token(request: Request) -> str:
    """The name of the request's token (the actor of what it does)."""
    return (await require_grant(request)).name


Principal = Annotated[str, Depends(require_token)]
#: the caller's token itself (name and scope), for a route that shows it
Caller = Annotated[TokenGrant, Depends(require_grant)]


class ScopeGuard:
    """Every write (any method but GET, HEAD, OPTIONS) under /rest needs a write token.

    Checked here, before routing, for every such request whatever its route (one
    added later too), before anything reads the body: 401 without a valid token,
    403 `insufficient_scope` for a read token. The route's own check then finds
    the token already known.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"].upper() not in SAFE_METHODS
            and str(scope["path"]).startswith("/rest/")
        ):
            try:
                await require_grant(Request(scope))
            except ApiError as exc:
                await error_response(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class AuthenticatedRoute(ExactJSONRoute):
    """Checks the token before anything reads the body: an anonymous request gets 401,
    whatever it sent (the dependency then finds the principal already known)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def authenticated(request: Request) -> Response:
            await require_grant(request)
            return await handler(request)

        return authenticated
