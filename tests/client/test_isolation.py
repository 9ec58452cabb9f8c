"""`antaeus.client` needs only the standard library, `httpx` and `standardwebhooks`.

Proved twice: its modules import nothing else (read from their source), and in a
fresh virtualenv holding only httpx, standardwebhooks (and what they depend on)
and this package installed with `--no-deps`, the client imports, calls an API
(through httpx's MockTransport) and verifies a webhook, while the server's own
dependencies (FastAPI, SQLAlchemy, pydantic, ...) are not there to import.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import antaeus.client

ROOT = Path(__file__).resolve().parents[2]
CLIENT = Path(antaeus.client.__file__).parent
ALLOWED = {"httpx", "standardwebhooks"}


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_client_imports_only_the_standard_library_httpx_and_standardwebhooks() -> None:
    for path in sorted(CLIENT.glob("*.py")):
        for name in _imported(path):
            top = name.split(".")[0]
            if name.startswith("antaeus."):
                assert name.startswith("antaeus.client"), (path.name, name)
            elif top != "antaeus":
                assert top in ALLOWED or top in sys.stdlib_module_names, (path.name, name)
    package_init = _imported(CLIENT.parent / "__init__.py")
    assert package_init == set(), "antaeus/__init__.py must import nothing"


CHECK = textwrap.dedent(
    """
    import importlib.util, json, sys
    from datetime import UTC, datetime
    from decimal import Decimal

    import httpx
    from antaeus.client import Client, Money, verify_webhook

    for server_side in ("fastapi", "sqlalchemy", "pydantic", "uvicorn", "structlog"):
        assert importlib.util.find_spec(server_side) is None, server_side

    def answer(request):
        assert request.headers["Idempotency-Key"]
        sent = json.loads(request.content)
        return httpx.Response(201, json={
            "id": 1, "customerId": sent["customerId"],
            "amount": {"value": sent["amount"]["value"], "currency": "EUR"},
            "status": "PENDING", "dueAt": "2027-01-01T00:00:00Z", "attemptCount": 0,
            "lastFailure": None, "nextAttemptAt": None})

    with Client(token="ant_x", transport=httpx.MockTransport(answer)) as api:
        invoice = api.invoices.create(
            customer_id=7, amount=Decimal("89.52"), currency="EUR",
            due_at=datetime(2027, 1, 1, tzinfo=UTC))
    assert invoice.amount == Money(Decimal("89.52"), "EUR"), invoice

    from standardwebhooks.webhooks import Webhook
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = '{"id":"evt_1","type":"run.completed","createdAt":"2027-01-01T00:00:00Z",' \\
        '"data":{"runId":3}}'
    now = datetime.now(UTC)
    headers = {"webhook-id": "evt_1", "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": Webhook(secret).sign("evt_1", now, body)}
    assert verify_webhook(secret, headers, body).run_id == 3
    loaded = sorted(m.split(".")[0] for m in sys.modules)
    print("ok", " ".join(sorted(set(loaded))))
    """
)


@pytest.mark.slow
def test_the_client_runs_in_a_virtualenv_without_the_servers_dependencies(
    tmp_path: Path,
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")

    def pip(*args: str) -> None:
        done = subprocess.run(
            [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *args],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, f"pip install {args}: {done.stdout}\n{done.stderr}"

    pip("httpx", "standardwebhooks")
    # built from a copy, so that the build leaves nothing in the working tree
    package = tmp_path / "package"
    shutil.copytree(ROOT / "src", package / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, package / name)
    pip("--no-deps", str(package))
    done = subprocess.run(
        [python, "-c", CHECK],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,  # not the repository: the installed package is what is imported
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok "), done.stdout
    loaded = set(done.stdout.split()[1:])
    assert {"httpx", "standardwebhooks", "antaeus"} <= loaded
    assert not loaded & {"fastapi", "sqlalchemy", "pydantic", "starlette", "typer"}
