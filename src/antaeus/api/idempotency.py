"""`Idempotency-Key` for creating requests.

The key, a hash of the (normalized) request, and the response are stored in the
same transaction as the effect, so a client's retry either finds the first
response or, if the first never committed, performs the request once. The same
key with another body is refused with 422 `idempotency_key_reused`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Header, Response
from sqlalchemy.exc import IntegrityError

from antaeus.api.context import AppContext
from antaeus.api.errors import (
    IdempotencyConflictError,
    IdempotencyKeyReusedError,
    InvalidIdempotencyKeyError,
)
from antaeus.api.jsonio import JSONResponse
from antaeus.exactjson import dumps
from antaeus.storage.database import WriteConnection
from antaeus.storage.repositories.idempotency import IdempotencyRepository

_KEY = re.compile(r"[\x21-\x7e]{1,255}")

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="1 to 255 printable ASCII characters; a retry with the same key and body "
        "answers the first response and creates nothing new",
    ),
]

#: Makes a response: (status code, JSON-able body, extra headers).
Effect = Callable[[WriteConnection], Awaitable[tuple[int, Any, dict[str, str]]]]


def request_hash(normalized: Any) -> str:
    return hashlib.sha256(dumps(normalized).encode("utf-8")).hexdigest()


class _KeyTakenError(Exception):
    pass


class _ReplayError(Exception):
    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body


#: Answers a replay from the stored (status, body) instead of repeating it verbatim.
Replay = Callable[[int, str], Awaitable[Response]]


async def run_idempotent(
    ctx: AppContext,
    scope: str,
    key: str | None,
    normalized_request: Any,
    effect: Effect,
    replay: Replay | None = None,
) -> Response:
    """Run `effect` in a write transaction, at most once per (scope, key)."""
    if key is None:
        async with ctx.db.write() as conn:
            status, body, headers = await effect(conn)
        return JSONResponse(body, status_code=status, headers=headers)
    if not _KEY.fullmatch(key):
        raise InvalidIdempotencyKeyError(
            "Idempotency-Key must be 1 to 255 printable ASCII characters",
            field="Idempotency-Key",
        )
    digest = request_hash(normalized_request)
    for _ in range(3):
        try:
            async with ctx.db.write() as conn:
                repo = IdempotencyRepository(conn)
                stored = await repo.find(scope, key)
                if stored is not None:
                    if stored.request_hash != digest:
                        raise IdempotencyKeyReusedError(
                            "this Idempotency-Key was already used with a different request",
                            field="Idempotency-Key",
                        )
                    raise _ReplayError(stored.status_code, stored.body)
                status, body, headers = await effect(conn)
                text = dumps(body)
                try:
                    await repo.save(scope, key, digest, status, text, ctx.clock.now())
                except IntegrityError:
                    raise _KeyTakenError from None
            return JSONResponse(body, status_code=status, headers=headers)
        except _ReplayError as stored:
            if replay is not None:
                response = await replay(stored.status, stored.body)
                response.headers["Idempotent-Replayed"] = "true"
                return response
            return JSONResponse.from_text(stored.body, stored.status)
        except _KeyTakenError:
            # Another request with this key committed first (PostgreSQL lets
            # both get this far): loop to answer what it stored.
            continue
    raise IdempotencyConflictError("concurrent requests with this Idempotency-Key")
