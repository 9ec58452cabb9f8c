"""`antaeus reconcile`: the sample data's lost answers are found at the provider and paid."""

from __future__ import annotations

import re

from tests.cli.test_cli import Cli


def test_reconcile_finds_the_lost_answers_of_a_bill_and_pays_them(cli: Cli) -> None:
    cli.ok("seed", "--seed", "3")
    cli.ok("bill")
    review = [r[0] for r in cli.query("SELECT id FROM invoices WHERE status = 'REVIEW'")]
    assert review  # the simulator's "answers lost" customers: charged, answer lost
    paid_before = cli.query("SELECT count(*) FROM invoices WHERE status = 'PAID'")[0][0]

    done = cli.run("reconcile")
    assert done.returncode == 0, done.stdout + done.stderr
    for invoice_id in review:
        assert re.search(rf"│\s+{invoice_id} │\s+\d+ │ charged\s+│ ch_\w+\s+│ PAID", done.stdout)
    assert re.search(rf"│ paid\s+│\s+{len(review)} │", done.stdout)
    assert f"{len(review)} asked, 0 still in REVIEW" in done.stdout
    assert cli.query("SELECT count(*) FROM invoices WHERE status = 'REVIEW'")[0][0] == 0
    paid = cli.query("SELECT count(*) FROM invoices WHERE status = 'PAID'")[0][0]
    assert paid == paid_before + len(review)
    actors = cli.query("SELECT DISTINCT actor, action FROM invoice_actions")
    assert [tuple(a) for a in actors] == [("reconciler", "resolved_charged")]

    again = cli.run("reconcile")
    assert again.returncode == 0
    assert "nothing in REVIEW to reconcile" in again.stdout

    not_in_review = cli.run("reconcile", "--invoice", str(review[0]))
    assert not_in_review.returncode == 2
    assert f"invoice {review[0]} cannot be reconciled: it is PAID" in not_in_review.stderr
    missing = cli.run("reconcile", "--invoice", "999999")
    assert missing.returncode == 2
    assert "invoice 999999 does not exist" in missing.stderr
