"""Invoice generation (issue 21): invoice lines, customer credit, changes made now.

- `invoice_lines`: what an invoice is made of (`kind` `subscription`,
  `proration`, `credit`, `balance`, `manual`; an open set). A (subscription,
  period start) has one `subscription` line, ever: a partial unique index, so
  that two generators racing (or one killed and run again) cannot bill a period
  twice. A change's lines are unique per (change, kind).
- `customers.credit_minor`: the customer's credit (>= 0); `credit_entries`:
  every change of it, with its sign and what it came from.
- `subscription_changes`: a change or cancel made `now` (what its lines and
  credit entries name).
- `subscriptions.trial_notice_on`, `cancel_notice_on`: the local dates at whose
  first instant `subscription.trial_will_end` and `subscription.canceled` are
  due (NULL once told, or nothing to tell).

Every invoice written before gets its one `manual` line (amount = the invoice's),
so that an invoice's lines always sum to its amount.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from antaeus.storage.types import BigId, UTCDateTime

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "subscription_changes",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("subscription_id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),  # change | cancel
        sa.Column("from_plan_id", sa.BigInteger, nullable=False),
        sa.Column("from_quantity", sa.Integer, nullable=False),
        sa.Column("to_plan_id", sa.BigInteger, nullable=True),
        sa.Column("to_quantity", sa.Integer, nullable=True),
        sa.Column("effective_date", sa.Date, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_subscription_changes"),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name="fk_subscription_changes_subscription_id_subscriptions",
        ),
    )
    op.create_index(
        "ix_subscription_changes_subscription_id_id",
        "subscription_changes",
        ["subscription_id", "id"],
    )
    op.create_table(
        "invoice_lines",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("invoice_id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("subscription_id", sa.BigInteger, nullable=True),
        sa.Column("plan_id", sa.BigInteger, nullable=True),
        sa.Column("change_id", sa.BigInteger, nullable=True),
        sa.Column("period_start", sa.Date, nullable=True),
        sa.Column("period_end", sa.Date, nullable=True),
        sa.Column("quantity", sa.Integer, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_invoice_lines"),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name="fk_invoice_lines_invoice_id_invoices"
        ),
    )
    op.create_index("ix_invoice_lines_invoice_id", "invoice_lines", ["invoice_id"])
    op.create_index(
        "uq_invoice_lines_subscription_period",
        "invoice_lines",
        ["subscription_id", "period_start"],
        unique=True,
        sqlite_where=sa.text("kind = 'subscription'"),
        postgresql_where=sa.text("kind = 'subscription'"),
    )
    op.create_index(
        "uq_invoice_lines_change_kind",
        "invoice_lines",
        ["change_id", "kind"],
        unique=True,
        sqlite_where=sa.text("change_id IS NOT NULL"),
        postgresql_where=sa.text("change_id IS NOT NULL"),
    )
    op.create_index(
        "ix_invoice_lines_subscription_id_invoice_id",
        "invoice_lines",
        ["subscription_id", "invoice_id"],
        sqlite_where=sa.text("subscription_id IS NOT NULL"),
        postgresql_where=sa.text("subscription_id IS NOT NULL"),
    )
    op.create_table(
        "credit_entries",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),  # with its sign
        sa.Column("balance_minor", sa.BigInteger, nullable=False),  # the balance after it
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("subscription_id", sa.BigInteger, nullable=True),
        sa.Column("invoice_id", sa.BigInteger, nullable=True),
        sa.Column("change_id", sa.BigInteger, nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_credit_entries"),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_credit_entries_customer_id_customers"
        ),
        sa.CheckConstraint("balance_minor >= 0", name="ck_credit_entries_balance_minor"),
    )
    op.create_index("ix_credit_entries_customer_id_id", "credit_entries", ["customer_id", "id"])
    # add_column, not a batch: SQLite adds a column without copying the table
    op.add_column(
        "customers", sa.Column("credit_minor", sa.BigInteger, nullable=False, server_default="0")
    )
    op.add_column("subscriptions", sa.Column("trial_notice_on", sa.Date, nullable=True))
    op.add_column("subscriptions", sa.Column("cancel_notice_on", sa.Date, nullable=True))
    for column in ("trial_notice_on", "cancel_notice_on"):
        op.create_index(
            f"ix_subscriptions_{column}",
            "subscriptions",
            [column],
            sqlite_where=sa.text(f"{column} IS NOT NULL"),
            postgresql_where=sa.text(f"{column} IS NOT NULL"),
        )
    # What was there before: the notices still to come, one manual line per invoice.
    three_days_before = (
        "trial_end_date - 3"
        if op.get_bind().dialect.name == "postgresql"
        else "date(trial_end_date, '-3 days')"
    )
    op.execute(
        f"UPDATE subscriptions SET trial_notice_on = {three_days_before} "  # noqa: S608
        "WHERE trial_end_date IS NOT NULL AND (cancel_at IS NULL OR cancel_at > trial_end_date)"
    )
    op.execute("UPDATE subscriptions SET cancel_notice_on = cancel_at WHERE cancel_at IS NOT NULL")
    op.execute(
        "INSERT INTO invoice_lines (invoice_id, kind, description, amount_minor) "
        "SELECT id, 'manual', 'Manual invoice', amount_minor FROM invoices ORDER BY id"
    )


def downgrade() -> None:
    for column in ("trial_notice_on", "cancel_notice_on"):
        op.drop_index(f"ix_subscriptions_{column}", table_name="subscriptions")
    # plain DROP COLUMN (SQLite >= 3.35): a batch would copy tables others refer to
    op.drop_column("subscriptions", "cancel_notice_on")
    op.drop_column("subscriptions", "trial_notice_on")
    op.drop_column("customers", "credit_minor")
    op.drop_table("credit_entries")
    op.drop_table("invoice_lines")
    op.drop_table("subscription_changes")
