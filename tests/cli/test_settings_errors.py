"""A setting that is refused stops `serve` and `worker` with one clean line, no traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


# --- an ANTAEUS_* variable that is not a setting ----------------------------------------


def _leaf_commands() -> list[list[str]]:
    """Every command of `antaeus`, as its words (`["db", "upgrade"]`), from the click tree."""
    import typer

    from antaeus.cli.main import app

    def walk(command: Any, words: list[str]) -> list[list[str]]:
        subcommands = getattr(command, "commands", None)  # a group (typer's own click)
        if subcommands:
            return [w for n, c in subcommands.items() for w in walk(c, [*words, n])]
        return [words]

    return walk(typer.main.get_command(app), [])


def test_every_command_is_checked() -> None:
    words = _leaf_commands()
    assert ["serve"] in words
    assert ["bill"] in words
    assert ["db", "upgrade"] in words
    assert len(words) >= 15, words


@pytest.mark.parametrize("words", _leaf_commands(), ids=" ".join)
def test_a_misspelt_setting_stops_every_command_with_the_closest_name(
    tmp_path: Path, words: list[str]
) -> None:
    cli = Cli(
        tmp_path,
        _clean_env(ANTAEUS_SCHEDUL="external"),
        f"sqlite:///{tmp_path / 'antaeus.db'}",
    )
    done = cli.run(*words, timeout=60)
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "error: unknown setting: ANTAEUS_SCHEDUL is not a setting (did you mean ANTAEUS_SCHEDULE?)"
    ], done.stderr
    assert list(tmp_path.iterdir()) == [], "nothing starts (no database, no simulator file)"


def test_a_misspelt_setting_in_the_env_file_is_refused_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ANTAEUS_SCHEDULE=external\nantaeus_dunning_schedul=1d\n")
    cli = Cli(tmp_path, _clean_env(), f"sqlite:///{tmp_path / 'antaeus.db'}")
    done = cli.run("serve", timeout=60)
    assert done.returncode == 1, done
    assert done.stderr.strip() == (
        "error: unknown setting: ANTAEUS_DUNNING_SCHEDUL is not a setting "
        "(did you mean ANTAEUS_DUNNING_SCHEDULE?)"
    )
    assert not (tmp_path / "antaeus.db").exists()


def test_several_unknown_names_are_all_named_and_a_far_one_points_to_the_reference(
    tmp_path: Path,
) -> None:
    env = _clean_env(ANTAEUS_WORKER_CONCURENCY="5", ANTAEUS_QQQQQQQQQQQQQQQQ="1")
    done = Cli(tmp_path, env, f"sqlite:///{tmp_path / 'antaeus.db'}").run("worker", timeout=60)
    assert done.returncode == 1, done
    line = done.stderr.strip()
    assert "ANTAEUS_QQQQQQQQQQQQQQQQ is not a setting (see docs/reference/configuration.md)" in line
    assert (
        "ANTAEUS_WORKER_CONCURENCY is not a setting (did you mean ANTAEUS_WORKER_CONCURRENCY?)"
        in line
    )


def test_option_variables_internal_and_test_names_are_allowed(tmp_path: Path) -> None:
    env = _clean_env(
        ANTAEUS_URL="http://127.0.0.1:1",  # bill --url
        ANTAEUS_PROVIDER_API_KEY="k",  # provider serve --api-key
        ANTAEUS_STRIPE_API_BASE="http://127.0.0.1:1",  # a setting and an option
        ANTAEUS_FAILPOINT="never",
        ANTAEUS_SUPERVISOR_FD="",
        ANTAEUS_TEST_ANYTHING="1",
        ANTAEUS_FUZZ_MAX_EXAMPLES="5",
    )
    done = Cli(tmp_path, env, f"sqlite:///{tmp_path / 'antaeus.db'}").run("db", "current")
    assert done.returncode == 0, done
    assert "database: empty" in done.stdout
