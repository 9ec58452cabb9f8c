"""`mypy --strict` refuses a write through the connection of `db.read()`.

The same body is type-checked twice, inside `db.read()` and inside
`db.write()`: every line marked `# writes` must be an error naming
`ReadConnection` in the first, and nothing may be an error in the second (so
the reads pass in both, and a write connection is accepted for reading).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

BODY = """\
from datetime import UTC, datetime

from antaeus.billing.service import RunOpening
from antaeus.domain.policy import PolicySettings
from antaeus.domain.money import Currency, Money
from antaeus.storage.database import Database
from antaeus.storage.repositories.actions import ActionRepository
from antaeus.storage.repositories.billing import BillingRepository
from antaeus.storage.repositories.customers import CustomerRepository
from antaeus.storage.repositories.idempotency import IdempotencyRepository
from antaeus.storage.repositories.invoices import InvoiceRepository
from antaeus.storage.repositories.runs import RunRow


async def body(db: Database, policy: PolicySettings) -> RunRow | None:
    now = datetime.now(UTC)
    amount = Money.from_minor(100, Currency.EUR)
    async with db.{kind}() as conn:
        await InvoiceRepository(conn).get(1)
        await CustomerRepository(conn).page(after=0, limit=10)
        await ActionRepository(conn).history(1, after=0, limit=10)
        billing = BillingRepository(conn)
        await billing.pause_state()
        await billing.due_backlog(now)
        await InvoiceRepository(conn).create(1, amount, now, now)  # writes
        await CustomerRepository(conn).create(Currency.EUR, "UTC", now)  # writes
        await IdempotencyRepository(conn).save("scope", "key", "hash", 201, "{{}}", now)  # writes
        await ActionRepository(conn).void(1, "me", None, now)  # writes
        await billing.add_events([], now)  # writes
        await billing.failed_pending_due_now(now)  # writes
        await billing.record("me", [], now)  # writes
        await RunOpening().open_in(conn, now, policy, "cli")  # writes
        return await billing.get_run(1)
"""


def _mypy(tmp_path: Path, *files: str) -> str:
    """Type-check `files` (names in `tmp_path`) as the project does; answers the report."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            "--no-error-summary",
            "--hide-error-context",
            *files,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr + result.stdout  # 2: mypy itself failed
    return result.stdout


def test_mypy_refuses_a_write_inside_db_read(tmp_path: Path) -> None:
    (tmp_path / "inside_read.py").write_text(BODY.format(kind="read"))
    (tmp_path / "inside_write.py").write_text(BODY.format(kind="write"))
    writes = {n for n, line in enumerate(BODY.splitlines(), start=1) if line.endswith("# writes")}
    assert len(writes) == 8

    out = _mypy(tmp_path, "inside_read.py", "inside_write.py")

    errors: dict[str, set[int]] = {"inside_read.py": set(), "inside_write.py": set()}
    for line in out.splitlines():
        found = re.match(r"(.+?):(\d+): error: (.*)", line)
        if found is None:
            continue
        name, number, message = found[1], int(found[2]), found[3]
        assert name in errors, out  # nothing else may fail, the package included
        errors[name].add(number)
        assert "ReadConnection" in message, out
    assert errors["inside_write.py"] == set(), out
    assert errors["inside_read.py"] == writes, out
