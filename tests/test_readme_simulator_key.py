"""The README and the docs name the simulator's own key as `antaeus provider serve` reads it."""

from __future__ import annotations

import re
from pathlib import Path

from antaeus.cli.provider import API_KEY_ENV

ROOT = Path(__file__).resolve().parents[1]
# the README's deployment sections moved to the site (issue 22): compose and the native topology
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
KEY_NAME = re.compile(r"ANTAEUS_[A-Z_]*API_KEY")


def test_the_simulator_reads_antaeus_provider_api_key() -> None:
    assert API_KEY_ENV == "ANTAEUS_PROVIDER_API_KEY"


def test_every_line_on_the_simulators_key_names_it_rightly() -> None:
    """A line saying which key the simulator takes names ANTAEUS_PROVIDER_API_KEY."""
    about_it = [
        line
        for page in PAGES
        for line in page.read_text(encoding="utf-8").splitlines()
        if "simulator" in line.lower()
        and KEY_NAME.search(line)
        and not line.lstrip().startswith("export ANTAEUS_STRIPE")
    ]
    assert about_it, "the docs no longer say which key the simulator takes"
    wrong = [line for line in about_it if API_KEY_ENV not in line]
    assert wrong == [], wrong
