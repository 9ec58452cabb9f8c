from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Generic

from sqlalchemy import delete, insert, select

from antaeus.storage.database import Conn, WriteConnection
from antaeus.storage.tables import idempotency_keys


@dataclass(frozen=True, slots=True)
class StoredResponse:
    request_hash: str
    status_code: int
    body: str
    headers: dict[str, str] | None  # the answer's own headers; None: stored before they were


def _headers(text: str | None) -> dict[str, str] | None:
    if text is None:
        return None
    loaded = json.loads(text)
    return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else None


class IdempotencyRepository(Generic[Conn]):
    """Responses remembered per (scope, key), written in the same transaction as their effect."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def find(self, scope: str, key: str) -> StoredResponse | None:
        row = (
            await self.conn.execute(
                select(
                    idempotency_keys.c.request_hash,
                    idempotency_keys.c.status_code,
                    idempotency_keys.c.response_body,
                    idempotency_keys.c.response_headers,
                ).where(idempotency_keys.c.scope == scope, idempotency_keys.c.key == key)
            )
        ).first()
        if row is None:
            return None
        return StoredResponse(
            row.request_hash, row.status_code, row.response_body, _headers(row.response_headers)
        )

    async def save(
        self: IdempotencyRepository[WriteConnection],
        scope: str,
        key: str,
        request_hash: str,
        status_code: int,
        body: str,
        now: datetime,
        headers: dict[str, str] | None = None,
    ) -> None:
        await self.conn.execute(
            insert(idempotency_keys).values(
                scope=scope,
                key=key,
                request_hash=request_hash,
                status_code=status_code,
                response_body=body,
                response_headers=json.dumps(headers or {}, sort_keys=True),
                created_at=now,
            )
        )

    async def purge_before(
        self: IdempotencyRepository[WriteConnection], cut: datetime, limit: int
    ) -> int:
        """Forget up to `limit` of the oldest keys stored before `cut`; answers how many."""
        oldest = (
            select(idempotency_keys.c.id)
            .where(idempotency_keys.c.created_at < cut)
            .order_by(idempotency_keys.c.created_at)
            .limit(limit)
        )
        result = await self.conn.execute(
            delete(idempotency_keys).where(idempotency_keys.c.id.in_(oldest))
        )
        return int(result.rowcount or 0)
