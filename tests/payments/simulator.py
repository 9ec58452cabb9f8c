"""`running_simulator(...)`: a real `antaeus provider serve` process for a test.

    with running_simulator("--ambiguous-rate", "1") as base_url:
        httpx.post(f"{base_url}/v1/charges", ...)

The server runs as `python -m antaeus provider serve --port <free port> ARGS`
(the interpreter running the tests), is ready when `/v1/health` answers, and is
stopped with SIGTERM (SIGKILL after 10 s) on exit. Without `env`, it gets this
process's environment minus every `ANTAEUS_*` variable, so nothing set for
another test (an API key, a database) leaks into it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO

import httpx
import pytest

READY_TIMEOUT = 30.0  # seconds
STOP_TIMEOUT = 10.0
PORT_ATTEMPTS = 3  # another process may take the free port before the server binds it


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without `ANTAEUS_*` variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ANTAEUS_")}
    env.update(extra)
    return env


def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then SIGKILL if it is still running after `STOP_TIMEOUT`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()
    return process.returncode


@contextmanager
def running_simulator(*args: str, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Start `antaeus provider serve ARGS` on a free port; yield its base URL."""
    environment = dict(env) if env is not None else clean_env()
    with tempfile.TemporaryFile() as stderr:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            stderr.seek(0)
            stderr.truncate()
            port = free_port()
            process = subprocess.Popen(
                [sys.executable, "-m", "antaeus", "provider", "serve", "--port", str(port), *args],
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
            try:
                base_url = f"http://127.0.0.1:{port}"
                if _wait_ready(process, base_url, stderr, retry=attempt < PORT_ATTEMPTS):
                    yield base_url
                    return
            finally:
                stop(process)


def _stderr(stderr: IO[bytes]) -> str:
    stderr.flush()
    stderr.seek(0)
    text = stderr.read().decode("utf-8", "replace")
    stderr.seek(0, os.SEEK_END)
    return text


def _wait_ready(
    process: subprocess.Popen[bytes],
    base_url: str,
    stderr: IO[bytes],
    *,
    retry: bool,
) -> bool:
    """True once /v1/health answers; False if the port was taken (worth another port)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if process.poll() is not None:
            text = _stderr(stderr)
            if retry and "cannot listen" in text:
                return False
            pytest.fail(
                f"antaeus provider serve exited {process.returncode} before it was ready\n"
                f"--- stderr ---\n{text}"
            )
        try:
            if httpx.get(f"{base_url}/v1/health", timeout=1.0).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(
                f"antaeus provider serve not ready after {READY_TIMEOUT} s\n"
                f"--- stderr ---\n{_stderr(stderr)}"
            )
        time.sleep(0.05)
