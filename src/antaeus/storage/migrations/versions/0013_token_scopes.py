"""Scoped tokens, and dashboard sessions bound to the token that opened them.

- `api_tokens.scope`: `read` (every GET: the API, the dashboard's pages, /metrics)
  or `write` (everything). Tokens created before are `write`, the power they had.
- `dashboard_sessions.token_hash`: the SHA-256 of the token that signed in. A
  session lives only while that very token is active, so revoking it, or changing
  `ANTAEUS_API_TOKEN`, ends its sessions. Sessions from before have none (NULL)
  and sign nobody in: people sign in again once after the upgrade.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("scope", sa.String(16), nullable=False, server_default="write"))
        batch.create_check_constraint("ck_api_tokens_scope", "scope IN ('read', 'write')")
    with op.batch_alter_table("dashboard_sessions") as batch:
        batch.add_column(sa.Column("token_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dashboard_sessions") as batch:
        batch.drop_column("token_hash")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_constraint("ck_api_tokens_scope", type_="check")
        batch.drop_column("scope")
