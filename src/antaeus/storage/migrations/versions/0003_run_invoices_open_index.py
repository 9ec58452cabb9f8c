"""The open-members index of run_invoices covers the invoice id too.

With only (run_id), PostgreSQL's generic plan for "this run's row for this
invoice, still open" walked every open row of the run: quadratic in run size.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _create(columns: list[str]) -> None:
    op.create_index(
        "ix_run_invoices_open",
        "run_invoices",
        columns,
        sqlite_where=sa.text("outcome IS NULL"),
        postgresql_where=sa.text("outcome IS NULL"),
    )


def upgrade() -> None:
    op.drop_index("ix_run_invoices_open", table_name="run_invoices")
    _create(["run_id", "invoice_id"])


def downgrade() -> None:
    op.drop_index("ix_run_invoices_open", table_name="run_invoices")
    _create(["run_id"])
