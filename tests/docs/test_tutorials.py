"""The Get started pages, run as written against a real `antaeus serve`.

Each shell block of a page under `docs/get-started/` carries a marker in an HTML
comment on the line before it (invisible on the site):

- `<!-- docs-test: run -->`: run with bash (`set -euo pipefail`) in the page's
  directory; variables a block sets are kept for the next blocks, as in the
  reader's shell;
- `<!-- docs-test: serve -->`: the command that starts `antaeus serve`, started
  in the background on a free port (the page's `127.0.0.1:7000` is rewritten to
  it in every block) and stopped with Ctrl-C (SIGINT) at the end of the page,
  which must then print its `stopped:` line and exit 0;
- `<!-- docs-test: expect -->` before a text block: every line of it must appear
  in the output of the block run just before (spaces collapsed);
- `<!-- docs-test: skip (why) -->`: not run, with the reason.

A shell block without a marker fails the test, so a new command cannot slip in
untested. Each page runs in a fresh directory with its own SQLite file, `.venv`
pointing at the interpreter running the tests.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
GET_STARTED = ROOT / "docs" / "get-started"
PAGES = sorted(GET_STARTED.glob("*.md"))
SHELLS = {"sh", "bash", "console", "shell"}
MARKER = re.compile(r"<!--\s*docs-test:\s*(run|serve|expect|skip)\b(.*?)-->")
FENCE = re.compile(r"^```(\S*)\s*$")
DOCUMENTED_ADDRESS = "127.0.0.1:7000"


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    marker: str | None
    reason: str


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page, each with the marker on the line before it."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        before = lines[start - 1] if start > 0 else ""
        marker = MARKER.search(before)
        found.append(
            Block(
                line=start + 1,
                lang=fence.group(1),
                text="\n".join(body) + "\n",
                marker=marker.group(1) if marker else None,
                reason=marker.group(2).strip() if marker else "",
            )
        )
        i += 1
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _reader_dir(tmp_path: Path) -> Path:
    """An empty directory with `.venv/bin` holding this interpreter's `antaeus` and `python`."""
    where = tmp_path / "reader"
    bin_dir = where / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    scripts = Path(sys.executable).parent
    antaeus = scripts / "antaeus"
    assert antaeus.exists(), f"no antaeus script beside {sys.executable}"
    (bin_dir / "antaeus").symlink_to(antaeus)
    (bin_dir / "python").symlink_to(sys.executable)
    (bin_dir / "activate").write_text(f'export PATH={shlex.quote(str(bin_dir))}:"$PATH"\n')
    return where


def _env(port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ANTAEUS_")}
    env.pop("VIRTUAL_ENV", None)
    # the reader's PATH has no antaeus until `. .venv/bin/activate`; keep only system tools
    ours = Path(sys.executable).parent
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p) != ours
    )
    env.update({"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "120", "ANTAEUS_PORT": str(port)})
    return env


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


class Reader:
    """A reader's shells: blocks run one after the other, sharing exported variables."""

    def __init__(self, where: Path, port: int) -> None:
        self.where = where
        self.port = port
        self.env = _env(port)
        self.state = where / ".docs-test-env"
        self.serve: subprocess.Popen[bytes] | None = None
        self.serve_log = where / "serve.log"

    def _script(self, text: str) -> str:
        text = text.replace(DOCUMENTED_ADDRESS, f"127.0.0.1:{self.port}")
        state = shlex.quote(str(self.state))
        if "antaeus" in text and ". .venv/bin/activate" not in text:
            text = ". .venv/bin/activate\n" + text
        return (
            f"set -euo pipefail\n[ -f {state} ] && . {state}\nset -a\n{text}\nset +a\n"
            f"export -p > {state}\n"
        )

    def run(self, block: Block, page: Path) -> str:
        done = subprocess.run(
            ["bash", "-c", self._script(block.text)],
            cwd=self.where,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=120,
            check=False,
        )
        out = done.stdout.decode("utf-8", "replace")
        assert done.returncode == 0, (
            f"{page.name}:{block.line}: exit {done.returncode}\n{block.text}\n--- output:\n{out}"
            + self._serve_tail()
        )
        return out

    def start_serve(self, block: Block, page: Path) -> None:
        assert self.serve is None, f"{page.name}:{block.line}: a second serve block"
        # no pipefail: `seed && serve` ends with serve's Ctrl-C, which is the point
        script = self._script(block.text).replace("set -euo pipefail\n", "set -eu\n")
        with self.serve_log.open("wb") as log:
            self.serve = subprocess.Popen(
                ["bash", "-c", script],
                cwd=self.where,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.serve.poll() is None, f"serve ended early:{self._serve_tail()}"
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/rest/health", timeout=1).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        pytest.fail(f"serve did not answer within 60 s:{self._serve_tail()}")

    def stop_serve(self) -> None:
        if self.serve is None:
            return
        # Ctrl-C in the reader's terminal reaches the whole foreground group
        os.killpg(self.serve.pid, signal.SIGINT)
        try:
            code = self.serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.serve.pid, signal.SIGKILL)
            self.serve.wait()
            pytest.fail(f"serve did not stop on Ctrl-C:{self._serve_tail()}")
        finally:
            self.serve = None
        assert code == 0, f"serve exited {code} on Ctrl-C:{self._serve_tail()}"
        assert "stopped: every call in flight finished" in self.serve_log.read_text()

    def _serve_tail(self) -> str:
        if not self.serve_log.exists():
            return ""
        return "\n--- serve.log (end):\n" + "\n".join(self.serve_log.read_text().splitlines()[-30:])


def test_there_are_get_started_pages_with_runnable_blocks() -> None:
    names = {p.name for p in PAGES}
    assert {"quickstart.md", "first-hour.md"} <= names
    for page in PAGES:
        assert any(b.marker == "run" for b in blocks(page)), page.name


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_every_shell_block_is_marked(page: Path) -> None:
    """A shell block without a marker would be an untested command."""
    unmarked = [
        f"{page.name}:{b.line}" for b in blocks(page) if b.lang in SHELLS and b.marker is None
    ]
    assert unmarked == [], "shell blocks without <!-- docs-test: ... -->: " + ", ".join(unmarked)
    for b in blocks(page):
        if b.marker == "skip":
            assert b.reason, f"{page.name}:{b.line}: a skip says why"
        if b.marker == "expect":
            assert b.lang in {"text", ""}, f"{page.name}:{b.line}: expect a text block"


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_the_page_runs_as_written(page: Path, tmp_path: Path) -> None:
    reader = Reader(_reader_dir(tmp_path), _free_port())
    last_output: str | None = None
    try:
        for block in blocks(page):
            if block.marker == "serve":
                reader.start_serve(block, page)
                last_output = None
            elif block.marker == "run":
                last_output = reader.run(block, page)
            elif block.marker == "expect":
                assert last_output is not None, f"{page.name}:{block.line}: nothing ran before"
                got = _squeeze(last_output)
                for want in block.text.splitlines():
                    if want.strip():
                        assert _squeeze(want) in got, (
                            f"{page.name}:{block.line}: {want.strip()!r} not in the output:\n"
                            f"{last_output}"
                        )
        reader.stop_serve()
    finally:
        if reader.serve is not None:
            os.killpg(reader.serve.pid, signal.SIGKILL)
            reader.serve.wait()
