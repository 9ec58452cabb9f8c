"""Make `_sync_client.py` from `_async_client.py`: `python -m antaeus.client._unasync`.

The sync client is the async one with `async`/`await` taken out and the
`Async` names turned into their plain ones (`httpx.AsyncClient` into
`httpx.Client`, `AsyncIterator` into `Iterator`, `asyncio.sleep` into
`time.sleep`). A test fails when the file in the tree is not what this makes.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Final

HERE: Final = Path(__file__).parent
SOURCE: Final = HERE / "_async_client.py"
TARGET: Final = HERE / "_sync_client.py"

_HEADER: Final = (
    "# Made by `python -m antaeus.client._unasync` from _async_client.py: do not edit.\n"
    '"""`Client`: the API with plain calls and `for` (`AsyncClient` made synchronous)."""\n'
)
#: the source's own docstring, replaced by the header's
_DOCSTRING: Final = re.compile(r'\A"""(?:.|\n)*?"""\n')

_RULES: Final[tuple[tuple[str, str], ...]] = (
    (r"\bimport asyncio\b", "import time"),
    (r"\basyncio\.sleep\b", "time.sleep"),
    (r"\basync def\b", "def"),
    (r"\basync for\b", "for"),
    (r"\basync with\b", "with"),
    (r"\bawait ", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\baclose\b", "close"),
    (r"\bAsync([A-Z]\w*)", r"\1"),
    (r"asynchronously", "synchronously"),
)


def unasync(text: str) -> str:
    """The sync source, formatted as the project formats (ruff, a test dependency)."""
    text = _DOCSTRING.sub("", text, count=1)
    for pattern, replacement in _RULES:
        text = re.sub(pattern, replacement, text)
    text = _ruff(["check", "--fix", "--select", "I", "--quiet"], _HEADER + text)  # imports
    return _ruff(["format"], text)


def _ruff(args: list[str], text: str) -> str:
    done = subprocess.run(  # noqa: S603 (our own interpreter running ruff on our own text)
        [sys.executable, "-m", "ruff", *args, "--stdin-filename", str(TARGET), "-"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        cwd=HERE,
    )
    return done.stdout


def main() -> int:
    made = unasync(SOURCE.read_text(encoding="utf-8"))
    if "--check" in sys.argv[1:]:
        if TARGET.read_text(encoding="utf-8") != made:
            print(f"{TARGET.name} is out of date: run python -m antaeus.client._unasync")
            return 1
        return 0
    TARGET.write_text(made, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
