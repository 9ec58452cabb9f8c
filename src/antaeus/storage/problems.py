"""What went wrong reaching the database, said in one line with what to do.

A database that cannot be used at start-up (a PostgreSQL database not created,
a server not running, a refused role or password, a SQLite path that cannot be
opened) raised a driver exception that the CLI printed as a traceback hundreds
of lines long. `database_problem` turns the ones a person can fix into one line
naming the database (password masked) and the fix; anything else is left to be
raised as it is.
"""

from __future__ import annotations

import os
import shlex
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from antaeus.config import normalize_database_url


@dataclass(frozen=True, slots=True)
class DatabaseProblem:
    message: str
    #: waiting does not help (a missing database, a refused role): a worker stops too
    lasting: bool


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, what it wraps (SQLAlchemy's `orig`), and their causes."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 20:
        item = todo.pop(0)
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        todo += [getattr(item, "orig", None), item.__cause__, item.__context__]
    return seen


def _sqlstate(chain: list[BaseException]) -> tuple[str, str] | None:
    for item in chain:
        state = getattr(item, "sqlstate", None) or getattr(item, "pgcode", None)
        if isinstance(state, str) and state:
            return state, str(item).strip().splitlines()[0] if str(item).strip() else state
    return None


def _postgres(url: str, chain: list[BaseException]) -> DatabaseProblem | None:
    parsed = make_url(normalize_database_url(url))
    host, port = parsed.host or "localhost", parsed.port or 5432
    user, name = parsed.username, parsed.database or ""
    where = f"{host}:{port}"
    options = f"-h {shlex.quote(host)} -p {port}"
    found = _sqlstate(chain)
    if found is not None:
        state, text = found
        if state == "3D000":  # invalid_catalog_name
            owner = f" -U {shlex.quote(user)}" if user else ""
            return DatabaseProblem(
                f"the PostgreSQL database {name!r} does not exist on {where}; create it "
                f"(createdb {options}{owner} {shlex.quote(name)}) or name another one in "
                "ANTAEUS_DATABASE_URL",
                lasting=True,
            )
        if state == "28P01":  # invalid_password
            return DatabaseProblem(
                f"PostgreSQL on {where} refused the password of user {user!r}; "
                "correct the password in ANTAEUS_DATABASE_URL",
                lasting=True,
            )
        if state.startswith("28"):  # invalid_authorization_specification: no such role, ...
            return DatabaseProblem(
                f"PostgreSQL on {where} refused user {user!r} ({text}); create the role "
                f"(createuser {options} {shlex.quote(user or '')}) or correct the user in "
                "ANTAEUS_DATABASE_URL",
                lasting=True,
            )
        if state == "42501":  # insufficient_privilege
            return DatabaseProblem(
                f"PostgreSQL on {where}: user {user!r} lacks a privilege on database "
                f"{name!r} ({text}); grant it, or use the database's owner",
                lasting=True,
            )
        return None
    for item in chain:
        if isinstance(item, socket.gaierror):
            return DatabaseProblem(
                f"cannot find the PostgreSQL host {host!r} ({item.strerror or item}); "
                "correct the host in ANTAEUS_DATABASE_URL",
                lasting=False,
            )
        if isinstance(item, OSError):
            why = item.strerror or str(item) or type(item).__name__
            return DatabaseProblem(
                f"cannot reach PostgreSQL on {where} ({why.lower()}); start the server, or "
                "correct the host and port in ANTAEUS_DATABASE_URL",
                lasting=False,
            )
    return None


def _sqlite(url: str, chain: list[BaseException]) -> DatabaseProblem | None:
    if not any(isinstance(item, sqlite3.DatabaseError) for item in chain):
        return None
    text = " ".join(str(i) for i in chain if isinstance(i, sqlite3.DatabaseError)).lower()
    database = make_url(normalize_database_url(url)).database or ""
    if not database or database == ":memory:":
        return None
    path = Path(database).absolute()
    if "file is not a database" in text:
        return DatabaseProblem(
            f"{path} is not a SQLite database; name another file in ANTAEUS_DATABASE_URL",
            lasting=True,
        )
    if "unable to open" not in text and "readonly" not in text:
        return None
    folder = path.parent
    if not folder.is_dir():
        why, fix = f"the directory {folder} does not exist", f"create it (mkdir -p {folder})"
    elif not os.access(folder, os.W_OK | os.X_OK) or (
        path.exists() and not os.access(path, os.R_OK | os.W_OK)
    ):
        why, fix = "permission denied", f"let this user read and write {path} and {folder}"
    else:
        why, fix = "it cannot be opened for reading and writing", "check the file"
    return DatabaseProblem(
        f"cannot open the SQLite database {path}: {why}; {fix}, or name another file in "
        "ANTAEUS_DATABASE_URL",
        lasting=True,
    )


def database_problem(exc: BaseException, url: str) -> DatabaseProblem | None:
    """One line (and whether it lasts) for a database that cannot be used, or None."""
    chain = _chain(exc)
    try:
        scheme = normalize_database_url(url).split(":", 1)[0]
        if scheme.startswith("postgresql"):
            return _postgres(url, chain)
        if scheme.startswith("sqlite"):
            return _sqlite(url, chain)
    except Exception:  # a URL that cannot be read says nothing more than the error
        return None
    return None
