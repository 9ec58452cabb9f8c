"""The container deployment: `Dockerfile` and `compose.yaml` at the repository's root.

No container engine runs in CI, so the files are read as data: compose.yaml must
hold the native topology (docs/guides/containers.md), every Antaeus setting it sets must
be a real one, and the Dockerfile must run `antaeus serve` as a non-root user with
a health check on `/rest/health`. The health checks' commands themselves run
against real servers, and `docker-compose config -q` checks the file when the
binary is installed (CI installs Debian's `docker-compose`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from antaeus.config import Settings
from tests.cli.test_cli import Cli, _clean_env, serving
from tests.payments.simulator import clean_env, running_simulator

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
# Set in compose before Antaeus reads them: the events relay's broker (a later change).
PENDING_SETTINGS = {"AMQP_URL"}


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def _running(prefix: list[str]) -> list[str]:
    """Names of the services whose command starts with `prefix`."""
    return [
        name for name, service in _services().items() if _command(service)[: len(prefix)] == prefix
    ]


def _antaeus_services() -> dict[str, dict[str, Any]]:
    """Every service running Antaeus itself (not the provider simulator)."""
    return {
        name: service
        for name, service in _services().items()
        if _command(service)[:1] == ["antaeus"] and _command(service)[1:2] != ["provider"]
    }


def _option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for parts in (entry.split(None, 1) for entry in logical)
    ]


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile_instructions()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def _healthcheck_command() -> list[str]:
    (arguments,) = [args for op, args in _final_stage() if op == "HEALTHCHECK"]
    _options, _, command = arguments.partition("CMD ")
    argv: list[str] = json.loads(command)
    return argv


# --- compose.yaml -----------------------------------------------------------------------


def test_compose_has_the_native_topology() -> None:
    services = _services()
    assert {"postgres", "rabbitmq"} <= services.keys()
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["rabbitmq"]["image"].startswith("rabbitmq:")

    (migrate,) = _running(["antaeus", "db", "upgrade"])
    assert services[migrate]["restart"] == "no", "the migration runs once"
    assert _running(["antaeus", "serve"]) == _running(["antaeus", "serve", "--no-worker"])
    (api,) = _running(["antaeus", "serve", "--no-worker"])
    assert "--no-scheduler" not in _command(services[api]), "the one scheduler is the API's"
    assert len(_running(["antaeus", "worker"])) == 2
    (simulator,) = _running(["antaeus", "provider", "serve"])
    assert _option(_command(services[simulator]), "--host") == "0.0.0.0"
    assert _option(_command(services[simulator]), "--state") != ":memory:", (
        "a simulator that forgets its keys on a restart would charge a repeated key again"
    )


def test_every_antaeus_service_uses_postgres_and_the_simulator() -> None:
    services = _services()
    (simulator,) = _running(["antaeus", "provider", "serve"])
    simulator_port = _option(_command(services[simulator]), "--port")
    antaeus = _antaeus_services()
    assert len(antaeus) == 4  # migrate, api, two workers
    for name, service in antaeus.items():
        env = service["environment"]
        database = urlsplit(env["ANTAEUS_DATABASE_URL"])
        assert database.scheme == "postgresql", name
        assert database.hostname == "postgres", name
        provider = urlsplit(env["ANTAEUS_PAYMENT_PROVIDER_URL"])
        assert (provider.hostname, str(provider.port)) == (simulator, simulator_port), name
        # one credential: what the workers send is what the simulator requires
        assert (
            env["ANTAEUS_PAYMENT_PROVIDER_API_KEY"]
            == services[simulator]["environment"]["ANTAEUS_PROVIDER_API_KEY"]
        ), name


def test_compose_sets_only_real_settings() -> None:
    known = {name.upper() for name in Settings.model_fields} | PENDING_SETTINGS
    for name, service in _antaeus_services().items():
        for variable in service["environment"]:
            assert variable.startswith("ANTAEUS_"), (name, variable)
            assert variable.removeprefix("ANTAEUS_") in known, (name, variable)


def test_the_api_token_is_passed_through_never_set_empty() -> None:
    # An empty ANTAEUS_API_TOKEN is not unset: `serve` would create no first token.
    (api,) = _running(["antaeus", "serve", "--no-worker"])
    env = _services()[api]["environment"]
    assert "ANTAEUS_API_TOKEN" in env
    assert env["ANTAEUS_API_TOKEN"] is None


def test_compose_starts_in_order_with_health_checks() -> None:
    services = _services()
    (migrate,) = _running(["antaeus", "db", "upgrade"])
    (api,) = _running(["antaeus", "serve", "--no-worker"])
    (simulator,) = _running(["antaeus", "provider", "serve"])
    workers = _running(["antaeus", "worker"])
    for name in ("postgres", "rabbitmq", simulator):
        assert services[name]["healthcheck"]["test"], name
    assert services[migrate]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in (api, *workers):
        condition = services[name]["depends_on"][migrate]["condition"]
        assert condition == "service_completed_successfully", name
    for name in workers:
        assert services[name]["depends_on"][simulator]["condition"] == "service_healthy"
    # The image's health check asks the API port: off where nothing serves it.
    for name in (migrate, *workers):
        assert services[name]["healthcheck"] == {"disable": True}, name
    assert "healthcheck" not in services[api], "the API keeps the image's health check"
    assert services[api]["ports"] == ["7000:7000"]


def test_compose_config_is_valid() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (CI installs Debian's docker-compose)")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANTAEUS_", "POSTGRES_", "COMPOSE_"))
    }
    result = subprocess.run(
        [binary, "-f", str(COMPOSE), "config", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", "every variable has a default: no warning"


# --- Dockerfile -------------------------------------------------------------------------


def test_dockerfile_builds_a_wheel_and_runs_serve_as_non_root() -> None:
    instructions = _dockerfile_instructions()
    stages = [args for op, args in instructions if op == "FROM"]
    assert len(stages) >= 2, "multi-stage: build, then runtime"
    final = _final_stage()
    assert final[0][1].split()[0] == "python:3.12-slim"
    (user,) = [args for op, args in final if op == "USER"]
    assert user.split(":")[0] not in ("root", "0")
    assert [op for op, _ in final].index("USER") < [op for op, _ in final].index("CMD")
    (cmd,) = [args for op, args in final if op == "CMD"]
    assert json.loads(cmd) == ["antaeus", "serve"]
    assert ("EXPOSE", "7000") in final
    env = " ".join(args for op, args in final if op == "ENV")
    assert re.search(r"\bANTAEUS_HOST=0\.0\.0\.0\b", env), "serve must listen beyond loopback"
    assert any("pip wheel" in args for op, args in instructions if op == "RUN")
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv"} <= set(ignored)


def test_dockerfile_health_check_asks_rest_health() -> None:
    argv = _healthcheck_command()
    assert argv[0] == "python", "no curl in the slim image"
    assert "/rest/health" in " ".join(argv)


def test_the_image_health_check_passes_while_serve_answers(tmp_path: Path) -> None:
    argv = [sys.executable, *_healthcheck_command()[1:]]
    cli = Cli(tmp_path, _clean_env(), f"sqlite:///{tmp_path / 'antaeus.db'}")
    with serving(cli, "--no-worker") as server:
        port = str(urlsplit(server.base_url).port)
        env = {**cli.env, "ANTAEUS_PORT": port}
        check = subprocess.run(argv, env=env, capture_output=True, timeout=30, check=False)
        assert check.returncode == 0, check.stderr
    stopped = subprocess.run(argv, env=env, capture_output=True, timeout=30, check=False)
    assert stopped.returncode != 0


def test_the_simulator_health_check_passes_while_it_answers() -> None:
    (simulator,) = _running(["antaeus", "provider", "serve"])
    service = _services()[simulator]
    test = service["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"]
    port = _option(_command(service), "--port")
    with running_simulator() as base_url:
        script = test[3].replace(f":{port}/", f":{urlsplit(base_url).port}/")
        assert script != test[3]
        check = subprocess.run(
            [sys.executable, "-c", script],
            env=clean_env(),
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert check.returncode == 0, check.stderr
