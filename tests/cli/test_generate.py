"""`antaeus generate` and the subscriptions `antaeus seed` makes (issue 21), end to end."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from tests.cli.test_cli import Cli, _describe


def _amounts(stdout: str) -> dict[str, Decimal]:
    return {
        code: Decimal(value.replace(",", ""))
        for code, value in re.findall(r"^  ([A-Z]{3}) ([\d,]+\.\d+)$", stdout, re.MULTILINE)
    }


def test_generate_bills_every_due_subscription_once_then_nothing(cli: Cli) -> None:
    seeded = cli.ok(
        "seed", "--seed", "3", "--customers", "30", "--invoices-per-customer", "0",
        "--subscriptions-per-customer", "2",
    )  # fmt: skip
    assert "60 subscriptions" in seeded.stdout, _describe(seeded)
    assert cli.query("SELECT count(*) FROM invoices") == [(0,)]  # seeding generates nothing

    done = cli.ok("generate")
    # one invoice per customer (its two subscriptions start together), two lines each
    assert "generated 30 invoices for 60 periods (0 of total 0" in done.stdout, _describe(done)
    stored = {
        code: Decimal(total) / 100
        for code, total in cli.query(
            "SELECT currency, sum(amount_minor) FROM invoices GROUP BY currency"
        )
    }
    assert _amounts(done.stdout) == stored
    assert cli.query("SELECT count(*) FROM invoices WHERE status = 'PENDING'") == [(30,)]
    lines = cli.query(
        "SELECT subscription_id, count(*) FROM invoice_lines WHERE kind = 'subscription' "
        "GROUP BY subscription_id"
    )
    assert len(lines) == 60
    assert {n for _, n in lines} == {1}
    [(events,)] = cli.query("SELECT count(*) FROM events WHERE type = 'invoice.created'")
    assert events == 30

    again = cli.ok("generate")
    assert "nothing due: no invoice generated" in again.stdout, _describe(again)
    assert cli.query("SELECT count(*) FROM invoices") == [(30,)]


def test_bulk_seed_spreads_customers_over_20_zones_all_due_today_there(cli: Cli) -> None:
    before = datetime.now(UTC)
    cli.ok(
        "seed", "--seed", "4", "--customers", "40", "--invoices-per-customer", "0",
        "--subscriptions-per-customer", "3",
    )  # fmt: skip
    after = datetime.now(UTC)
    zones = Counter(z for (z,) in cli.query("SELECT timezone FROM customers"))
    assert len(zones) == 20
    assert set(zones.values()) == {2}
    assert {"Pacific/Kiritimati", "Pacific/Pago_Pago"} <= set(zones)
    rows = cli.query(
        "SELECT c.timezone, s.start_date, s.next_due_at, s.billing_anchor, s.trial_end_date, "
        "s.trial_notice_on, s.quantity, p.interval, p.interval_count "
        "FROM subscriptions s JOIN customers c ON c.id = s.customer_id "
        "JOIN plans p ON p.id = s.plan_id"
    )
    assert len(rows) == 120
    for zone, start, due, anchor, trial_end, notice, quantity, interval, count in rows:
        tz = ZoneInfo(zone)
        start = date.fromisoformat(str(start))
        # today in the customer's zone (the seed ran between `before` and `after`)
        assert before.astimezone(tz).date() <= start <= after.astimezone(tz).date()
        due_at = due if isinstance(due, datetime) else datetime.fromisoformat(str(due))
        due_at = due_at.replace(tzinfo=UTC) if due_at.tzinfo is None else due_at
        local = due_at.astimezone(tz)
        assert (local.date(), local.hour, local.minute) == (start, 0, 0)
        assert due_at <= after
        assert (anchor, trial_end, notice, quantity) == ("calendar", None, None, 1)
        assert (interval, count) == ("month", 1)
    # plan j for the j-th subscription of each customer, one set per currency used
    per_customer = cli.query(
        "SELECT customer_id, count(DISTINCT plan_id) FROM subscriptions GROUP BY customer_id"
    )
    assert {n for _, n in per_customer} == {3}

    done = cli.ok("generate")
    assert "generated 40 invoices for 120 periods" in done.stdout, _describe(done)


def test_the_sample_seed_shows_generated_invoices_beside_the_original_ones(cli: Cli) -> None:
    cli.ok("seed", "--seed", "7")
    subs = cli.query(
        "SELECT s.billing_anchor, s.quantity, s.trial_end_date IS NOT NULL, p.interval "
        "FROM subscriptions s JOIN plans p ON p.id = s.plan_id ORDER BY s.id"
    )
    anchors = {a for a, *_ in subs}
    assert anchors == {"calendar", "anniversary"}
    assert any(q > 1 for _, q, _, _ in subs)
    assert any(trial for _, _, trial, _ in subs)
    generated = cli.query(
        "SELECT i.id, i.status, i.amount_minor, l.kind, l.amount_minor FROM invoices i "
        "JOIN invoice_lines l ON l.invoice_id = i.id WHERE i.id IN "
        "(SELECT invoice_id FROM invoice_lines WHERE kind <> 'manual') ORDER BY i.id, l.id"
    )
    invoices = {row[0] for row in generated}
    assert len(invoices) == 6  # the 1,000 seeded invoices have their one manual line each
    # each paid by the customer's credit: subscription lines, then a balance line
    for invoice_id in invoices:
        lines = [(kind, amount) for i, _, _, kind, amount in generated if i == invoice_id]
        assert lines[-1][0] == "balance"
        assert sum(amount for _, amount in lines) == 0
        assert {s for i, s, *_ in generated if i == invoice_id} == {"PAID"}
    # one invoice with two subscriptions' lines (consolidated)
    kinds = Counter(i for i, _, _, kind, _ in generated if kind == "subscription")
    assert sorted(kinds.values()) == [1, 1, 1, 1, 1, 2]
    # the original 100 invoices are still the ones due
    assert cli.query("SELECT count(*) FROM invoices WHERE status = 'PENDING' AND id <= 1000") == [
        (100,)
    ]
    assert cli.ok("generate").stdout.startswith("nothing due")
