"""`mypy --strict` checks a user's code against the client: results and arguments
are typed (a misspelt status, a float amount or a wrong attribute is an error)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

GOOD = textwrap.dedent(
    """
    from datetime import UTC, date, datetime
    from decimal import Decimal

    from antaeus.client import AsyncClient, Client, Money

    def run(api: Client) -> Decimal:
        cust = api.customers.create(currency="EUR", timezone="Europe/Copenhagen")
        inv = api.invoices.create(customer_id=cust.id, amount=Decimal("89.52"), currency="EUR",
                                  due_at=datetime(2027, 1, 1, tzinfo=UTC))
        total: Money = inv.amount
        due: datetime = inv.due_at
        for failed in api.invoices.list(status="FAILED", last_failure="card_declined"):
            api.invoices.retry(failed.id, note="fixed")
        sub = api.subscriptions.create(customer_id=cust.id, plan_id=1, start_date=date(2027, 1, 14))
        end: date | None = sub.current_period_end
        return total.value

    async def arun(api: AsyncClient) -> list[int]:
        return [i.id async for i in api.invoices.list(customer_id=1)]
    """
)

BAD = textwrap.dedent(
    """
    from decimal import Decimal

    from antaeus.client import Client

    def run(api: Client) -> None:
        api.invoices.list(status="FIALED")
        api.invoices.create(customer_id=1, amount=1.5, currency="EUR")
        api.customers.get(1).name
        api.subscriptions.cancel(1, at="tomorrow")
    """
)


@pytest.mark.slow
def test_user_code_is_checked_by_mypy_strict(tmp_path: Path) -> None:
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "bad.py").write_text(BAD)
    ran = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "good.py", "bad.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    errors = [line for line in ran.stdout.splitlines() if ": error:" in line]
    assert not [e for e in errors if e.startswith("good.py")], ran.stdout
    lines = sorted({int(e.split(":")[1]) for e in errors if e.startswith("bad.py")})
    assert lines == [7, 8, 9, 10], ran.stdout
