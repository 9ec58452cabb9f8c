"""Events a poller can never miss; a broker destination that can be retired.

- `events.xact_id`: on PostgreSQL, the id of the transaction that wrote the event
  (`pg_current_xact_id()`, as a bigint: a column default, so the hot path that
  writes events sends nothing more). `GET /rest/v1/events` lists only events
  whose transaction ended before every transaction still open
  (`pg_snapshot_xmin(pg_current_snapshot())`), in (xact_id, id) order: no event
  can appear later before one already listed. NULL (SQLite, and every event
  written before this migration) counts as 0: visible, first. On PostgreSQL the
  list's indexes follow that order: all events, by type, by invoice (the last
  two replace ix_events_type_id and ix_events_invoice_id_id there).
- `event_destinations.events_since`: the destination takes events written from
  this moment on (NULL: since `created_at`); set when the broker's destination is
  enabled again after being retired (a relay without ANTAEUS_AMQP_URL retires it).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from antaeus.storage.types import UTCDateTime

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("events", sa.Column("xact_id", sa.BigInteger, nullable=True))
    op.add_column("event_destinations", sa.Column("events_since", UTCDateTime, nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        # no table rewrite: old rows keep NULL, new rows get the writing transaction's id
        op.execute(
            "ALTER TABLE events ALTER COLUMN xact_id"
            " SET DEFAULT (pg_current_xact_id()::text::bigint)"
        )
        # the list's order on PostgreSQL; the filtered lists' indexes take the same order
        # (replacing the (type, id) and (invoice_id, id) ones: no more index per event)
        op.execute("CREATE INDEX ix_events_xact_id_id ON events ((coalesce(xact_id, 0)), id)")
        op.execute(
            "CREATE INDEX ix_events_type_xact_id_id ON events (type, (coalesce(xact_id, 0)), id)"
        )
        op.execute(
            "CREATE INDEX ix_events_invoice_id_xact_id_id"
            " ON events (invoice_id, (coalesce(xact_id, 0)), id)"
        )
        op.drop_index("ix_events_type_id", "events")
        op.drop_index("ix_events_invoice_id_id", "events")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_events_type_id", "events", ["type", "id"])
        op.create_index("ix_events_invoice_id_id", "events", ["invoice_id", "id"])
        op.execute("DROP INDEX IF EXISTS ix_events_invoice_id_xact_id_id")
        op.execute("DROP INDEX IF EXISTS ix_events_type_xact_id_id")
        op.execute("DROP INDEX IF EXISTS ix_events_xact_id_id")
    with op.batch_alter_table("event_destinations") as batch:
        batch.drop_column("events_since")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("xact_id")
