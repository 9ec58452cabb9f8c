"""Billing engine: invoice billing state, charge attempts, runs, outbox, audit, pause state.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from antaeus.storage.types import BigId, UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(sa.Column("eligible_at", UTCDateTime, nullable=True))
        batch.add_column(sa.Column("run_id", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("lease_owner", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", UTCDateTime, nullable=True))
        batch.add_column(sa.Column("attempt_open_since", UTCDateTime, nullable=True))
        batch.add_column(sa.Column("dunning_count", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("unknown_repeats", sa.Integer, nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("run_unknown_since", UTCDateTime, nullable=True))
    op.execute("UPDATE invoices SET eligible_at = COALESCE(next_attempt_at, due_at)")
    with op.batch_alter_table("invoices") as batch:
        batch.alter_column("eligible_at", existing_type=UTCDateTime, nullable=False)
    op.create_index(
        "ix_invoices_due_not_in_run",
        "invoices",
        ["eligible_at"],
        sqlite_where=sa.text("status = 'PENDING' AND run_id IS NULL"),
        postgresql_where=sa.text("status = 'PENDING' AND run_id IS NULL"),
    )
    op.create_index(
        "ix_invoices_in_run",
        "invoices",
        ["eligible_at"],
        sqlite_where=sa.text("run_id IS NOT NULL"),
        postgresql_where=sa.text("run_id IS NOT NULL"),
    )
    op.create_table(
        "charge_attempts",
        sa.Column(
            "invoice_id",
            sa.BigInteger,
            sa.ForeignKey("invoices.id", name="fk_charge_attempts_invoice_id_invoices"),
            primary_key=True,
        ),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("run_id", sa.BigInteger, nullable=True),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column("charge_id", sa.String(255), nullable=True),
        sa.Column("sends", sa.Integer, nullable=False, server_default="1"),
    )
    op.create_table(
        "billing_runs",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("completed_at", UTCDateTime, nullable=True),
    )
    op.create_index("ix_billing_runs_status_id", "billing_runs", ["status", "id"])
    op.create_table(
        "run_invoices",
        sa.Column(
            "run_id",
            sa.BigInteger,
            sa.ForeignKey("billing_runs.id", name="fk_run_invoices_run_id_billing_runs"),
            primary_key=True,
        ),
        sa.Column(
            "invoice_id",
            sa.BigInteger,
            sa.ForeignKey("invoices.id", name="fk_run_invoices_invoice_id_invoices"),
            primary_key=True,
        ),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("finished_at", UTCDateTime, nullable=True),
    )
    op.create_index(
        "ix_run_invoices_open",
        "run_invoices",
        ["run_id"],
        sqlite_where=sa.text("outcome IS NULL"),
        postgresql_where=sa.text("outcome IS NULL"),
    )
    op.create_table(
        "events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("invoice_id", sa.BigInteger, nullable=True),
        sa.Column("run_id", sa.BigInteger, nullable=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "invoice_actions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "invoice_id",
            sa.BigInteger,
            sa.ForeignKey("invoices.id", name="fk_invoice_actions_invoice_id_invoices"),
            nullable=False,
        ),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("charge_id", sa.String(255), nullable=True),
        sa.Column("from_status", sa.String(16), nullable=False),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_invoice_actions_invoice_id", "invoice_actions", ["invoice_id"])
    charging_state = op.create_table(
        "charging_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("paused_reason", sa.Text, nullable=True),
        sa.Column("paused_since", UTCDateTime, nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.bulk_insert(charging_state, [{"id": 1, "updated_at": datetime.now(UTC)}])


def downgrade() -> None:
    op.drop_table("charging_state")
    op.drop_index("ix_invoice_actions_invoice_id", table_name="invoice_actions")
    op.drop_table("invoice_actions")
    op.drop_table("events")
    op.drop_index("ix_run_invoices_open", table_name="run_invoices")
    op.drop_table("run_invoices")
    op.drop_index("ix_billing_runs_status_id", table_name="billing_runs")
    op.drop_table("billing_runs")
    op.drop_table("charge_attempts")
    op.drop_index("ix_invoices_in_run", table_name="invoices")
    op.drop_index("ix_invoices_due_not_in_run", table_name="invoices")
    with op.batch_alter_table("invoices") as batch:
        for column in (
            "run_unknown_since",
            "unknown_repeats",
            "dunning_count",
            "attempt_open_since",
            "lease_expires_at",
            "lease_owner",
            "run_id",
            "eligible_at",
        ):
            batch.drop_column(column)
