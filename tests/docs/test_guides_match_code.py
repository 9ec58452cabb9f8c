"""Hand-written guide tables that explain what the code defines list exactly what the
code defines, so that they cannot drift (the generated reference has the rest)."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import REGISTRY

import antaeus.observability.metrics  # noqa: F401  (registers the series)

ROOT = Path(__file__).resolve().parents[2]


def test_the_monitoring_guide_explains_every_metric_and_no_other() -> None:
    text = (ROOT / "docs/guides/monitoring.md").read_text(encoding="utf-8")
    explained = set(re.findall(r"^\| `(antaeus_[a-z_]+)` \|", text, flags=re.M))
    defined = {
        metric.name + ("_total" if metric.type == "counter" else "")
        for metric in REGISTRY.collect()
        if metric.name.startswith("antaeus_")
    }
    assert explained == defined, (
        f"missing from the guide: {sorted(defined - explained)}; "
        f"not in the code: {sorted(explained - defined)}"
    )


def test_the_configuration_guide_points_at_the_generated_reference() -> None:
    text = (ROOT / "docs/guides/configuration.md").read_text(encoding="utf-8")
    assert "../reference/configuration.md" in text
    assert "| setting | default |" not in text  # the table lives in the reference only
