"""Reads for `antaeus audit`: invoices and their charge attempts, a page at a time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from antaeus.storage.database import ReadConnection
from antaeus.storage.tables import charge_attempts, invoices


class AuditRepository:
    def __init__(self, conn: ReadConnection) -> None:
        self.conn = conn

    async def invoices_after(self, after: int, limit: int) -> Sequence[Any]:
        """The next `limit` invoices by id (keyset): id, status, amount_minor, currency."""
        query = (
            select(invoices.c.id, invoices.c.status, invoices.c.amount_minor, invoices.c.currency)
            .where(invoices.c.id > after)
            .order_by(invoices.c.id)
            .limit(limit)
        )
        return (await self.conn.execute(query)).all()

    async def attempts_between(self, first: int, last: int) -> Sequence[Any]:
        """Every attempt of the invoices `first`..`last` (a range of the primary key)."""
        query = (
            select(
                charge_attempts.c.invoice_id,
                charge_attempts.c.number,
                charge_attempts.c.idempotency_key,
                charge_attempts.c.outcome,
                charge_attempts.c.charge_id,
                charge_attempts.c.provider_customer_id,
                charge_attempts.c.references_recorded,
            )
            .where(charge_attempts.c.invoice_id >= first, charge_attempts.c.invoice_id <= last)
            .order_by(charge_attempts.c.invoice_id, charge_attempts.c.number)
        )
        return (await self.conn.execute(query)).all()
