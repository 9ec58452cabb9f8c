"""The README fits on a screen, and no relative link in it, CONTRIBUTING.md or docs/ is broken.

A relative link must name a file that exists and, with `#anchor`, a heading
of that file (the slug MkDocs and GitHub give it: lower case, punctuation
dropped, spaces as hyphens). `mkdocs build --strict` checks the site the same
way; this test also covers the README and CONTRIBUTING.md, which the site does
not build, and runs without the docs extra.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_LIMIT = 12_288
PAGES = [README, ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~)")


def _prose(text: str) -> str:
    """The page without its fenced code blocks and inline code (links there are examples)."""
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            inside = not inside
            continue
        if not inside:
            out.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def _slug(heading: str) -> str:
    text = re.sub(r"<[^>]+>", "", heading)
    text = re.sub(r"[`*]", "", text).strip().lower()  # as Python-Markdown: `_` kept
    text = re.sub(r"[^\w\s-]", "", text)
    return re.sub(r"\s+", "-", text)


def _text(page: Path) -> str:
    """The page as the site renders it: a `--8<-- "FILE"` line (pymdownx.snippets) is FILE."""
    return re.sub(
        r'^--8<-- "([^"]+)"$',
        lambda m: (ROOT / m.group(1)).read_text(encoding="utf-8"),
        page.read_text(encoding="utf-8"),
        flags=re.M,
    )


def _anchors(page: Path) -> set[str]:
    anchors = set()
    inside = False
    for line in _text(page).splitlines():
        if FENCE.match(line.lstrip()):
            inside = not inside
        elif not inside and (m := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)):
            anchors.add(_slug(m.group(1)))
    return anchors


def test_the_readme_fits_on_a_screen() -> None:
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size:,} bytes, over {README_LIMIT:,}"


def test_the_readme_keeps_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert (
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/antaeus seed"
        " && .venv/bin/antaeus serve"
    ) in text
    assert "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pytest" in text


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in LINK.findall(_prose(page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("//"):
            continue  # http:, https:, mailto:: not ours to check offline
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(ROOT)}")
    assert broken == [], f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_link_check_finds_a_broken_link(tmp_path: Path) -> None:
    """The check itself: a link to a missing file or heading is found."""
    (tmp_path / "a.md").write_text("# A page\n\n[ok](#a-page) [gone](b.md) [bad](#nowhere)\n")
    page = tmp_path / "a.md"
    found = [t for t in LINK.findall(_prose(page.read_text())) if t]
    assert found == ["#a-page", "b.md", "#nowhere"]
    assert _anchors(page) == {"a-page"}
    assert _slug("An invoice in `REVIEW`") == "an-invoice-in-review"
    assert _slug("1. Test mode against the fake Stripe (no internet, no account).") == (
        "1-test-mode-against-the-fake-stripe-no-internet-no-account"
    )
