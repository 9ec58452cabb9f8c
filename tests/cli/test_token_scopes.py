"""`antaeus token create --scope`, `token list` with scopes, and a read token against a
real server (SQLite and PostgreSQL)."""

from __future__ import annotations

import re

import httpx

from tests.cli.test_cli import TOKEN, Cli, _assert_stopped_gracefully, _bearer, _describe, serving


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
