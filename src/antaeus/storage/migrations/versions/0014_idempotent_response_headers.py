"""Idempotency keys remember the headers of the answer they replay.

- `idempotency_keys.response_headers`: the first answer's own headers (such as
  `Location`) as a JSON object, repeated by a replay. NULL for keys stored
  before this migration: a replay of a creating request then derives
  `Location` from the stored body's id (api/idempotency.py).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("idempotency_keys", sa.Column("response_headers", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("response_headers")
