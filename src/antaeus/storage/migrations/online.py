"""Index builds that do not hold writes on a live PostgreSQL database.

`CREATE INDEX` takes a lock that blocks every write to the table until the
build ends: minutes on a big table. On PostgreSQL these helpers build and drop
`CONCURRENTLY` instead, which cannot run inside a transaction: they step out of
the migration's own transaction (alembic's `autocommit_block`, which commits
what the migration did so far; env.py runs one transaction per migration, so
that is only this migration's own earlier steps). SQLite gets plain statements
inside the migration's transaction.

A concurrent build that is interrupted (a crash, a cancel, a statement timeout)
leaves an INVALID index under its name, which `IF NOT EXISTS` would keep for
ever, never used and still maintained on every write. `create_index` drops such
a leftover first, so running the migration again finishes the job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op


def _is_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _is_invalid(name: str) -> bool:
    valid = op.get_bind().scalar(
        sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"),
        {"name": name},
    )
    return valid is False


def create_index(
    name: str, table: str, columns: Sequence[str], *, where: str | None = None
) -> None:
    """CREATE INDEX (partial with `where`); CONCURRENTLY on PostgreSQL, safe to run again."""
    kw: dict[str, Any] = {}
    if where is not None:
        kw = {"sqlite_where": sa.text(where), "postgresql_where": sa.text(where)}
    if not _is_postgresql():
        op.create_index(name, table, list(columns), **kw)
        return
    with op.get_context().autocommit_block():
        if _is_invalid(name):
            op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
        op.create_index(
            name, table, list(columns), postgresql_concurrently=True, if_not_exists=True, **kw
        )


def drop_index(name: str, table: str) -> None:
    """DROP INDEX; CONCURRENTLY on PostgreSQL (no lock on the table's readers and writers)."""
    if not _is_postgresql():
        op.drop_index(name, table_name=table)
        return
    with op.get_context().autocommit_block():
        op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
