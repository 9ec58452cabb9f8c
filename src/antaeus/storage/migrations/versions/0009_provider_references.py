"""Customers know their provider references; attempts keep the provider's decline code.

- `customers.provider_customer_id`: the customer at the provider (Stripe's `cus_…`).
- `customers.provider_payment_method_id`: the payment method to charge (Stripe's `pm_…`).
  Both optional (NULL: none); set by `POST`/`PATCH /rest/v1/customers`, passed to
  the provider with every charge.
- `charge_attempts.decline_code`: the provider's decline code of an attempt that
  ended `card_declined` (Stripe's `expired_card`, `generic_decline`, …).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("customers", sa.Column("provider_customer_id", sa.String(255), nullable=True))
    op.add_column(
        "customers", sa.Column("provider_payment_method_id", sa.String(255), nullable=True)
    )
    op.add_column("charge_attempts", sa.Column("decline_code", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("charge_attempts") as batch:
        batch.drop_column("decline_code")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("provider_payment_method_id")
        batch.drop_column("provider_customer_id")
