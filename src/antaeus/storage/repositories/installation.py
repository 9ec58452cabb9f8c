from __future__ import annotations

from sqlalchemy import select

from antaeus.storage.database import ReadConnection
from antaeus.storage.tables import installation


class InstallationRepository:
    def __init__(self, conn: ReadConnection) -> None:
        self.conn = conn

    async def installation_id(self) -> str:
        """The random id created with this database (namespaces idempotency keys)."""
        value = await self.conn.scalar(
            select(installation.c.installation_id).where(installation.c.id == 1)
        )
        if value is None:
            raise RuntimeError("this database has no installation id: run `antaeus db upgrade`")
        return str(value)
