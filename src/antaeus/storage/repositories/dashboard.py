"""What the dashboard reads and writes beyond the API's repositories: its sessions,
the money collected since a time, and the invoices that wait for a person."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic

from sqlalchemy import delete, func, insert, select

from antaeus.domain.invoice import Invoice, InvoiceStatus
from antaeus.domain.money import Currency, Money
from antaeus.domain.policy import ChargeOutcome
from antaeus.storage.database import Conn, WriteConnection
from antaeus.storage.repositories.invoices import to_invoice
from antaeus.storage.tables import billing_runs, charge_attempts, dashboard_sessions, invoices

WAITING_FOR_PERSON = (InvoiceStatus.FAILED.value, InvoiceStatus.REVIEW.value)


@dataclass(frozen=True, slots=True)
class SessionRow:
    token_name: str
    csrf_token: str
    expires_at: datetime
    token_hash: str | None  # None: opened before sessions were bound to their token


class SessionRepository(Generic[Conn]):
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def create(
        self: SessionRepository[WriteConnection],
        id_hash: str,
        token_name: str,
        csrf_token: str,
        now: datetime,
        expires_at: datetime,
        *,
        token_hash: str,
    ) -> None:
        await self.conn.execute(
            insert(dashboard_sessions).values(
                id_hash=id_hash,
                token_name=token_name,
                token_hash=token_hash,
                csrf_token=csrf_token,
                created_at=now,
                expires_at=expires_at,
            )
        )

    async def get(self, id_hash: str, now: datetime) -> SessionRow | None:
        """The session, unless it has expired."""
        row = (
            await self.conn.execute(
                select(dashboard_sessions).where(
                    dashboard_sessions.c.id_hash == id_hash, dashboard_sessions.c.expires_at > now
                )
            )
        ).first()
        if row is None:
            return None
        return SessionRow(row.token_name, row.csrf_token, row.expires_at, row.token_hash)

    async def delete(self: SessionRepository[WriteConnection], id_hash: str) -> None:
        await self.conn.execute(
            delete(dashboard_sessions).where(dashboard_sessions.c.id_hash == id_hash)
        )

    async def delete_of_token(self: SessionRepository[WriteConnection], token_name: str) -> int:
        """End every session of the token of this name (it was just revoked)."""
        done = await self.conn.execute(
            delete(dashboard_sessions).where(dashboard_sessions.c.token_name == token_name)
        )
        return int(done.rowcount or 0)

    async def prune(self: SessionRepository[WriteConnection], now: datetime) -> int:
        """Forget every expired session."""
        done = await self.conn.execute(
            delete(dashboard_sessions).where(dashboard_sessions.c.expires_at <= now)
        )
        return int(done.rowcount or 0)


class DashboardRepository(Generic[Conn]):
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def collected_since(self, since: datetime) -> list[Money]:
        """Amounts charged since `since` per currency: every attempt that ended charged
        (by a worker, or a person's resolve as charged), by when it ended."""
        rows = await self.conn.execute(
            select(invoices.c.currency, func.sum(invoices.c.amount_minor))
            .select_from(
                charge_attempts.join(invoices, invoices.c.id == charge_attempts.c.invoice_id)
            )
            .where(
                charge_attempts.c.outcome == ChargeOutcome.CHARGED.value,
                charge_attempts.c.finished_at >= since,
            )
            .group_by(invoices.c.currency)
            .order_by(invoices.c.currency)
        )
        return [Money.from_minor(int(total), Currency(cur)) for cur, total in rows]

    async def waiting_counts(self) -> dict[str, int]:
        """How many invoices are FAILED and how many REVIEW."""
        counts = dict.fromkeys(WAITING_FOR_PERSON, 0)
        rows = await self.conn.execute(
            select(invoices.c.status, func.count())
            .where(invoices.c.status.in_(WAITING_FOR_PERSON))
            .group_by(invoices.c.status)
        )
        for status, n in rows:
            counts[status] = int(n)
        return counts

    async def waiting(self, limit: int) -> list[Invoice]:
        """The invoices that wait for a person, oldest first (REVIEW before FAILED)."""
        rows = await self.conn.execute(
            select(invoices)
            .where(invoices.c.status.in_(WAITING_FOR_PERSON))
            .order_by(invoices.c.status.desc(), invoices.c.id)
            .limit(limit)
        )
        return [to_invoice(r) for r in rows]

    async def recent_run_ids(self, *, before: int | None, limit: int) -> list[int]:
        """Run ids, newest first (`before`: older than this run)."""
        query = select(billing_runs.c.id)
        if before is not None:
            query = query.where(billing_runs.c.id < before)
        rows = await self.conn.execute(query.order_by(billing_runs.c.id.desc()).limit(limit))
        return [int(r[0]) for r in rows]
