"""Each charge attempt keeps the provider references it was sent with.

- `charge_attempts.provider_customer_id`, `charge_attempts.provider_payment_method_id`:
  the customer's references at the provider (Stripe's `cus_…`, `pm_…`) when the
  attempt was written ahead of its first send. Every later question about the
  attempt (a repeat with its key, reconciliation, the audit) uses these, never the
  customer's current ones (which a person may have changed meanwhile).
- `charge_attempts.references_recorded`: true when the two columns say what was sent
  (NULL there then means "sent with none"). NULL on attempts written before this
  migration: what they were sent with is not known, so reconciliation answers
  "cannot tell" for them and a person decides. No backfill: the customer's
  references today need not be those of the send.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns without a default: no table rewrite on either engine.
    op.add_column(
        "charge_attempts", sa.Column("provider_customer_id", sa.String(255), nullable=True)
    )
    op.add_column(
        "charge_attempts", sa.Column("provider_payment_method_id", sa.String(255), nullable=True)
    )
    op.add_column("charge_attempts", sa.Column("references_recorded", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("charge_attempts") as batch:
        batch.drop_column("references_recorded")
        batch.drop_column("provider_payment_method_id")
        batch.drop_column("provider_customer_id")
