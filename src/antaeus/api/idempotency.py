"""`Idempotency-Key` for creating requests.

The key, a hash of the (normalized) request, and the response (status, headers
such as `Location`, body) are stored in the same transaction as the effect, so a
client's retry either finds the first response, repeated with
`Idempotent-Replayed: true`, or, if the first never committed, performs the
request once. The same
key with another body is refused with 422 `idempotency_key_reused`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final

from fastapi import Header, Response
from sqlalchemy.exc import IntegrityError

from antaeus.api.context import AppContext
from antaeus.api.errors import (
    ApiError,
    IdempotencyConflictError,
    IdempotencyKeyReusedError,
    InvalidIdempotencyKeyError,
)
from antaeus.api.jsonio import JSONResponse
from antaeus.exactjson import dumps, loads
from antaeus.storage.database import WriteConnection
from antaeus.storage.repositories.idempotency import IdempotencyRepository, StoredResponse

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
    def __init__(self, stored: StoredResponse) -> None:
        self.stored = stored


#: Answers a replay from the stored (status, body) instead of repeating it verbatim.
Replay = Callable[[int, str], Awaitable[Response]]

#: Where the creating requests' answers point (`Location`), for keys stored before
#: their answer's headers were (migration 0014): derived from the stored body's id.
_LEGACY_LOCATIONS: Final = {
    "POST /rest/v1/customers": "/rest/v1/customers/{id}",
    "POST /rest/v1/invoices": "/rest/v1/invoices/{id}",
    "POST /rest/v1/billing": "/rest/v1/billing/runs/{id}",
}


def _stored_headers(scope: str, stored: StoredResponse) -> dict[str, str]:
    if stored.headers is not None:
        return stored.headers
    template = _LEGACY_LOCATIONS.get(scope)
    if template is None or not 200 <= stored.status_code < 300:
        return {}
    try:
        ident = loads(stored.body).get("id")
    except (ValueError, AttributeError):
        return {}
    return {"Location": template.format(id=ident)} if isinstance(ident, int) else {}


def _replayed(scope: str, stored: StoredResponse, response: Response) -> Response:
    """The replay's answer: the stored headers (unless the answer has its own), marked."""
    for name, value in _stored_headers(scope, stored).items():
        if name not in response.headers:
            response.headers[name] = value
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _answer(body: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    """The effect's answer; a 204 (a DELETE's) has no body at all."""
    if status == 204:
        return Response(status_code=204, headers=headers)
    return JSONResponse(body, status_code=status, headers=headers)


def _stored_answer(stored: StoredResponse) -> Response:
    if stored.status_code == 204:
        return Response(status_code=204)
    return JSONResponse.from_text(stored.body, stored.status_code)


async def _answer_stored(scope: str, stored: StoredResponse, replay: Replay | None) -> Response:
    if replay is not None:
        response = await replay(stored.status_code, stored.body)
    else:
        response = _stored_answer(stored)
    return _replayed(scope, stored, response)


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
        return _answer(body, status, headers)
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
                    raise _ReplayError(stored)
                status, body, headers = await effect(conn)
                text = dumps(body)
                try:
                    await repo.save(scope, key, digest, status, text, ctx.clock.now(), headers)
                except IntegrityError:
                    raise _KeyTakenError from None
            return _answer(body, status, headers)
        except _ReplayError as replaying:
            return await _answer_stored(scope, replaying.stored, replay)
        except _KeyTakenError:
            # Another request with this key committed first (PostgreSQL lets
            # both get this far): loop to answer what it stored.
            continue
        except ApiError:
            # Refused: perhaps because another request with this key committed its
            # effect first (PostgreSQL: a unique value it took, such as a plan's
            # code). Then its answer is this request's too; otherwise the refusal.
            async with ctx.db.read() as conn:
                stored = await IdempotencyRepository(conn).find(scope, key)
            if stored is None:
                raise
            if stored.request_hash != digest:
                raise IdempotencyKeyReusedError(
                    "this Idempotency-Key was already used with a different request",
                    field="Idempotency-Key",
                ) from None
            return await _answer_stored(scope, stored, replay)
    raise IdempotencyConflictError("concurrent requests with this Idempotency-Key")


#: Does a request's work in transactions of its own: (status code, JSON-able body).
Work = Callable[[], Awaitable[tuple[int, Any]]]


async def run_idempotent_in_steps(
    ctx: AppContext, scope: str, key: str | None, normalized_request: Any, work: Work
) -> Response:
    """Run `work`, which commits in several transactions, at most once per answered key.

    For work too large for one transaction (a bulk action): a key already
    answered replays that answer; otherwise the work runs and its answer is
    stored at the end. A repeat that arrives while the first is still running,
    or after it died half-way, runs the work again: the work must be safe to
    repeat (each bulk action is a conditional UPDATE per invoice, so a repeat
    acts only on what is left). If another request stored an answer for the
    key meanwhile, that answer is the one given.
    """
    if key is None:
        status, body = await work()
        return JSONResponse(body, status_code=status)
    if not _KEY.fullmatch(key):
        raise InvalidIdempotencyKeyError(
            "Idempotency-Key must be 1 to 255 printable ASCII characters",
            field="Idempotency-Key",
        )
    digest = request_hash(normalized_request)

    async def stored_answer() -> Response | None:
        async with ctx.db.read() as conn:
            stored = await IdempotencyRepository(conn).find(scope, key)
        if stored is None:
            return None
        if stored.request_hash != digest:
            raise IdempotencyKeyReusedError(
                "this Idempotency-Key was already used with a different request",
                field="Idempotency-Key",
            )
        return _replayed(scope, stored, _stored_answer(stored))

    earlier = await stored_answer()
    if earlier is not None:
        return earlier
    status, body = await work()
    try:
        async with ctx.db.write() as conn:
            repo = IdempotencyRepository(conn)
            if await repo.find(scope, key) is None:
                await repo.save(scope, key, digest, status, dumps(body), ctx.clock.now(), {})
                return JSONResponse(body, status_code=status)
    except IntegrityError:
        pass  # another request with this key stored its answer first
    earlier = await stored_answer()
    if earlier is None:  # pragma: no cover - a stored key is never deleted this soon
        raise IdempotencyConflictError("concurrent requests with this Idempotency-Key")
    return earlier
