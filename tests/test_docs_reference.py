"""The reference pages (docs/reference/) are what the code generates now, and everything
they list has a description.

When a page test fails: run `python -m antaeus.docs_reference` from the repository's
root and commit the pages it rewrites.
"""

from __future__ import annotations

import difflib
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from antaeus import docs_reference as ref
from antaeus.api.errors import error_codes
from antaeus.domain.events import DESCRIPTIONS, EventType

ROOT = Path(__file__).resolve().parents[1]
PAGES_DIR = ROOT / "docs" / "reference"
SRC = ROOT / "src" / "antaeus"


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    return ref.generate()


def _words(text: str) -> int:
    return len(text.split())


def test_every_generated_page_is_checked_in_as_generated(pages: dict[str, str]) -> None:
    assert set(pages) == {"cli.md", "configuration.md", "events.md", "http-api.md", "metrics.md"}
    for name, text in pages.items():
        path = PAGES_DIR / name
        assert path.is_file(), f"docs/reference/{name} is missing: run `{ref.REGENERATE}`"
        checked_in = path.read_text(encoding="utf-8")
        if checked_in != text:
            diff = "".join(
                list(
                    difflib.unified_diff(
                        checked_in.splitlines(keepends=True),
                        text.splitlines(keepends=True),
                        f"docs/reference/{name} (checked in)",
                        f"docs/reference/{name} (generated now)",
                    )
                )[:40]
            )
            pytest.fail(
                f"docs/reference/{name} differs from what the code generates now: run "
                f"`{ref.REGENERATE}` and commit it\n{diff}"
            )


def test_the_hand_written_pages_exist_and_the_index_links_every_page() -> None:
    index = (PAGES_DIR / "index.md").read_text(encoding="utf-8")
    assert ref.REGENERATE in index
    for name in (*ref.PAGES, *ref.HAND_WRITTEN):
        assert (PAGES_DIR / name).is_file(), name
        if name != "index.md":
            assert f"]({name})" in index, f"index.md does not link {name}"
    protocol = (PAGES_DIR / "payment-provider-protocol.md").read_text(encoding="utf-8")
    assert "POST {base_url}/v1/charges" in protocol
    assert "GET {base_url}/v1/charges?idempotencyKey=" in protocol


def test_the_check_command_names_a_stale_page_and_passes_a_fresh_one(tmp_path: Path) -> None:
    assert ref.main(["--check", "--out", str(tmp_path)]) == 1  # nothing there yet
    assert ref.main(["--out", str(tmp_path)]) == 0
    assert ref.main(["--check", "--out", str(tmp_path)]) == 0
    page = tmp_path / "metrics.md"
    page.write_text(page.read_text(encoding="utf-8") + "edited by hand\n", encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "antaeus.docs_reference", "--check", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert "metrics.md differs from the code" in run.stderr
    assert ref.REGENERATE in run.stderr


def test_the_pages_do_not_depend_on_this_machine(
    pages: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # (no clock either: the checked-in pages, generated earlier, equal these)
    # settings from the environment change what a process does, never the reference
    monkeypatch.setenv("ANTAEUS_HOST", "0.0.0.0")
    monkeypatch.setenv("ANTAEUS_PORT", "7123")
    monkeypatch.setenv("ANTAEUS_DUNNING_SCHEDULE", "2h")
    monkeypatch.setenv("ANTAEUS_WORKER_CONCURRENCY", "3")
    assert ref.generate() == pages
    hostname = socket.gethostname()
    for name, text in pages.items():
        assert str(ROOT) not in text, name
        assert str(Path.home()) not in text, name
        if len(hostname) > 3:
            assert hostname not in text, name
    configuration = pages["configuration.md"]
    assert "## ANTAEUS_HOST" in configuration
    assert "`127.0.0.1`" in configuration
    assert "`1d,3d,7d`" in configuration
    assert "`0.0.0.0`" not in configuration


def test_every_setting_has_a_description_type_and_default() -> None:
    from antaeus.config import setting_names

    docs = ref.settings_docs()
    assert {d.variable for d in docs} == set(setting_names())
    for d in docs:
        assert _words(d.description) >= 3, f"{d.variable} needs a description (Field)"
        assert d.type, d.variable
        assert d.default, d.variable
    by_name = {d.variable: d for d in docs}
    assert by_name["ANTAEUS_PORT"].range == "1 ≤ x ≤ 65535"
    assert by_name["ANTAEUS_BREAKER_THRESHOLD"].range == "0 < x ≤ 1"
    assert by_name["ANTAEUS_API_TOKEN"].default == "unset"
    assert "`automatic`" in by_name["ANTAEUS_SCHEDULE"].type


def test_every_command_and_option_has_help() -> None:
    docs = ref.cli_docs()
    paths = {c.path for c in docs}
    for expected in ("antaeus serve", "antaeus worker", "antaeus token create", "antaeus db"):
        assert expected in paths
    for c in docs:
        assert c.help.strip(), f"`{c.path}` needs help (its docstring or help=)"
        for o in c.options:
            assert o.help.strip(), f"`{c.path}` {o.names} needs help="
            assert o.type, f"`{c.path}` {o.names}"
    serve = next(c for c in docs if c.path == "antaeus serve")
    port = next(o for o in serve.options if o.names == "--port")
    assert port.type == "integer"
    workers = next(o for o in serve.options if o.names == "--workers")
    # the default depends on the machine (its cores): said in words, never a number
    assert workers.default == ""
    assert "one per core" in workers.help


def test_every_route_has_a_summary_a_description_and_described_parameters() -> None:
    routes = ref.routes_docs()
    assert len(routes) >= 30
    for r in routes:
        where = f"{r.method} {r.path}"
        assert r.summary.strip(), f"{where} needs summary="
        assert _words(r.description) >= 3, f"{where} needs description="
        for p in r.operation.get("parameters", []):
            assert p.get("description"), f"{where}: parameter {p['name']} needs a description"


def test_every_error_code_is_described_and_named_by_the_answers_of_its_status() -> None:
    codes = error_codes()
    for code, (status, text) in codes.items():
        assert re.fullmatch(r"[a-z_]+", code), code
        assert 400 <= status < 600, code
        assert _words(text) >= 3, f"error code {code} needs a description"
    for expected in ("validation_error", "not_found", "invalid_state", "unauthorized"):
        assert expected in codes
    document = ref.openapi_document()
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            for status, answer in op["responses"].items():
                if status.startswith("4"):
                    named = [c for c, (s, _t) in codes.items() if str(s) == status]
                    for code in named:
                        assert f"`{code}`" in answer["description"], (method, path, status)


def test_every_error_code_the_api_writes_is_in_the_catalogue() -> None:
    codes = error_codes()
    written: set[str] = set()
    for path in (SRC / "api").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        written |= set(re.findall(r'code = \d{3}, "([a-z_]+)"', text))
        written |= set(re.findall(r'"error": "([a-z_]+)"', text))
        written |= set(re.findall(r'return "([a-z_]+)", (?:"body"|field)', text))
    assert written, "the patterns no longer find the codes: update this test"
    assert written <= set(codes), written - set(codes)


def test_every_event_type_has_a_description_and_an_example() -> None:
    docs = {d.type: d for d in ref.events_docs()}
    for member in EventType:
        assert member.value in docs
        assert _words(DESCRIPTIONS.get(member.value, "")) >= 3, (
            f"{member.value} needs an entry in antaeus.domain.events.DESCRIPTIONS"
        )
        assert docs[member.value].example is not None, (
            f"{member.value} needs an example in antaeus.docs_reference._example_events"
        )
    for kind in ("subscription.created", "subscription.updated", "subscription.canceled"):
        assert docs[kind].in_enum
        assert docs[kind].example
    # described ahead of the code that writes them (another change adds them to EventType)
    for kind in ("invoice.created", "subscription.trial_will_end"):
        assert _words(DESCRIPTIONS[kind]) >= 3
        assert kind in docs
    for kind in DESCRIPTIONS:
        assert re.fullmatch(r"[a-z]+\.[a-z_]+", kind), kind


def test_an_event_example_is_the_payload_the_code_writes() -> None:
    import json

    docs = {d.type: d for d in ref.events_docs()}
    paid = docs["invoice.paid"].example
    assert paid is not None
    event = json.loads(paid)
    assert set(event) == {"id", "type", "createdAt", "data"}
    assert event["type"] == "invoice.paid"
    assert event["data"]["invoice"]["status"] == "PAID"
    assert event["data"]["attempt"]["chargeId"]
    assert '"value": 89.52' in paid  # an exact JSON number, as the outbox writes it
    canceled = json.loads(docs["subscription.canceled"].example or "{}")
    assert canceled["data"]["subscription"]["status"] == "canceled"


def test_every_metric_has_help_and_is_defined_in_the_metrics_module() -> None:
    docs = ref.metrics_docs()
    assert len(docs) >= 15
    for m in docs:
        assert m.name.startswith("antaeus_"), m.name
        assert _words(m.help) >= 3, f"{m.name} needs help text"
        assert m.type in ("counter", "gauge", "histogram"), m.name
    assert any(m.series == ("antaeus_charges_total",) and m.labels == ("outcome",) for m in docs)
    # a metric defined elsewhere would be missing from the reference
    for path in SRC.rglob("*.py"):
        if path.name == "metrics.py" and path.parent.name == "observability":
            continue
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"antaeus_", text), (
            f"{path.relative_to(ROOT)} defines a metric outside observability/metrics.py"
        )
