"""Answers matched to their claim, sends that count, and every answer kept.

- `invoices.lease_token`: which claim holds the lease (an answer is recorded
  only for the claim it belongs to).
- `invoices.attempt_sends`: sends of the open attempt that may have reached
  the provider. Existing open attempts take their attempt row's `sends`
  (at least 1: an open attempt was sent, or may have been).
- `charge_attempt_answers`: every answer an attempt got, in order.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from antaeus.storage.types import BigId, UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("invoices", sa.Column("lease_token", sa.BigInteger(), nullable=True))
    op.add_column(
        "invoices",
        sa.Column("attempt_sends", sa.Integer(), nullable=False, server_default="0"),
    )
    op.execute(
        "UPDATE invoices SET attempt_sends = COALESCE(("
        " SELECT CASE WHEN charge_attempts.sends > 1 THEN charge_attempts.sends ELSE 1 END"
        " FROM charge_attempts WHERE charge_attempts.invoice_id = invoices.id"
        " AND charge_attempts.number = invoices.attempt_count), 1)"
        " WHERE attempt_open_since IS NOT NULL"
    )
    op.create_table(
        "charge_attempt_answers",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("invoice_id", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("charge_id", sa.String(255), nullable=True),
        sa.Column("answered_at", UTCDateTime, nullable=False),
    )
    op.create_index(
        "ix_charge_attempt_answers_invoice_id_attempt",
        "charge_attempt_answers",
        ["invoice_id", "attempt"],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_charge_attempt_answers_invoice_id_attempt", table_name="charge_attempt_answers"
    )
    op.drop_table("charge_attempt_answers")
    with op.batch_alter_table("invoices") as batch:
        batch.drop_column("attempt_sends")
        batch.drop_column("lease_token")
