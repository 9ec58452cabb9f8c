"""Every `--help` shows every option's whole name in an 80-column terminal.

Rich's option tables cut long names short (`--invoices-per-cus…`); the CLI
uses plain help, which wraps instead.
"""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from antaeus.cli.main import app


def _commands() -> list[tuple[list[str], Any]]:
    root = typer.main.get_command(app)
    found: list[tuple[list[str], Any]] = []

    def walk(path: list[str], command: Any) -> None:
        found.append((path, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk([*path, name], sub)

    walk([], root)
    return found


COMMANDS = _commands()


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=[" ".join(p) or "antaeus" for p, _ in COMMANDS]
)
def test_help_shows_whole_option_names_at_80_columns(path: list[str], command: Any) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    for param in command.params:
        for name in [*param.opts, *param.secondary_opts]:
            if name.startswith("--"):
                assert name in result.output, (name, result.output)


def test_every_command_is_covered() -> None:
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"seed", "serve", "worker", "bill", "provider serve"} <= names
