"""Reconciliation of unknown outcomes with the provider (protocol 1.1).

- `reconciliations`: what the reconciler asked the provider about an attempt in
  REVIEW (its idempotency key), what the provider answered (`result`: charged,
  not_charged, cannot_tell; `charge_id`; `detail` in words), and what became of
  the invoice (`outcome`: paid, pending, review, deferred, superseded). Asking
  again and getting the same answer counts in `asks` and `last_asked_at`.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from antaeus.storage.types import BigId, UTCDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reconciliations",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "invoice_id",
            sa.BigInteger,
            sa.ForeignKey("invoices.id", name="fk_reconciliations_invoice_id_invoices"),
            nullable=False,
        ),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("charge_id", sa.String(255), nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("asked_at", UTCDateTime, nullable=False),
        sa.Column("last_asked_at", UTCDateTime, nullable=False),
        sa.Column("asks", sa.Integer, nullable=False, server_default="1"),
    )
    op.create_index(
        "ix_reconciliations_invoice_id_attempt", "reconciliations", ["invoice_id", "attempt"]
    )


def downgrade() -> None:
    op.drop_index("ix_reconciliations_invoice_id_attempt", "reconciliations")
    op.drop_table("reconciliations")
