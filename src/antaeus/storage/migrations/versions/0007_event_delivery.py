"""Delivering the outbox: destinations, deliveries and their tries.

- `events.fanned_out_at`: when the relay made the event's deliveries. Events
  written before this revision had no one to go to: they are marked fanned out
  (`created_at`), so a webhook created later does not receive the history.
- Indexes for the events API (`type`, `invoice_id`) and for pruning.
- `event_destinations`, `event_deliveries`, `delivery_tries` (storage/tables.py).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from antaeus.storage.migrations.online import create_index, drop_index
from antaeus.storage.types import BigId, UTCDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("events", sa.Column("fanned_out_at", UTCDateTime, nullable=True))
    op.execute("UPDATE events SET fanned_out_at = created_at")
    op.create_table(
        "event_destinations",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("event_types", sa.Text, nullable=True),
        sa.Column("secret", sa.String(128), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failing_since", UTCDateTime, nullable=True),
        sa.Column("disabled_at", UTCDateTime, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "event_deliveries",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "event_id",
            sa.BigInteger(),
            sa.ForeignKey("events.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "destination_id",
            sa.BigInteger(),
            sa.ForeignKey("event_destinations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("tries", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_try_at", UTCDateTime, nullable=False),
        sa.Column("delivered_at", UTCDateTime, nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.UniqueConstraint(
            "event_id", "destination_id", name="uq_event_deliveries_event_id_destination_id"
        ),
    )
    op.create_index(
        "ix_event_deliveries_pending_next_try_at",
        "event_deliveries",
        ["next_try_at"],
        sqlite_where=sa.text("delivered_at IS NULL"),
        postgresql_where=sa.text("delivered_at IS NULL"),
    )
    op.create_index("ix_event_deliveries_destination_id", "event_deliveries", ["destination_id"])
    op.create_table(
        "delivery_tries",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("destination_id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("tried_at", UTCDateTime, nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("ok", sa.Integer(), nullable=False),
    )
    op.create_index(
        "ix_delivery_tries_destination_id_id", "delivery_tries", ["destination_id", "id"]
    )
    op.create_index("ix_delivery_tries_event_id", "delivery_tries", ["event_id"])
    # on the events table, which may be big and busy: built without blocking writes
    create_index("ix_events_not_fanned_out_id", "events", ["id"], where="fanned_out_at IS NULL")
    create_index("ix_events_type_id", "events", ["type", "id"])
    create_index("ix_events_invoice_id_id", "events", ["invoice_id", "id"])
    create_index("ix_events_created_at", "events", ["created_at"])


def downgrade() -> None:
    for name in (
        "ix_events_created_at",
        "ix_events_invoice_id_id",
        "ix_events_type_id",
        "ix_events_not_fanned_out_id",
    ):
        drop_index(name, "events")
    op.drop_table("delivery_tries")
    op.drop_table("event_deliveries")
    op.drop_table("event_destinations")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("fanned_out_at")
