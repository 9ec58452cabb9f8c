"""Dashboard sign-in: server-side sessions behind a cookie, and the CSRF checks.

The cookie holds 256 random bits; the database (`dashboard_sessions`) holds only
their SHA-256, so every API process sharing the database knows every session,
and a leaked table row does not sign anyone in. A session is bound to the token
that signed in by that token's hash: each request checks that very token is
still active (from the token cache, no query), so revoking it, or changing
`ANTAEUS_API_TOKEN`, ends its sessions within `ANTAEUS_TOKEN_CACHE_SECONDS`. A
session row without a hash (opened before sessions were bound) signs nobody in.
The session has its token's scope: a `read` session may POST only `/signout`
(checked in `require`, before the form is read); its pages show no action.
Every form carries the session's CSRF token, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from antaeus.api.context import AppContext
from antaeus.security import SAFE_METHODS, WRITE, TokenGrant
from antaeus.storage.repositories.dashboard import SessionRepository

COOKIE: Final = "antaeus_session"
#: the sign-in form's own CSRF token (double submit: this cookie and a hidden field)
SIGNIN_COOKIE: Final = "antaeus_signin"
SESSION_LIFETIME: Final = timedelta(hours=12)
SIGNIN_LIFETIME: Final = timedelta(hours=1)
CSRF_FIELD: Final = "csrf_token"
_MAX_COOKIE = 128
#: what a read session may still POST (signing in needs no session)
READ_SESSION_POSTS: Final = frozenset({"/signout"})


class SignInRequiredError(Exception):
    """No valid session: the browser is sent to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__("sign in first")
        self.next_path = next_path


class CsrfRefusedError(Exception):
    """A form came without its CSRF token, or with a wrong one: nothing was done."""


class ScopeRefusedError(Exception):
    """A read session asked for an action: nothing was done."""

    def __init__(self, session: Session) -> None:
        super().__init__("a read token cannot act")
        self.session = session


@dataclass(frozen=True, slots=True)
class Session:
    id_hash: str
    token_name: str
    csrf_token: str
    scope: str  # its token's: `read` or `write`

    @property
    def can_write(self) -> bool:
        return self.scope == WRITE


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_id(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def same_secret(sent: object, expected: str) -> bool:
    """Whether `sent` (a form value) is `expected`, compared in constant time."""
    if not isinstance(sent, str) or not sent or len(sent) > _MAX_COOKIE:
        return False
    return hmac.compare_digest(sent.encode("utf-8"), expected.encode("utf-8"))


def set_cookie(response: Response, name: str, value: str, max_age: timedelta, path: str) -> None:
    response.set_cookie(
        name,
        value,
        max_age=int(max_age.total_seconds()),
        path=path,
        secure=True,
        httponly=True,
        samesite="strict",
    )


def clear_cookie(response: Response, name: str, path: str) -> None:
    response.delete_cookie(name, path=path, secure=True, httponly=True, samesite="strict")


def _context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


async def start(ctx: AppContext, grant: TokenGrant, response: Response) -> None:
    """A new session of the token `grant`, its cookie set on `response`; expired ones pruned."""
    raw = new_secret()
    now = ctx.clock.now()
    async with ctx.db.write() as conn:
        repo = SessionRepository(conn)
        await repo.prune(now)
        await repo.create(
            hash_id(raw),
            grant.name,
            new_secret(),
            now,
            now + SESSION_LIFETIME,
            token_hash=grant.token_hash,
        )
    set_cookie(response, COOKIE, raw, SESSION_LIFETIME, "/")


async def end(ctx: AppContext, session: Session, response: Response) -> None:
    async with ctx.db.write() as conn:
        await SessionRepository(conn).delete(session.id_hash)
    clear_cookie(response, COOKIE, "/")


async def current(request: Request) -> Session | None:
    """The request's session: its cookie names an unexpired one whose very token (by hash)
    is still active."""
    raw = request.cookies.get(COOKIE)
    if not raw or len(raw) > _MAX_COOKIE:
        return None
    ctx = _context(request)
    id_hash = hash_id(raw)
    async with ctx.db.read() as conn:
        row = await SessionRepository(conn).get(id_hash, ctx.clock.now())
    if row is None:
        return None
    grant = await ctx.tokens.grant_of(row.token_hash) if row.token_hash else None
    if grant is None:  # revoked, no longer the env token, or a session from before
        async with ctx.db.write() as conn:
            await SessionRepository(conn).delete(id_hash)
        return None
    return Session(id_hash, row.token_name, row.csrf_token, grant.scope)


def _here(request: Request) -> str:
    path = request.url.path
    return f"{path}?{request.url.query}" if request.url.query else path


async def require(request: Request) -> Session:
    """The session, or SignInRequiredError (a FastAPI dependency)."""
    found = await current(request)
    if found is None:
        raise SignInRequiredError(_here(request) if request.method == "GET" else "/")
    if (
        not found.can_write
        and request.method.upper() not in SAFE_METHODS
        and request.url.path not in READ_SESSION_POSTS
    ):
        raise ScopeRefusedError(found)  # every dashboard route's check, before its form
    return found


async def checked_form(request: Request, session: Session) -> FormData:
    """The POSTed form, once its CSRF token is the session's; else CsrfRefusedError."""
    form = await request.form()
    if not same_secret(form.get(CSRF_FIELD), session.csrf_token):
        raise CsrfRefusedError
    return form


def safe_next(value: object) -> str:
    """Where to go after signing in: a path of this site only (never `//host` or a URL)."""
    if (
        not isinstance(value, str)
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or len(value) > 2000
        or any(ord(c) < 0x20 for c in value)
    ):
        return "/"
    return value
