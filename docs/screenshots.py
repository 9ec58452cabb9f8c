"""The dashboard's screenshots for the docs: `python docs/screenshots.py`.

Starts a real `antaeus serve` on a free port with the sample data in a
temporary directory (the automatic schedule bills the 100 due invoices at
once, so every outcome shows), signs in with Playwright driving Debian's
chromium (`apt-get install -y chromium`; Playwright downloads no browser), and
writes PNGs of the main pages under `docs/img/`. The images are committed; run
this again when the dashboard changes. Needs the `test` extra (Playwright).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, ViewportSize, sync_playwright

OUT = Path(__file__).resolve().parent / "img"
VIEWPORT: ViewportSize = {"width": 1200, "height": 760}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _antaeus(*args: str, cwd: Path, env: dict[str, str]) -> str:
    exe = Path(sys.executable).parent / "antaeus"
    done = subprocess.run(
        [str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def _shot(page: Page, name: str) -> None:
    path = OUT / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


def _wait_until_no_run_is_open(base: str, token: str) -> None:
    deadline = time.monotonic() + 120
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as api:
        while time.monotonic() < deadline:
            if api.get("/rest/v1/status").json()["openRuns"] == []:
                return
            time.sleep(0.3)
    raise SystemExit("the sample run did not complete within 120 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    if not Path(args.chromium).exists():
        raise SystemExit(f"no chromium at {args.chromium}: apt-get install -y chromium")
    OUT.mkdir(exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="antaeus-screenshots-") as tmp:
        where = Path(tmp)
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANTAEUS_")}
        env.update(ANTAEUS_PORT=str(port), NO_COLOR="1")
        _antaeus("seed", cwd=where, env=env)
        token = _antaeus("token", "create", "--name", "alice", cwd=where, env=env).strip()
        exe = Path(sys.executable).parent / "antaeus"
        with (where / "serve.log").open("wb") as log:
            serve = subprocess.Popen(
                [str(exe), "serve"], cwd=where, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/rest/health", timeout=1).is_success:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            _wait_until_no_run_is_open(base, token)
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path=args.chromium, headless=True, args=["--no-sandbox"]
                )
                page = browser.new_context(viewport=VIEWPORT).new_page()
                page.goto(f"{base}/signin")
                _shot(page, "signin")
                page.fill("#token", token)
                page.click("button[type=submit]")
                page.wait_for_url(f"{base}/")
                _shot(page, "overview")
                page.goto(f"{base}/runs/1")
                page.wait_for_selector('h1 [data-field="status"]')
                _shot(page, "run")
                page.goto(f"{base}/invoices?status=FAILED")
                _shot(page, "invoices-failed")
                page.goto(f"{base}/invoices/271")
                page.wait_for_selector("#invoice-status")
                _shot(page, "invoice-review")
                browser.close()
        finally:
            serve.send_signal(signal.SIGINT)
            serve.wait(timeout=60)


if __name__ == "__main__":
    main()
