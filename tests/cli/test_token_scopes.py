"""`antaeus token create --scope`, `token list` with scopes, and a read token against a
real server (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import httpx

from antaeus.dashboard.sessions import hash_id
from antaeus.security import hash_token
from antaeus.storage.database import Database
from antaeus.storage.repositories.dashboard import SessionRepository
from tests.cli.test_cli import TOKEN, Cli, _assert_stopped_gracefully, _bearer, _describe, serving
from tests.conftest import NOW


def _create(cli: Cli, *args: str) -> str:
    created = cli.ok("token", "create", *args)
    lines = created.stdout.splitlines()
    assert len(lines) == 1, created.stdout
    assert TOKEN.fullmatch(lines[0]), lines[0]
    return lines[0]


def test_token_scopes_end_to_end(cli: Cli) -> None:
    reader = _create(cli, "--name", "dash", "--scope", "read")
    writer = _create(cli, "--name", "ci")  # write, today's power, by default
    explicit = _create(cli, "--name", "ops", "--scope", "write")

    wrong = cli.run("token", "create", "--name", "x", "--scope", "admin")
    assert wrong.returncode != 0, _describe(wrong)
    assert "admin" in wrong.stderr
    assert "read" in wrong.stderr
    assert "write" in wrong.stderr
    assert wrong.stdout == ""

    listed = cli.ok("token", "list").stdout
    header = next(line for line in listed.splitlines() if "name" in line)
    assert "scope" in header, listed
    assert re.search(r"\bdash\b\s*│?\s*read\b", listed), listed
    assert re.search(r"\bci\b\s*│?\s*write\b", listed), listed
    assert re.search(r"\bops\b\s*│?\s*write\b", listed), listed
    for secret in (reader, writer, explicit):
        assert secret not in listed
    assert TOKEN.search(listed) is None, "token list never shows a secret"

    with serving(cli) as server:
        base = f"{server.base_url}/rest/v1"
        assert (
            httpx.get(f"{base}/customers", headers=_bearer(reader), timeout=10).status_code == 200
        )
        refused = httpx.post(f"{base}/customers", headers=_bearer(reader), content=b"{", timeout=10)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "insufficient_scope"
        created = httpx.post(
            f"{base}/customers", headers=_bearer(writer), json={"currency": "EUR"}, timeout=10
        )
        assert created.status_code == 201, created.text
        status = httpx.get(f"{base}/status", headers=_bearer(reader), timeout=10).json()
        assert status["token"] == {"name": "dash", "scope": "read"}
        metrics = httpx.get(f"{server.base_url}/metrics", headers=_bearer(reader), timeout=10)
        assert metrics.status_code == 200
    _assert_stopped_gracefully(server)


def test_token_revoke_ends_its_dashboard_sessions_at_once(cli: Cli) -> None:
    token = _create(cli, "--name", "alice")
    _create(cli, "--name", "bob", "--scope", "read")

    async def open_sessions() -> None:
        db = Database(cli.database_url)
        try:
            async with db.write() as conn:
                repo = SessionRepository(conn)
                for name, raw in [("alice", "s1"), ("alice", "s2"), ("bob", "s3")]:
                    await repo.create(
                        hash_id(raw),
                        name,
                        "c" * 43,
                        NOW,
                        NOW + timedelta(days=365),
                        token_hash=hash_token(token) if name == "alice" else "0" * 64,
                    )
        finally:
            await db.dispose()

    asyncio.run(open_sessions())
    revoked = cli.ok("token", "revoke", "alice")
    assert "token 'alice' revoked; 2 dashboard sessions ended" in revoked.stdout
    left = cli.query("SELECT token_name FROM dashboard_sessions")
    assert left == [("bob",)]
