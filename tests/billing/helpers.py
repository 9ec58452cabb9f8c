"""Small builders shared by the billing tests (plain async functions, like factories)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from antaeus.domain.money import Currency, Money
from antaeus.storage.database import Database
from antaeus.storage.repositories.customers import CustomerRepository
from antaeus.storage.repositories.invoices import InvoiceRepository
from antaeus.storage.tables import charge_attempts, invoices, run_invoices


async def make_invoices(
    db: Database, n: int, due_at: datetime, *, currency: Currency = Currency.EUR, tz: str = "UTC"
) -> list[int]:
    ids = []
    async with db.write() as conn:
        customer = await CustomerRepository(conn).create(currency, tz, due_at)
        for i in range(n):
            invoice = await InvoiceRepository(conn).create(
                customer.id, Money.of(f"{10 + i}.50", currency), due_at, due_at
            )
            ids.append(invoice.id)
    return ids


async def invoice_row(db: Database, invoice_id: int) -> Any:
    async with db.read() as conn:
        return (await conn.execute(select(invoices).where(invoices.c.id == invoice_id))).one()


async def attempts_of(db: Database, invoice_id: int) -> list[Any]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(charge_attempts)
            .where(charge_attempts.c.invoice_id == invoice_id)
            .order_by(charge_attempts.c.number)
        )
        return list(rows)


async def run_outcomes(db: Database, run_id: int) -> dict[int, str | None]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(run_invoices.c.invoice_id, run_invoices.c.outcome).where(
                run_invoices.c.run_id == run_id
            )
        )
        return {r.invoice_id: r.outcome for r in rows}
