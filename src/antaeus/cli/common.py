"""Helpers shared by the CLI commands."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from antaeus.config import Settings, get_settings
from antaeus.observability.logging import configure_logging
from antaeus.storage import migrate
from antaeus.storage.database import Database

T = TypeVar("T")

out = Console()
err = Console(stderr=True)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop when available."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.run(coro)
    return uvloop.run(coro)


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def load_settings() -> Settings:
    try:
        settings = get_settings()
    except Exception as exc:  # pydantic's ValidationError names the bad setting
        fail(f"invalid configuration: {exc}")
    configure_logging(settings.LOG_LEVEL, settings.LOG_FORMAT)
    return settings


async def prepare(db: Database, *, allow_migrate: bool) -> None:
    """Migrate a database that is behind, or refuse to go on when not allowed to."""
    try:
        current = await migrate.current_revision(db)
    except OSError as exc:
        fail(f"cannot reach the database ({db.url.split('://')[0]}): {exc}")
    if current == migrate.head_revision():
        return
    if not allow_migrate:
        fail(
            f"the database schema is at {current or 'nothing (empty database)'}, "
            f"not {migrate.head_revision()}; run `antaeus db upgrade` (or drop --no-migrate)"
        )
    await migrate.upgrade(db)
    err.print(f"database migrated from {current or 'empty'} to {migrate.head_revision()}")
