"""The `cli` fixture (one working directory and database per test, SQLite and PostgreSQL)."""

from tests.cli.test_cli import cli  # noqa: F401 (re-exported for the other CLI test files)
