"""A setting that is refused stops `serve` and `worker` with one clean line, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_cli import Cli, _clean_env

SECRET = "hunter2-never-printed"


@pytest.mark.parametrize("command", ["serve", "worker"])
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"ANTAEUS_KEY_RETENTION_MARGIN": "100"},
            "ANTAEUS_KEY_RETENTION_MARGIN (100 s) must be at least "
            "ANTAEUS_PAYMENT_PROVIDER_TIMEOUT + ANTAEUS_RETRY_AFTER_MAX_SECONDS + "
            "ANTAEUS_LEASE_SECONDS (60 + 60 + 60 = 180 s)",
        ),
        ({"ANTAEUS_KEY_RETENTION_MARGIN": "0"}, "ANTAEUS_KEY_RETENTION_MARGIN"),
        ({"ANTAEUS_RETRY_AFTER_MAX_SECONDS": "86400"}, "ANTAEUS_RETRY_AFTER_MAX_SECONDS"),
        (
            {"ANTAEUS_PAYMENT_PROVIDER_URL": f"ftp://user:{SECRET}@provider.test"},
            "ANTAEUS_PAYMENT_PROVIDER_URL",
        ),
    ],
    ids=["margin-short", "margin-zero", "retry-after-unbounded", "provider-url"],
)
def test_a_refused_setting_is_one_clean_line(
    tmp_path: Path, command: str, env: dict[str, str], expected: str
) -> None:
    cli = Cli(
        tmp_path,
        _clean_env(ANTAEUS_API_TOKEN=SECRET, COLUMNS="80", **env),
        f"sqlite:///{tmp_path / 'antaeus.db'}",
    )
    done = cli.run(command, timeout=60)
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: invalid configuration: "), lines
    assert expected in lines[0]
    assert SECRET not in done.stderr + done.stdout
    assert "input_value" not in lines[0]
    assert not (tmp_path / "antaeus.db").exists(), "nothing starts on refused settings"
