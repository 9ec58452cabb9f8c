"""Every start-up failure is one line saying what is wrong and what to do (issue 20, item 13).

A PostgreSQL URL naming a database not created printed a 715-line traceback.
Each case here runs the real command in a subprocess and checks: a non-zero
exit, exactly one line on stderr, no traceback, and the advice (for a missing
database, the exact `createdb` command).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from pathlib import Path

import pytest

from tests.cli.test_cli import PG_ENV, Cli, _clean_env, _free_port, _with_database

PG_URL = os.environ.get(PG_ENV)
needs_pg = pytest.mark.skipif(not PG_URL, reason=f"{PG_ENV} is not set")


def _one_line(cli: Cli, *args: str) -> str:
    done = cli.run(*args, timeout=60)
    assert done.returncode != 0, done
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), lines
    return lines[0]


def _cli(tmp_path: Path, url: str) -> Cli:
    return Cli(tmp_path, _clean_env(ANTAEUS_DATABASE_URL=url), url)


COMMANDS = [
    ("serve", "--port", "0"),
    ("bill",),
    ("db", "upgrade"),
    ("seed",),
    ("generate",),
    ("token", "list"),
]
IDS = [" ".join(c) for c in COMMANDS]


@needs_pg
@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_a_postgres_database_not_created_says_the_createdb_command(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    assert PG_URL is not None
    name = f"antaeus_missing_{secrets.token_hex(4)}"
    line = _one_line(_cli(tmp_path, _with_database(PG_URL, name)), *command)
    assert f"the PostgreSQL database '{name}' does not exist on 127.0.0.1:5432" in line, line
    assert f"(createdb -h 127.0.0.1 -p 5432 -U postgres {name})" in line, line


@needs_pg
def test_a_worker_stops_too_on_a_database_not_created(tmp_path: Path) -> None:
    assert PG_URL is not None
    url = _with_database(PG_URL, f"antaeus_missing_{secrets.token_hex(4)}")
    line = _one_line(_cli(tmp_path, url), "worker", "--processes", "1")
    assert "createdb" in line, line


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_a_postgres_server_not_running_says_start_it(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    port = _free_port()  # nothing listens there
    line = _one_line(_cli(tmp_path, f"postgresql://postgres@127.0.0.1:{port}/x"), *command)
    assert f"cannot reach PostgreSQL on 127.0.0.1:{port} (connection refused)" in line, line
    assert "start the server, or correct the host and port in ANTAEUS_DATABASE_URL" in line


@needs_pg
def test_a_role_that_does_not_exist_says_createuser(tmp_path: Path) -> None:
    assert PG_URL is not None
    url = PG_URL.replace("postgres@", "nobody_here@", 1)
    line = _one_line(_cli(tmp_path, url), "db", "upgrade")
    assert "refused user 'nobody_here'" in line, line
    assert "createuser -h 127.0.0.1 -p 5432 nobody_here" in line, line


def test_a_wrong_password_says_so_without_repeating_it() -> None:
    from antaeus.storage.problems import database_problem

    class RefusedError(Exception):  # what asyncpg raises, by its SQLSTATE
        sqlstate = "28P01"

    problem = database_problem(
        RefusedError('password authentication failed for user "app"'),
        "postgresql://app:s3cret@db.internal:5433/billing",
    )
    assert problem is not None
    assert problem.message == (
        "PostgreSQL on db.internal:5433 refused the password of user 'app'; "
        "correct the password in ANTAEUS_DATABASE_URL"
    )


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_a_sqlite_path_in_a_missing_directory_says_mkdir(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    path = tmp_path / "no" / "such" / "antaeus.db"
    line = _one_line(_cli(tmp_path, f"sqlite:///{path}"), *command)
    assert f"cannot open the SQLite database {path}" in line, line
    assert f"mkdir -p {path.parent}" in line, line


def test_a_file_that_is_not_sqlite_says_so(tmp_path: Path) -> None:
    path = tmp_path / "antaeus.db"
    path.write_bytes(b"not a database, " * 100)
    line = _one_line(_cli(tmp_path, f"sqlite:///{path}"), "bill")
    assert line == (
        f"error: {path} is not a SQLite database; name another file in ANTAEUS_DATABASE_URL"
    )


@pytest.mark.parametrize(
    "command",
    [("serve", "--port", "0"), ("worker", "--processes", "1"), ("bill",), ("db", "upgrade")],
    ids=["serve", "worker", "bill", "db upgrade"],
)
def test_a_schema_newer_than_this_antaeus_says_run_the_newer_version(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    path = tmp_path / "antaeus.db"
    cli = _cli(tmp_path, f"sqlite:///{path}")
    cli.ok("db", "upgrade")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    line = _one_line(cli, *command)
    assert "the database schema is at 9999, which this Antaeus does not know" in line, line
    assert "run that version" in line, line


def test_a_schema_behind_with_no_migrate_says_db_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "antaeus.db"
    cli = _cli(tmp_path, f"sqlite:///{path}")
    line = _one_line(cli, "serve", "--port", str(_free_port()), "--no-migrate")
    assert "run `antaeus db upgrade`" in line, line
