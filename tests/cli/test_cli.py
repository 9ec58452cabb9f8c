"""End to end: the real `antaeus` command in subprocesses, on a real database.

Every command runs as `python -m antaeus` in a fresh working directory, with no
`ANTAEUS_*` variable set, so it uses the default SQLite file `antaeus.db` there;
the PostgreSQL variant points `ANTAEUS_DATABASE_URL` at a database created for
the test (and is skipped, with the reason, without `ANTAEUS_TEST_POSTGRES_URL`).
Servers are always stopped with SIGTERM and waited for.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text

from antaeus.domain.invoice import Invoice, InvoiceStatus
from antaeus.storage.database import Database
from antaeus.storage.repositories.invoices import InvoiceRepository

PG_ENV = "ANTAEUS_TEST_POSTGRES_URL"
COMMAND_TIMEOUT = 120.0  # seconds; a hung command fails its test instead of the suite
READY_TIMEOUT = 30.0
TOKEN = re.compile(r"ant_[A-Za-z0-9_-]{20,}")


@dataclass(frozen=True)
class Cli:
    """Runs `antaeus` in `cwd` with `env`; `database_url` is where the data lands."""

    cwd: Path
    env: dict[str, str]
    database_url: str

    def run(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "antaeus", *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.run(*args)
        assert done.returncode == 0, _describe(done)
        return done

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of `sql` on the CLI's database, read through the app's own driver setup."""

        async def fetch() -> list[tuple[Any, ...]]:
            db = Database(self.database_url)
            try:
                async with db.read() as conn:
                    return [tuple(row) for row in await conn.execute(text(sql))]
            finally:
                await db.dispose()

        return asyncio.run(fetch())

    def invoices(self) -> list[Invoice]:
        """Every invoice, read back through the app's own repository."""

        async def fetch() -> list[Invoice]:
            db = Database(self.database_url)
            try:
                async with db.read() as conn:
                    return await InvoiceRepository(conn).page(after=0, limit=1_000_000)
            finally:
                await db.dispose()

        return asyncio.run(fetch())


def _describe(done: subprocess.CompletedProcess[str]) -> str:
    return (
        f"`antaeus {' '.join(done.args[3:])}` exited {done.returncode}\n"
        f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"
    )


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ANTAEUS_")}
    # Output to a file or pipe is block-buffered, as for anyone running the command.
    env.pop("PYTHONUNBUFFERED", None)
    # Plain, wide output: no colours, and rich tables never truncate a name.
    env.update({"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"}, **extra)
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- PostgreSQL: a fresh, empty database per test -------------------------------------


def _asyncpg_dsn(url: str) -> str:
    _scheme, _, rest = url.partition("://")
    return f"postgresql://{rest}"


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def _pg_admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    if request.param == "sqlite":
        yield Cli(tmp_path, _clean_env(), f"sqlite:///{tmp_path / 'antaeus.db'}")
        return
    admin_url = os.environ.get(PG_ENV)
    if not admin_url:
        pytest.skip(f"{PG_ENV} is not set: PostgreSQL CLI tests skipped")
    name = f"antaeus_cli_{os.getpid()}_{secrets.token_hex(3)}"
    asyncio.run(_pg_admin(admin_url, f'CREATE DATABASE "{name}"'))
    url = _with_database(admin_url, name)
    try:
        yield Cli(tmp_path, _clean_env(ANTAEUS_DATABASE_URL=url), url)
    finally:
        asyncio.run(_pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --- servers ----------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    stdout_path: Path
    stderr_path: Path

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8")

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8")


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    return process.returncode


@contextmanager
def serving(cli: Cli, *args: str, name: str = "serve") -> Iterator[Server]:
    """`antaeus serve --port <free> ARGS`, ready to answer; stopped (SIGTERM) on exit."""
    port = _free_port()
    out, err = cli.cwd / f"{name}.stdout", cli.cwd / f"{name}.stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "antaeus", "serve", "--port", str(port), *args],
            cwd=cli.cwd,
            env=cli.env,
            stdout=stdout,
            stderr=stderr,
        )
    server = Server(process, f"http://127.0.0.1:{port}", out, err)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"antaeus serve exited {process.returncode} before it was ready\n"
                    f"--- stdout ---\n{server.stdout()}\n--- stderr ---\n{server.stderr()}"
                )
            try:
                if httpx.get(f"{server.base_url}/rest/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"antaeus serve not ready after {READY_TIMEOUT} s\n{server.stderr()}")
            time.sleep(0.1)
        yield server
    finally:
        _stop(process)


def _assert_stopped_gracefully(server: Server) -> None:
    # a graceful stop exits 0 and ends with its one line (tests/cli/test_graceful_stop.py)
    assert server.process.returncode == 0, server.stderr()
    assert server.stderr().splitlines()[-1].startswith("stopped"), server.stderr()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- tests ------------------------------------------------------------------------------


def _command_paths() -> list[list[str]]:
    """Every command and subcommand of the real CLI, read from its typer app."""
    import typer

    from antaeus.cli.main import app

    paths: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        paths.append(path)
        if hasattr(command, "list_commands"):
            ctx = command.context_class(command)
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


def test_every_command_has_help(tmp_path: Path) -> None:
    commands = _command_paths()
    documented = [["serve"], ["seed"], ["db", "upgrade"], ["token", "create"], ["token", "revoke"]]
    assert all(c in commands for c in documented), commands
    # Started together: each run is mostly interpreter start-up and imports.
    runs = [
        (
            command,
            subprocess.Popen(
                [sys.executable, "-m", "antaeus", *command, "--help"],
                cwd=tmp_path,
                env=_clean_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for command in commands
    ]
    for command, process in runs:
        stdout, stderr = process.communicate(timeout=COMMAND_TIMEOUT)
        label = " ".join(["antaeus", *command, "--help"])
        assert process.returncode == 0, f"{label} exited {process.returncode}\n{stderr}"
        assert "Usage:" in stdout, f"{label} printed no usage\n{stdout}"
    assert not (tmp_path / "antaeus.db").exists(), "--help must not touch the database"


def test_console_script_is_installed(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "antaeus"
    assert script.exists(), f"no console script at {script}"
    done = subprocess.run(
        [str(script), "--help"],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for command in ("serve", "seed", "db", "token"):
        assert command in done.stdout


def _counts(cli: Cli) -> tuple[int, int, int]:
    [(customers,)] = cli.query("SELECT count(*) FROM customers")
    [(invoices,)] = cli.query("SELECT count(*) FROM invoices")
    [(pending,)] = cli.query("SELECT count(*) FROM invoices WHERE status = 'PENDING'")
    return customers, invoices, pending


def _invoice_data(cli: Cli, first: int, last: int) -> list[tuple[Any, ...]]:
    return cli.query(
        "SELECT currency, amount_minor, status FROM invoices "
        f"WHERE customer_id BETWEEN {first} AND {last} ORDER BY id"
    )


def test_seed_refuses_a_second_time_unless_appending(cli: Cli) -> None:
    first = cli.ok("seed", "--seed", "7")
    assert "seeded 100 customers and 1,000 invoices (100 pending" in first.stdout
    assert "seed 7" in first.stdout
    if cli.database_url.startswith("sqlite"):
        assert (cli.cwd / "antaeus.db").is_file()
    # and the sample subscriptions' 6 invoices, generated and paid by the customers' credit
    assert "6 subscriptions" in first.stdout
    assert "generated their 6 invoices" in first.stdout
    assert _counts(cli) == (100, 1006, 100)
    # The rows read back as the invoices they are meant to be.
    invoices = [i for i in cli.invoices() if i.id <= 1000]
    assert len(invoices) == 1000
    assert sum(i.status is InvoiceStatus.PENDING for i in invoices) == 100
    assert {i.status for i in invoices} == {InvoiceStatus.PENDING, InvoiceStatus.PAID}
    assert all(i.attempt_count == 0 for i in invoices)
    assert all(i.last_failure is None and i.next_attempt_at is None for i in invoices)
    assert all((i.due_at.day, i.due_at.hour, i.due_at.minute) == (1, 0, 0) for i in invoices)

    again = cli.run("seed", "--seed", "7")
    assert again.returncode != 0, _describe(again)
    assert "--append" in again.stderr
    assert _counts(cli) == (100, 1006, 100)

    cli.ok("seed", "--seed", "7", "--append")
    assert _counts(cli) == (200, 2012, 200)
    # The same seed gives the same data: customers 101-200 repeat customers 1-100.
    assert _invoice_data(cli, 101, 200) == _invoice_data(cli, 1, 100)


def test_token_create_list_revoke(cli: Cli) -> None:
    created = cli.ok("token", "create", "--name", "ci")
    assert created.stdout.endswith("\n")
    lines = created.stdout.splitlines()
    assert len(lines) == 1, f"stdout must hold the token alone: {created.stdout!r}"
    token = lines[0]
    assert token.startswith("ant_")
    assert TOKEN.fullmatch(token), token

    duplicate = cli.run("token", "create", "--name", "ci")
    assert duplicate.returncode != 0, _describe(duplicate)
    assert "already exists" in duplicate.stderr
    assert duplicate.stdout == ""

    listed = cli.ok("token", "list")
    assert re.search(r"\bci\b", listed.stdout), listed.stdout
    assert token not in listed.stdout  # only hashes are kept

    # A short cache so the revocation reaches the running server quickly.
    fast = Cli(cli.cwd, {**cli.env, "ANTAEUS_TOKEN_CACHE_SECONDS": "1"}, cli.database_url)
    with serving(fast) as server:
        url = f"{server.base_url}/rest/v1/customers"
        assert httpx.get(url, headers=_bearer(token), timeout=10).status_code == 200
        assert httpx.get(url, headers=_bearer("ant_" + "x" * 43), timeout=10).status_code == 401

        revoked = cli.ok("token", "revoke", "ci")
        assert "revoked" in revoked.stdout

        deadline = time.monotonic() + 10
        while (status := httpx.get(url, headers=_bearer(token), timeout=10).status_code) != 401:
            assert status == 200, status
            assert time.monotonic() < deadline, "revoked token still accepted after 10 s"
            time.sleep(0.2)
        body = httpx.get(url, headers=_bearer(token), timeout=10).json()
        assert body["error"] == "unauthorized"
    _assert_stopped_gracefully(server)
    assert TOKEN.search(server.stdout()) is None, "a token exists: serve must not make one"

    again = cli.run("token", "revoke", "ci")
    assert again.returncode != 0, _describe(again)
    assert "no active token" in again.stderr
    reused = cli.run("token", "create", "--name", "ci")
    assert reused.returncode != 0, "names are never reused, even after revocation"


def test_serve_prints_a_token_once_and_serves_every_seeded_invoice(cli: Cli) -> None:
    with serving(cli, name="first") as server:
        # Read while it runs: the token must reach its stdout at once, buffered or not.
        printed = TOKEN.findall(server.stdout())
        assert printed, f"no token printed on a fresh database:\n{server.stdout()}"
        assert len(set(printed)) == 1, printed
        token = printed[0]

        # Seeding while the server runs: another process, the same database.
        cli.ok("seed", "--seed", "7")

        seen: list[int] = []
        pages = 0
        url: str | None = f"{server.base_url}/rest/v1/invoices?limit=100"
        with httpx.Client(headers=_bearer(token), timeout=10) as client:
            while url is not None:
                response = client.get(url)
                if response.status_code != 200:
                    pytest.fail(
                        f"GET {url}: {response.status_code} {response.text}\n{server.stderr()}"
                    )
                seen.extend(invoice["id"] for invoice in response.json())
                pages += 1
                assert pages <= 12, "pagination does not end"
                url = response.links.get("next", {}).get("url")
    assert pages == 11
    assert len(seen) == 1006  # with the 6 generated from the sample subscriptions
    assert seen == sorted(set(seen)), "ids must be unique and ascending across pages"
    _assert_stopped_gracefully(server)

    with serving(cli, name="second") as again:
        response = httpx.get(
            f"{again.base_url}/rest/v1/invoices?limit=1", headers=_bearer(token), timeout=10
        )
        assert response.status_code == 200, "the printed token must survive a restart"
    _assert_stopped_gracefully(again)  # so all its output is in
    assert TOKEN.search(again.stdout()) is None, "the token must be shown only once"


def test_serve_no_migrate_refuses_an_empty_database(cli: Cli) -> None:
    port = _free_port()
    done = cli.run("serve", "--port", str(port), "--no-migrate", timeout=60)
    assert done.returncode != 0, _describe(done)
    assert "empty database" in done.stderr, done.stderr
    assert "antaeus db upgrade" in done.stderr, done.stderr
    assert TOKEN.search(done.stdout) is None
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/rest/health", timeout=1)
