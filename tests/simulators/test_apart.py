"""The simulators stand apart from what runs in production.

`antaeus.simulators` stands in for providers; `antaeus.payments` holds the protocol
and the real adapters. A fake that imported the adapter it checks would agree with
the adapter's mistakes, so no simulator imports a real adapter; and `payments/`
reaches a simulator only through `factory.py`, which builds the simulated provider
when the settings choose it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "antaeus"
ADAPTERS = ("antaeus.payments.http", "antaeus.payments.stripe", "antaeus.payments.stripe_rules")


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, and each name imported from one as `module.name`."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def _modules(package: str) -> list[Path]:
    return sorted((SRC / package).glob("*.py"))


@pytest.mark.parametrize("path", _modules("simulators"), ids=lambda p: p.name)
def test_no_simulator_imports_a_real_adapter(path: Path) -> None:
    imported = imports_of(path)
    bad = {m for m in imported if m in ADAPTERS or m.startswith(tuple(f"{a}." for a in ADAPTERS))}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_payments_reaches_the_simulators_only_through_the_factory() -> None:
    reaching = {
        path.name
        for path in _modules("payments")
        if any(m.startswith("antaeus.simulators") for m in imports_of(path))
    }
    assert reaching == {"factory.py"}


def test_the_simulators_moved_out_of_payments() -> None:
    left = {p.name for p in _modules("payments")} & {
        "simulated.py",
        "simulator_server.py",
        "fake_stripe.py",
    }
    assert not left


def test_serving_a_simulator_loads_no_real_adapter() -> None:
    code = (
        "import sys, antaeus.simulators.simulator_server, antaeus.simulators.fake_stripe; "
        "print(sorted(m for m in sys.modules if m.startswith('antaeus.payments')))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code], cwd=SRC.parents[1], capture_output=True, text=True, check=True
    )
    assert shown.stdout.strip() == "['antaeus.payments', 'antaeus.payments.provider']"
