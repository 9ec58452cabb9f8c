"""SQLite writers of one process queue for the write lock instead of racing for it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from antaeus.storage import database as database_module
from antaeus.storage.database import Database


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> int:
    """SQLite gives up on a lock after this many ms (30 s in production)."""
    monkeypatch.setattr(database_module, "SQLITE_BUSY_TIMEOUT_MS", 100)
    return 100


async def test_a_writer_waits_for_another_of_its_process_however_long_it_writes(
    tmp_path: Path, short_busy_timeout: int
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        async with db.write() as conn:
            await conn.execute(text("CREATE TABLE t (n INTEGER)"))
        order: list[str] = []

        async def slow() -> None:
            async with db.write() as conn:
                order.append("slow began")
                await conn.execute(text("INSERT INTO t VALUES (1)"))
                await asyncio.sleep(5 * short_busy_timeout / 1000)  # far past the busy timeout
                order.append("slow ends")

        async def quick() -> None:
            await asyncio.sleep(0.02)  # after `slow` holds the lock
            async with db.write() as conn:
                order.append("quick began")
                await conn.execute(text("INSERT INTO t VALUES (2)"))

        await asyncio.gather(slow(), quick())  # no "database is locked"
        assert order == ["slow began", "slow ends", "quick began"]
        async with db.read() as conn:
            rows = await conn.execute(text("SELECT n FROM t ORDER BY n"))
            assert list(rows.scalars()) == [1, 2]
    finally:
        await db.dispose()


async def test_a_failed_write_frees_the_lock_and_writes_nothing(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        async with db.write() as conn:
            await conn.execute(text("CREATE TABLE t (n INTEGER)"))

        async def fails() -> None:
            async with db.write() as conn:
                await conn.execute(text("INSERT INTO t VALUES (1)"))
                raise RuntimeError("half-way")

        with pytest.raises(RuntimeError):
            await fails()
        async with db.write() as conn:  # not stuck behind the failed one
            await conn.execute(text("INSERT INTO t VALUES (2)"))
        async with db.read() as conn:
            assert list((await conn.execute(text("SELECT n FROM t"))).scalars()) == [2]
    finally:
        await db.dispose()
