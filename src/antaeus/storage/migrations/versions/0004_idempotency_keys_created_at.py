"""An index on idempotency_keys.created_at, for the retention sweep.

Built CONCURRENTLY on PostgreSQL (a table that was never swept can be big, and
a plain build holds every API write that stores an Idempotency-Key). A database
already at 0004 built it the plain way; the index is the same.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

from antaeus.storage.migrations import online

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    online.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    online.drop_index("ix_idempotency_keys_created_at", "idempotency_keys")
