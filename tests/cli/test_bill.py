"""`antaeus bill`: directly on the database, and through a running server (`--url`)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx

from tests.cli.test_cli import TOKEN, Cli, serving


def _summary_counts(stdout: str) -> dict[str, int]:
    counts = {}
    for name in ("due", "paid", "failed", "review", "rescheduled", "void"):
        match = re.search(rf"│ {name}\s+│\s+([\d,]+) │", stdout)
        assert match, f"no {name!r} row in the summary:\n{stdout}"
        counts[name] = int(match[1].replace(",", ""))
    return counts


def test_seed_then_bill_charges_the_sample_invoices(cli: Cli) -> None:
    cli.ok("seed", "--seed", "3")
    done = cli.ok("bill")
    counts = _summary_counts(done.stdout)
    assert counts["due"] == 100
    # the default simulated provider (30% failures) shows every kind of outcome
    assert counts["paid"] > 50
    assert counts["failed"] > 0
    assert counts["review"] > 0
    assert counts["rescheduled"] > 0
    assert sum(counts[k] for k in ("paid", "failed", "review", "rescheduled", "void")) == 100
    assert "collected" in done.stdout
    assert re.search(r"run \d+ completed", done.stdout)
    statuses = dict(cli.query("SELECT status, count(*) FROM invoices GROUP BY status"))
    # (and the 6 invoices of the sample subscriptions, paid by the customers' credit)
    assert statuses["PAID"] == 906 + counts["paid"]
    # a second bill finds nothing due (declines wait a day): an empty, completed run
    again = _summary_counts(cli.ok("bill").stdout)
    assert again["due"] == 0


def test_bill_through_a_running_server(cli: Cli) -> None:
    cli.env["ANTAEUS_SCHEDULE"] = "external"  # nothing is charged until the trigger
    cli.env["ANTAEUS_SIMULATED_FAILURE_RATE"] = "0"
    cli.ok("seed", "--seed", "4")
    token = cli.ok("token", "create", "--name", "cron").stdout.strip()
    assert TOKEN.fullmatch(token)
    with serving(cli) as server:
        done = cli.ok("bill", "--url", server.base_url, "--token", token)
        counts = _summary_counts(done.stdout)
        assert counts["due"] == 100
        assert counts["paid"] == 100
        wrong = cli.run("bill", "--url", server.base_url, "--token", "ant_wrong")
        assert wrong.returncode != 0
        assert "401" in wrong.stderr


def test_bill_times_out_with_a_reason_and_leaves_the_run_open(cli: Cli) -> None:
    cli.env["ANTAEUS_SIMULATED_LATENCY_MS"] = "2000"
    cli.env["ANTAEUS_WORKER_CONCURRENCY"] = "1"  # 5 invoices, one 2 s call at a time
    cli.env["ANTAEUS_SIMULATED_FAILURE_RATE"] = "0"
    cli.ok("seed", "--seed", "5", "--customers", "5")
    done = cli.run("bill", "--timeout", "1")
    assert done.returncode == 1
    assert "still open" in done.stderr
    [(status,)] = cli.query("SELECT status FROM billing_runs")
    assert status == "running"


def _account(cli: Cli, customer: int) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(
        cli.ok("provider", "account", "--customer", str(customer)).stdout
    )
    return shown


def test_the_demo_shows_every_outcome_and_fixing_the_cause_is_what_pays(cli: Cli) -> None:
    cli.ok("seed", "--seed", "1")
    counts = _summary_counts(cli.ok("bill").stdout)
    assert all(counts[k] > 0 for k in ("paid", "failed", "review", "rescheduled")), counts
    rows = cli.query(
        "SELECT id, customer_id, currency, status, last_failure FROM invoices "
        "WHERE last_failure IS NOT NULL ORDER BY id"
    )
    by_reason: dict[str, list[tuple[int, int, str, str]]] = {}
    for iid, cid, currency, status, reason in rows:
        by_reason.setdefault(reason, []).append((iid, cid, currency, status))
    assert {s for *_, s in by_reason["customer_not_found"]} == {"FAILED"}
    assert {s for *_, s in by_reason["currency_mismatch"]} == {"FAILED"}
    assert {s for *_, s in by_reason["insufficient_funds"]} == {"PENDING"}
    assert {s for *_, s in by_reason["provider_rejected"]} == {"REVIEW"}
    assert len(by_reason["customer_not_found"]) >= 2, by_reason
    for _, cid, currency, _ in by_reason["currency_mismatch"]:
        assert _account(cli, cid)["currency"] != currency  # only when the currencies differ
    for _, cid, _, _ in by_reason["customer_not_found"]:
        assert "no account" in cli.ok("provider", "account", "--customer", str(cid)).stdout

    # fix the causes at the simulator, leaving one customer without an account
    (found, found_cid, found_currency, _), (unfixed, *_) = by_reason["customer_not_found"][:2]
    cli.ok(
        "provider", "account", "--customer", str(found_cid),
        "--currency", found_currency, "--balance", "1000.00",
    )  # fmt: skip
    mismatch, mismatch_cid, mismatch_currency, _ = by_reason["currency_mismatch"][0]
    cli.ok("provider", "account", "--customer", str(mismatch_cid), "--currency", mismatch_currency)
    low, low_cid, _, _ = by_reason["insufficient_funds"][0]
    funded = json.loads(
        cli.ok("provider", "fund", "--customer", str(low_cid), "--amount", "500.00").stdout
    )
    assert float(funded["balance"]) >= 500

    token = cli.ok("token", "create", "--name", "ops").stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    watched = [found, unfixed, mismatch, low]
    with serving(cli) as server:  # the automatic schedule charges what becomes due
        for iid in (found, unfixed, mismatch):
            answer = httpx.post(f"{server.base_url}/rest/v1/invoices/{iid}/retry", headers=headers)
            assert answer.status_code == 200, answer.text
        answer = httpx.post(f"{server.base_url}/rest/v1/billing/retry", headers=headers)
        assert answer.status_code == 202, answer.text
        deadline = time.monotonic() + 60
        while True:
            marks = ",".join(map(str, watched))
            done = dict(cli.query(f"SELECT id, status FROM invoices WHERE id IN ({marks})"))
            paid = {done[found], done[mismatch], done[low]} == {"PAID"}
            if paid and done[unfixed] == "FAILED":
                break
            assert time.monotonic() < deadline, done
            time.sleep(0.2)

        # an invoice in REVIEW: its key is in the simulator's ledger, so serve's
        # reconciler asks the provider and settles it with that charge, no person needed
        review = by_reason["provider_rejected"][0][0]
        [charge] = json.loads(cli.ok("provider", "ledger", "--invoice", str(review)).stdout)[
            "charges"
        ]
        attempts = httpx.get(
            f"{server.base_url}/rest/v1/invoices/{review}/attempts", headers=headers
        ).json()
        assert charge["idempotencyKey"] == attempts[-1]["idempotencyKey"]
        deadline = time.monotonic() + 60
        while cli.query(f"SELECT status FROM invoices WHERE id = {review}") != [("PAID",)]:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        actions = httpx.get(
            f"{server.base_url}/rest/v1/invoices/{review}/actions", headers=headers
        ).json()
        assert [(a["actor"], a["action"], a["chargeId"]) for a in actions] == [
            ("reconciler", "resolved_charged", charge["chargeId"])
        ]
    [(unfixed_reason,)] = cli.query(f"SELECT last_failure FROM invoices WHERE id = {unfixed}")
    assert unfixed_reason == "customer_not_found"  # a plain retry changed nothing
    [(review_status,)] = cli.query(f"SELECT status FROM invoices WHERE id = {review}")
    assert review_status == "PAID"


def _in_a_terminal(cli: Cli, *args: str, timeout: float = 120) -> tuple[int, str]:
    """`antaeus ARGS` with a pseudo-terminal as stdin, stdout and stderr (as a person runs it);
    answers its exit code and everything it wrote."""
    import os
    import pty
    import subprocess
    import sys

    env = {**cli.env, "TERM": "xterm-256color", "COLUMNS": "200", "LINES": "50"}
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "antaeus", *args],
        cwd=cli.cwd,
        env=env,
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: every end of the terminal closed (the process exited)
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
    shown = b"".join(chunks).decode("utf-8", "replace")
    return process.returncode, re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)  # no colours


def test_bill_in_a_terminal_sums_up_what_needs_a_person_instead_of_a_line_each(cli: Cli) -> None:
    """Issue 20, item 17: 20,000 invoices scrolled 1,813 coloured `invoice_needs_person`
    warnings through the bar. In a terminal: the bar (with its expected end), then one
    summary by reason with the first ids and the request that lists them all."""
    cli.env.update(ANTAEUS_SIMULATED_LATENCY_MS="150", ANTAEUS_WORKER_CONCURRENCY="20")
    cli.ok("seed", "--seed", "1", "--customers", "300", "--invoices-per-customer", "1")
    code, shown = _in_a_terminal(cli, "bill", "--processes", "1")
    assert code == 0, shown
    assert "invoice_id=" not in shown  # no per-invoice line
    assert "ends ~" in shown, shown  # the bar's expected end
    waiting = dict(
        cli.query(
            "SELECT last_failure, count(*) FROM invoices "
            "WHERE status IN ('FAILED', 'REVIEW') GROUP BY last_failure"
        )
    )
    assert waiting, "the seeded profiles leave some invoices for a person"
    total = sum(waiting.values())
    assert f"{total:,} invoices need a person:" in shown, shown
    for reason, count in waiting.items():
        assert re.search(rf"{reason}\s+{count:,}\s+invoices \d+", shown), (reason, shown)
    assert "/rest/v1/invoices?status=FAILED" in shown

    # asked for, the per-invoice lines are printed (and the summary is left to them)
    cli.ok("seed", "--seed", "2", "--append", "--customers", "300", "--invoices-per-customer", "1")
    cli.env["ANTAEUS_LOG_LEVEL"] = "info"
    code, verbose = _in_a_terminal(cli, "bill", "--processes", "1")
    assert code == 0, verbose
    assert re.search(r"invoice_needs_person.*invoice_id=", verbose), verbose
    assert "invoices need a person:" not in verbose


def test_bill_charging_here_has_no_time_limit_by_default(cli: Cli) -> None:
    """Issue 20, item 14: `bill` gave up on a large run going well at its default 900 s."""
    import typer

    from antaeus.cli.billing import bill

    default = typer.main.get_command_from_info(  # the option as the command declares it
        typer.models.CommandInfo(callback=bill), pretty_exceptions_short=True, rich_markup_mode=None
    )
    [timeout] = [p for p in default.params if p.name == "timeout"]
    assert timeout.default is None  # None: no limit here, 900 s with --url
    shown = cli.ok("bill", "--help").stdout
    assert "no limit when charging" in " ".join(shown.split())
