"""Indexes for the scans that grew with the table (scheduler tick, void, status).

- ix_invoices_open_attempt (status, attempt_open_since), open attempts only:
  the scheduler's once-a-second sweep of attempts past the key's retention to
  REVIEW (it walked every PENDING invoice).
- ix_invoices_open_attempt_waiting (status, run_id, eligible_at), open attempts
  waiting for their repeat outside a run: in `external` mode, the scheduler's
  probe for repeats that are due (it walked every due invoice not in a run).
- ix_run_invoices_open_invoice_id (invoice_id), open memberships only: void
  (the primary key leads with run_id: void read all run history).
- ix_invoices_pending_not_in_run (status, eligible_at) replaces
  ix_invoices_due_not_in_run (eligible_at), same rows: with the status first,
  SQLite (never analyzed) takes it over ix_invoices_status_id, which walked
  every PENDING invoice on each scheduler tick and for the status backlog.

Built CONCURRENTLY on PostgreSQL, outside a transaction, so upgrading a live
database does not hold writes (see `antaeus.storage.migrations.online`).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

from antaeus.storage.migrations import online

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING_NOT_IN_RUN = "status = 'PENDING' AND run_id IS NULL"
OPEN_ATTEMPT_WAITING = f"{PENDING_NOT_IN_RUN} AND attempt_open_since IS NOT NULL"


def upgrade() -> None:
    online.create_index(
        "ix_invoices_open_attempt",
        "invoices",
        ["status", "attempt_open_since"],
        where="attempt_open_since IS NOT NULL",
    )
    online.create_index(
        "ix_invoices_open_attempt_waiting",
        "invoices",
        ["status", "run_id", "eligible_at"],
        where=OPEN_ATTEMPT_WAITING,
    )
    online.create_index(
        "ix_run_invoices_open_invoice_id", "run_invoices", ["invoice_id"], where="outcome IS NULL"
    )
    # the new one first: the rows it serves always have an index
    online.create_index(
        "ix_invoices_pending_not_in_run",
        "invoices",
        ["status", "eligible_at"],
        where=PENDING_NOT_IN_RUN,
    )
    online.drop_index("ix_invoices_due_not_in_run", "invoices")


def downgrade() -> None:
    online.create_index(
        "ix_invoices_due_not_in_run", "invoices", ["eligible_at"], where=PENDING_NOT_IN_RUN
    )
    online.drop_index("ix_invoices_pending_not_in_run", "invoices")
    online.drop_index("ix_run_invoices_open_invoice_id", "run_invoices")
    online.drop_index("ix_invoices_open_attempt_waiting", "invoices")
    online.drop_index("ix_invoices_open_attempt", "invoices")
