"""`antaeus bill`: directly on the database, and through a running server (`--url`)."""

from __future__ import annotations

import re

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
    assert counts["rescheduled"] > 0
    assert sum(counts[k] for k in ("paid", "failed", "review", "rescheduled", "void")) == 100
    assert "collected" in done.stdout
    assert re.search(r"run \d+ completed", done.stdout)
    statuses = dict(cli.query("SELECT status, count(*) FROM invoices GROUP BY status"))
    assert statuses["PAID"] == 900 + counts["paid"]
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
