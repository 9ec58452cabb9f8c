"""Helpers shared by the CLI commands."""

from __future__ import annotations

import asyncio
import errno
import gc
import socket
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from antaeus.security import mask_url, scrub

if TYPE_CHECKING:
    from antaeus.config import Settings
    from antaeus.storage.database import Database

# Every command imports this module (and `--help` only this one, typer and rich):
# what a command needs beyond it is imported when it runs (the web stack, alembic,
# SQLAlchemy, pydantic cost over a second of CPU to import).

T = TypeVar("T")

out = Console()
err = Console(stderr=True)


def raise_open_files_limit() -> int:
    """Lift the soft limit on open files to the hard one; answers the limit now.

    Each provider call in flight holds a connection, and each connection a file:
    a worker with 2,000 calls in flight needs more than the common soft limit of 1,024.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # pragma: no cover - a sandbox may refuse
            pass
    return int(soft)


#: the database the settings name (set by `load_settings`), for `run`'s one-line errors
_database_url: str | None = None


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop when available (with the open-files limit lifted).

    A database that cannot be used (not created, server down, role refused, a SQLite
    path that cannot be opened) ends the command with one line saying what to do.
    """
    raise_open_files_limit()
    _quiet_aiosqlite_after_loop_closed()
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
            return asyncio.run(coro)
        return uvloop.run(coro)
    except typer.Exit:
        raise
    except Exception as exc:
        if _database_url is not None:
            from antaeus.storage.problems import database_problem

            problem = database_problem(exc, _database_url)
            if problem is not None:
                fail(escape(problem.message))
        raise


def _quiet_aiosqlite_after_loop_closed() -> None:
    """A connection that failed to open (a SQLite path that cannot be used) leaves
    aiosqlite's thread behind; when the loop has closed, that thread's hand-back
    fails with "Event loop is closed" and Python printed its traceback before our
    one line about the database. Nothing is lost there: that thread only answers a
    coroutine that is gone. Every other thread's error is printed as before."""
    previous = threading.excepthook
    if getattr(previous, "_antaeus_quiet", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if (
            isinstance(args.exc_value, RuntimeError)
            and "Event loop is closed" in str(args.exc_value)
            and args.thread is not None
            and "_connection_worker_thread" in args.thread.name
        ):
            return
        previous(args)

    hook._antaeus_quiet = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def listen_socket(host: str, port: int) -> socket.socket:
    """Bind `host:port` for the API, or fail with one line naming the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        fail(_bind_error(host, port, exc, "--port or ANTAEUS_PORT"))
    sock.set_inheritable(True)
    return sock


def serve_metrics(port: int, host: str) -> None:
    """Serve Prometheus metrics on `host:port` (a thread), or fail with one line.

    A parent of worker processes calls it after `start_multiprocess_metrics()`:
    it then serves their sum (`metrics.registry()`).
    """
    from prometheus_client import start_http_server

    from antaeus.observability import metrics

    try:
        start_http_server(port, addr=host, registry=metrics.registry())
    except OSError as exc:
        fail(_bind_error(host, port, exc, "--metrics-port"))


def start_multiprocess_metrics() -> str:
    """The metrics directory of a parent of worker processes (see
    antaeus.observability.multiprocess), or fail with one line."""
    from antaeus.observability import multiprocess

    try:
        return multiprocess.start_multiprocess_metrics()
    except multiprocess.MetricsDirectoryError as exc:
        fail(escape(str(exc)))


def _bind_error(host: str, port: int, exc: OSError, option: str) -> str:
    if exc.errno == errno.EADDRINUSE:
        why = "the port is in use"
    elif exc.errno == errno.EACCES:
        why = "permission denied (ports below 1024 need privileges)"
    elif exc.errno == errno.EADDRNOTAVAIL:
        why = "no such address on this machine"
    else:
        why = exc.strerror or str(exc)
    return f"cannot listen on {host}:{port}: {why}; choose another with {option}"


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def configure_logging(level: str, fmt: str) -> None:
    from antaeus.observability.logging import configure_logging as configure

    configure(level, fmt)


def option_variables(command: Any) -> set[str]:
    """Every `envvar` of an option in the command tree under `command` (`ANTAEUS_URL`, ...).

    `command` is typer's click command (typer carries its own copy of click, so
    groups are told by their `commands`, not by a class)."""
    names: set[str] = set()
    for param in getattr(command, "params", ()):
        envvar = getattr(param, "envvar", None)
        if isinstance(envvar, str):
            names.add(envvar)
        elif envvar:
            names.update(envvar)
    for sub in (getattr(command, "commands", None) or {}).values():
        names |= option_variables(sub)
    return names


def check_environment(root: Any) -> None:
    """Refuse to start on an `ANTAEUS_*` variable (environment or `.env`) that nothing reads:
    a misspelt `ANTAEUS_SCHEDUL=external` would otherwise leave the automatic schedule on."""
    import os

    from antaeus.config import environment_problems

    problems = environment_problems(os.environ, option_variables(root))
    if problems:
        fail(f"unknown setting: {escape('; '.join(problems))}")


def load_settings() -> Settings:
    from pydantic import ValidationError

    from antaeus.config import get_settings, settings_error_message

    try:
        settings = get_settings()
    except ValidationError as exc:  # one line naming each setting, not the values given
        fail(f"invalid configuration: {escape(settings_error_message(exc))}")
    except Exception as exc:  # an unreadable .env file, a list setting that is not JSON
        fail(f"invalid configuration: {escape(' '.join(str(exc).split()))}")
    configure_logging(settings.LOG_LEVEL, settings.LOG_FORMAT)
    global _database_url
    _database_url = settings.DATABASE_URL
    return settings


async def prepare(db: Database, *, allow_migrate: bool) -> None:
    """Migrate a database that is behind, or refuse to go on when not allowed to."""
    from antaeus.storage import migrate
    from antaeus.storage.problems import database_problem

    try:
        current = await migrate.current_revision(db)
    except Exception as exc:
        problem = database_problem(exc, db.url)
        if problem is not None:
            fail(escape(problem.message))
        if not isinstance(exc, OSError):
            raise
        fail(f"cannot reach the database ({mask_url(db.url)}): {escape(scrub(str(exc), db.url))}")
    if current == migrate.head_revision():
        return
    if not migrate.is_known(current):
        fail(newer_schema(current))
    if not allow_migrate:
        fail(
            f"the database schema is at {current or 'nothing (empty database)'}, "
            f"not {migrate.head_revision()}; run `antaeus db upgrade` (or drop --no-migrate)"
        )
    await migrate.upgrade(db)
    err.print(f"database migrated from {current or 'empty'} to {migrate.head_revision()}")


def newer_schema(current: str | None) -> str:
    from antaeus.storage import migrate

    return (
        f"the database schema is at {current}, which this Antaeus does not know (its newest "
        f"is {migrate.head_revision()}): a newer Antaeus migrated it; run that version "
        "(upgrade this installation), or name another database in ANTAEUS_DATABASE_URL"
    )


def freeze_heap() -> None:
    """Keep what the process holds before charging out of every garbage collection.

    The imports and the settings leave some 130,000 objects that live until the
    process ends; each full collection walked all of them (about 80 ms each, two
    seconds of CPU over 100,000 invoices). Frozen, a collection walks only what
    charging allocates. Called once per process, just before the worker (or `serve`) runs.
    """
    gc.collect()
    gc.freeze()
