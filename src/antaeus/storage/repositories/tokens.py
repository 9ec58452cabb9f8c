from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic

from sqlalchemy import insert, select, update

from antaeus.security import WRITE, TokenGrant
from antaeus.storage.database import Conn, WriteConnection
from antaeus.storage.tables import api_tokens


@dataclass(frozen=True, slots=True)
class TokenRecord:
    name: str
    token_hash: str
    created_at: datetime
    revoked_at: datetime | None
    scope: str = WRITE


class TokenRepository(Generic[Conn]):
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def create(
        self: TokenRepository[WriteConnection],
        name: str,
        token_hash: str,
        now: datetime,
        *,
        scope: str = WRITE,
    ) -> None:
        await self.conn.execute(
            insert(api_tokens).values(name=name, token_hash=token_hash, created_at=now, scope=scope)
        )

    async def exists(self, name: str) -> bool:
        found = await self.conn.scalar(select(api_tokens.c.id).where(api_tokens.c.name == name))
        return found is not None

    async def all(self) -> list[TokenRecord]:
        rows = await self.conn.execute(select(api_tokens).order_by(api_tokens.c.id))
        return [
            TokenRecord(r.name, r.token_hash, r.created_at, r.revoked_at, r.scope) for r in rows
        ]

    async def active_hashes(self) -> dict[str, TokenGrant]:
        """hash -> the token (name, scope) of every token not revoked."""
        rows = await self.conn.execute(
            select(api_tokens.c.token_hash, api_tokens.c.name, api_tokens.c.scope).where(
                api_tokens.c.revoked_at.is_(None)
            )
        )
        return {r.token_hash: TokenGrant(r.name, r.scope, r.token_hash) for r in rows}

    async def any_active(self) -> bool:
        found = await self.conn.scalar(
            select(api_tokens.c.id).where(api_tokens.c.revoked_at.is_(None)).limit(1)
        )
        return found is not None

    async def revoke(self: TokenRepository[WriteConnection], name: str, now: datetime) -> bool:
        result = await self.conn.execute(
            update(api_tokens)
            .where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return result.rowcount == 1
