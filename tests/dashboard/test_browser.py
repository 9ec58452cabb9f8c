"""The dashboard end to end in a real headless browser (Playwright driving Debian's chromium).

A real `antaeus serve` on a free port, SQLite in the test's directory, the
external schedule and a simulated latency, so a run opened through the API is
slow enough to watch: sign in, watch the run complete on its page, resolve a
REVIEW invoice with a note and see it on its page and in its events, send a
form without its CSRF token and see it refused. Every page is saved as a
screenshot under `test-artifacts/screenshots/` in the working tree (CI keeps
the folder; git ignores it). Skipped, saying why, when playwright or chromium
is missing here; `.ci/run` installs chromium when it is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from antaeus.security import generate_token
from tests.cli.test_cli import Cli, _clean_env, serving

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
WAIT_MS = 60_000

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on the PATH (apt-get install -y chromium)"
)


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            tab = context.new_page()
            tab.set_default_timeout(WAIT_MS)
            yield tab
            context.close()
        finally:
            browser.close()


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_sign_in_watch_a_run_resolve_review_and_csrf_refusal(tmp_path: Path, page: Any) -> None:
    token = generate_token()
    cli = Cli(
        tmp_path,
        _clean_env(
            ANTAEUS_API_TOKEN=token,
            ANTAEUS_SCHEDULE="external",
            ANTAEUS_SIMULATED_LATENCY_MS="400",
            ANTAEUS_WORKER_CONCURRENCY="8",
            ANTAEUS_WEBHOOK_ALLOW_PRIVATE="true",  # its webhook points at 127.0.0.1
        ),
        f"sqlite:///{tmp_path / 'antaeus.db'}",
    )
    cli.ok("seed", "--seed", "7")
    with (
        serving(cli) as server,
        httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as api,
    ):
        base = server.base_url
        # an endpoint that never answers: its deliveries fail, and the page shows them
        hook = api.post("/rest/v1/webhooks", json={"url": "http://127.0.0.1:9/antaeus"})
        assert hook.status_code == 201, hook.text

        # -- sign in --------------------------------------------------------------
        page.goto(f"{base}/runs")
        assert page.url.startswith(f"{base}/signin")
        shot(page, "01-signin")
        page.fill("#token", "ant_wrong-token-xxxxxxxxxxxxxxxxxxxx")
        page.click("button[type=submit]")
        assert page.locator(".error").inner_text() == "Unknown or revoked token."
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/runs")
        cookie = next(c for c in page.context.cookies() if c["name"] == "antaeus_session")
        assert (cookie["secure"], cookie["httpOnly"], cookie["sameSite"]) == (True, True, "Strict")

        # -- open a run and watch it complete --------------------------------------
        opened = api.post("/rest/v1/billing")
        assert opened.status_code == 202, opened.text
        run_id = opened.json()["id"]
        page.goto(f"{base}/")
        page.wait_for_selector(f'tr[data-run="{run_id}"]')
        shot(page, "02-overview-run-open")
        page.goto(f"{base}/runs/{run_id}")
        status = page.locator('h1 [data-field="status"]')
        assert status.inner_text() == "running", "the run ended before it could be watched"
        first_done = int(page.locator('[data-field="done"]').inner_text())
        # the page updates itself (no reload by the test) until the run completes
        page.wait_for_function(
            "n => Number(document.querySelector('[data-field=done]').textContent) > n",
            arg=first_done,
        )
        shot(page, "03-run-in-progress")
        page.wait_for_function(
            "() => document.querySelector('h1 [data-field=status]').textContent === 'completed'"
        )
        page.wait_for_load_state()
        done = page.locator('[data-field="done"]').inner_text()
        assert done == page.locator('[data-field="due"]').inner_text() == "100"
        review_count = int(page.locator('[data-count="review"]').text_content() or 0)
        assert review_count > 0, "the seeded customers give some REVIEW invoices"
        shot(page, "04-run-completed")

        page.goto(f"{base}/")
        page.wait_for_selector("text=No run is open.")
        shot(page, "05-overview")
        page.goto(f"{base}/runs")
        shot(page, "06-runs")

        # -- resolve a REVIEW invoice with a note -----------------------------------
        page.goto(f"{base}/invoices")
        page.select_option("#status", "REVIEW")
        page.click("form.inline >> text=Filter")
        page.wait_for_url("**/invoices?status=REVIEW**")
        shot(page, "07-invoices-review")
        link = page.locator("table tbody tr td:first-child a").first
        invoice_id = int(link.inner_text())
        link.click()
        page.wait_for_url(f"{base}/invoices/{invoice_id}")
        assert page.locator("#invoice-status").inner_text() == "REVIEW"
        shot(page, "08-invoice-review")
        page.click("text=Resolve as charged…")
        page.wait_for_url(f"{base}/invoices/{invoice_id}/resolve-charged")
        page.fill("#charge_id", "ch_from_the_ledger")
        page.fill("#note", "checked <b>the</b> provider's ledger")
        shot(page, "09-confirm-resolve")
        page.click("text=Confirm: Resolve as charged")
        page.wait_for_url(f"{base}/invoices/{invoice_id}")
        assert page.locator("#invoice-status").inner_text() == "PAID"
        history = page.locator("#history").inner_text()
        assert "resolved_charged" in history
        assert "checked <b>the</b> provider's ledger" in history  # shown as text, escaped
        assert "env" in history  # who: the name of the token that signed in
        assert "invoice.resolved" in page.locator("#events").inner_text()
        shot(page, "10-invoice-resolved")

        # -- a form without its CSRF token is refused ----------------------------------
        pending = api.get("/rest/v1/invoices", params={"status": "PENDING", "limit": 1}).json()
        target = pending[0]["id"]
        forged = page.request.post(
            f"{base}/invoices/{target}/void", form={"note": "no token"}, max_redirects=0
        )
        assert forged.status == 403
        in_page = page.evaluate(
            """id => fetch('/invoices/' + id + '/void', {method: 'POST',
                 body: new URLSearchParams({note: 'no token', csrf_token: 'wrong'})})
                 .then(r => r.status)""",
            target,
        )
        assert in_page == 403
        page.goto(f"{base}/invoices/{target}/void")
        page.evaluate("document.querySelector('#action-form input[name=csrf_token]').remove()")
        page.click("text=Confirm: Void")
        assert "security token" in page.locator("h1").inner_text()
        shot(page, "11-csrf-refused")
        assert api.get(f"/rest/v1/invoices/{target}").json()["status"] == "PENDING"

        # -- webhooks ---------------------------------------------------------------
        page.goto(f"{base}/webhooks")
        page.wait_for_selector("text=http://127.0.0.1:9/antaeus")
        for _ in range(30):  # the relay's first tries fail against the closed port
            if page.locator("text=failed").count():
                break
            page.wait_for_timeout(500)
            page.reload()
        shot(page, "12-webhooks")
        if page.locator("text=Enable again").count():
            page.click("text=Enable again")
            page.wait_for_url(f"{base}/webhooks")

        # -- sign out ----------------------------------------------------------------
        page.click("text=Sign out")
        page.wait_for_url(f"{base}/signin")
        page.goto(f"{base}/")
        assert page.url.startswith(f"{base}/signin")


def test_the_api_docs_render_offline(tmp_path: Path, page: Any) -> None:
    """Issue 20, item 17: /docs and /redoc render with every request off-host refused."""
    cli = Cli(tmp_path, _clean_env(ANTAEUS_API_TOKEN=generate_token()), "sqlite:///unused")
    refused: list[str] = []

    def offline(route: Any) -> None:
        if route.request.url.startswith(base):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    with serving(cli, "--no-worker", "--no-scheduler") as server:
        base = server.base_url
        page.route("**/*", offline)
        page.goto(f"{base}/docs")
        page.locator(".opblock-summary-path", has_text="/rest/v1/invoices").first.wait_for()
        assert page.locator(".opblock").count() > 10
        shot(page, "docs")
        page.goto(f"{base}/redoc")
        page.get_by_text("/rest/v1/invoices").first.wait_for()
        shot(page, "redoc")
    # ReDoc's bundle hard-codes its footer logo (cdn.redoc.ly) and hides it when it
    # does not load: the one request off-host, and nothing depends on it
    assert [url for url in refused if not url.endswith("/redoc/logo-mini.svg")] == []
