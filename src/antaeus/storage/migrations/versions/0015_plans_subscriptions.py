"""Plans and subscriptions (issue 21: storage and API; invoice generation comes next).

- `plans`: code (unique), name, currency and amount in minor units (>= 0),
  interval and count, trial days, `archived_at`.
- `subscriptions`: customer, plan, quantity, anchor, the local dates (start,
  trial end, cancel at), a pending `period_end` change, and where billing has
  got to (`periods_from`, `next_period_start`, `next_due_at`, indexed for the
  generator's "due by now" query).

New tables only: rows written before are untouched.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from antaeus.storage.types import BigId, UTCDateTime

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("interval", sa.String(8), nullable=False),
        sa.Column("interval_count", sa.Integer, nullable=False),
        sa.Column("trial_days", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("archived_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_plans"),
        sa.UniqueConstraint("code", name="uq_plans_code"),
        sa.CheckConstraint("amount_minor >= 0", name="ck_plans_amount_minor"),
        sa.CheckConstraint(
            "interval IN ('day', 'week', 'month', 'year')", name="ck_plans_interval"
        ),
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.BigInteger, nullable=False),
        sa.Column("plan_id", sa.BigInteger, nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("billing_anchor", sa.String(16), nullable=False),
        sa.Column("start_date", sa.Date, nullable=False),
        sa.Column("trial_end_date", sa.Date, nullable=True),
        sa.Column("cancel_at", sa.Date, nullable=True),
        sa.Column("canceled_at", UTCDateTime, nullable=True),
        sa.Column("pending_plan_id", sa.BigInteger, nullable=True),
        sa.Column("pending_quantity", sa.Integer, nullable=True),
        sa.Column("pending_effective_date", sa.Date, nullable=True),
        sa.Column("periods_from", sa.Date, nullable=True),
        sa.Column("next_period_start", sa.Date, nullable=True),
        sa.Column("next_due_at", UTCDateTime, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_subscriptions"),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_subscriptions_customer_id_customers"
        ),
        sa.ForeignKeyConstraint(["plan_id"], ["plans.id"], name="fk_subscriptions_plan_id_plans"),
        sa.ForeignKeyConstraint(
            ["pending_plan_id"], ["plans.id"], name="fk_subscriptions_pending_plan_id_plans"
        ),
        sa.CheckConstraint("quantity >= 1", name="ck_subscriptions_quantity"),
        sa.CheckConstraint(
            "billing_anchor IN ('calendar', 'anniversary')", name="ck_subscriptions_billing_anchor"
        ),
    )
    op.create_index("ix_subscriptions_customer_id_id", "subscriptions", ["customer_id", "id"])
    op.create_index("ix_subscriptions_plan_id_id", "subscriptions", ["plan_id", "id"])
    op.create_index(
        "ix_subscriptions_next_due_at",
        "subscriptions",
        ["next_due_at"],
        sqlite_where=sa.text("next_due_at IS NOT NULL"),
        postgresql_where=sa.text("next_due_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_table("subscriptions")
    op.drop_table("plans")
