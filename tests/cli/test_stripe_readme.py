"""The Stripe guide's (docs/guides/stripe.md) demo, end to end with real processes.

The fake Stripe (`antaeus provider serve --stripe`), `antaeus seed`, `antaeus serve`,
`antaeus provider stripe-link` and `antaeus bill`, as the guide runs them, on SQLite and
PostgreSQL: every outcome of the guide's table shows. Then reconciliation through Stripe:
answers lost at the fake end in REVIEW, and `antaeus reconcile` pays them with the
PaymentIntent's id, none charged twice.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from antaeus.cli.stripe_fake import LINK_CYCLE
from tests.cli.test_cli import TOKEN, Cli, _bearer, _describe, _free_port, serving

STRIPE_KEY = "sk_test_readme_0123456789"


@contextmanager
def fake_stripe(cwd: Path, *flags: str, name: str = "fake-stripe") -> Iterator[str]:
    """`antaeus provider serve --stripe --port <free> FLAGS`, answering; SIGTERM on exit."""
    port = _free_port()
    command = [sys.executable, "-m", "antaeus", "provider", "serve", "--stripe"]
    log = cwd / f"{name}.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [*command, "--port", str(port), *flags],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/_fake/stats", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the fake Stripe did not start: {log.read_text()}")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def due_invoices(cli: Cli) -> list[int]:
    rows = cli.query(
        "SELECT id FROM invoices WHERE status = 'PENDING' AND due_at <= CURRENT_TIMESTAMP"
    )
    return [r[0] for r in rows]


def statuses(cli: Cli, ids: list[int]) -> collections.Counter[tuple[str, str | None]]:
    rows = cli.query(
        f"SELECT status, last_failure FROM invoices WHERE id IN ({','.join(map(str, ids))})"
    )
    return collections.Counter((r[0], r[1]) for r in rows)


def stripe_cli(cli: Cli, base: str, **extra: str) -> Cli:
    """The guide's exports: the Stripe adapter pointed at the fake."""
    env = {
        **cli.env,
        "ANTAEUS_PAYMENT_PROVIDER": "stripe",
        "ANTAEUS_STRIPE_API_KEY": STRIPE_KEY,
        "ANTAEUS_STRIPE_API_BASE": base,
        **extra,
    }
    return Cli(cli.cwd, env, cli.database_url)


def payment_intents(base: str) -> list[dict[str, Any]]:
    """Every PaymentIntent the fake holds, every page of Stripe's list."""
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    with httpx.Client(base_url=base, headers=_bearer(STRIPE_KEY), timeout=30) as client:
        while True:
            page = client.get("/v1/payment_intents", params=params)
            page.raise_for_status()
            body = page.json()
            found += body["data"]
            if not body["has_more"]:
                return found
            params["starting_after"] = body["data"][-1]["id"]


def expected_outcome(customer_id: int) -> tuple[str, str | None]:
    """What billing a customer linked by stripe-link ends in: (status, lastFailure)."""
    kind, card = LINK_CYCLE[customer_id % len(LINK_CYCLE)]
    if kind != "card":
        return {
            "missing_customer": ("FAILED", "customer_not_found"),
            "foreign_card": ("FAILED", "provider_rejected"),
            "unlinked": ("FAILED", "payment_method_missing"),
        }[kind]
    return {
        "pm_card_visa": ("PAID", None),
        "pm_card_chargeDeclinedInsufficientFunds": ("PENDING", "insufficient_funds"),
        "pm_card_chargeDeclined": ("FAILED", "card_declined"),
        "pm_card_chargeDeclinedExpiredCard": ("FAILED", "card_declined"),
        "pm_card_authenticationRequired": ("FAILED", "authentication_required"),
    }[card]


def test_the_readme_bills_the_sample_data_through_the_fake_stripe(cli: Cli) -> None:
    with fake_stripe(cli.cwd) as base:
        stripe = stripe_cli(cli, base, ANTAEUS_SCHEDULE="external")
        stripe.ok("seed")
        due = {
            r[0]: r[1]
            for r in cli.query(
                "SELECT id, customer_id FROM invoices WHERE status = 'PENDING' "
                "AND due_at <= CURRENT_TIMESTAMP"
            )
        }
        assert len(due) == 100
        with serving(stripe) as server:
            token = TOKEN.search(server.stdout())
            assert token is not None, server.stdout()
            api = Cli(cli.cwd, {**stripe.env, "ANTAEUS_API_TOKEN": token.group()}, cli.database_url)
            linked = api.ok("provider", "stripe-link", "--url", server.base_url)
            assert "0 failed (100 customers;" in linked.stdout, _describe(linked)
            assert STRIPE_KEY not in linked.stdout + linked.stderr
            billed = api.ok("bill", "--url", server.base_url)
            assert "completed" in billed.stdout, _describe(billed)

            rows = {
                r[0]: (r[1], r[2])
                for r in cli.query(
                    f"SELECT id, status, last_failure FROM invoices "
                    f"WHERE id IN ({','.join(map(str, due))})"
                )
            }
            for invoice_id, customer_id in due.items():
                assert rows[invoice_id] == expected_outcome(customer_id), (invoice_id, customer_id)
            shown = collections.Counter(rows.values())
            assert set(shown) == {
                ("PAID", None),
                ("PENDING", "insufficient_funds"),
                ("FAILED", "card_declined"),
                ("FAILED", "authentication_required"),
                ("FAILED", "customer_not_found"),
                ("FAILED", "provider_rejected"),
                ("FAILED", "payment_method_missing"),
            }, shown

            with httpx.Client(
                base_url=server.base_url, headers=_bearer(token.group()), timeout=30
            ) as client:
                decline_codes = set()
                for invoice_id, status in rows.items():
                    if status != ("FAILED", "card_declined"):
                        continue
                    attempts = client.get(f"/rest/v1/invoices/{invoice_id}/attempts").json()
                    decline_codes.add(attempts[-1]["declineCode"])
                assert decline_codes == {"generic_decline", "expired_card"}
                # the PaymentIntent's id is the charge id of every PAID invoice
                intents = {pi["metadata"]["antaeus_invoice"]: pi for pi in payment_intents(base)}
                for invoice_id, status in rows.items():
                    if status[0] == "PAID":
                        attempts = client.get(f"/rest/v1/invoices/{invoice_id}/attempts").json()
                        pi = intents[str(invoice_id)]
                        assert pi["status"] == "succeeded"
                        assert attempts[-1]["chargeId"] == pi["id"]

                # payment_method_missing: no call was made; link the customer, retry, charged
                missing = next(i for i, s in rows.items() if s[1] == "payment_method_missing")
                assert str(missing) not in intents
                api.ok(
                    "provider", "stripe-link", "--url", server.base_url,
                    "--customer", str(due[missing]), "--all-succeed",
                )  # fmt: skip
                retried = client.post(f"/rest/v1/invoices/{missing}/retry")
                assert retried.status_code == 200, retried.text
                api.ok("bill", "--url", server.base_url)
                assert client.get(f"/rest/v1/invoices/{missing}").json()["status"] == "PAID"

        charged = collections.Counter(
            pi["metadata"]["antaeus_invoice"]
            for pi in payment_intents(base)
            if pi["status"] == "succeeded"
        )
        assert charged
        assert max(charged.values()) == 1  # nobody charged twice


def test_faults_at_the_fake_stripe_charge_every_card_once(cli: Cli) -> None:
    """The guide's fault rows: 5xx, lost answers and 429 are repeated with the same key."""
    state = cli.cwd / "stripe.json"
    with fake_stripe(cli.cwd, "--state", str(state), name="clean") as base:
        stripe = stripe_cli(cli, base, ANTAEUS_SCHEDULE="external")
        stripe.ok("seed")
        due = due_invoices(cli)
        with serving(stripe) as server:
            token = TOKEN.search(server.stdout())
            assert token is not None
            env = {**stripe.env, "ANTAEUS_API_TOKEN": token.group()}
            Cli(cli.cwd, env, cli.database_url).ok(
                "provider", "stripe-link", "--url", server.base_url, "--all-succeed"
            )
    faults = ("--network-error-rate", "0.2", "--ambiguous-rate", "0.1", "--rate-limit-rate", "0.2")
    with fake_stripe(cli.cwd, "--state", str(state), "--seed", "7", *faults) as base:
        stripe = stripe_cli(
            cli,
            base,
            ANTAEUS_BACKOFF_BASE_SECONDS="0.05",
            ANTAEUS_BACKOFF_MAX_SECONDS="0.2",
            ANTAEUS_RETRY_AFTER_MAX_SECONDS="2",
        )
        stripe.ok("bill")
        stats = httpx.get(f"{base}/_fake/stats").json()
    with fake_stripe(cli.cwd, "--state", str(state), name="after") as base:
        intents = payment_intents(base)
    for counter in ("server_errors", "lost_answers", "rate_limited", "replayed"):
        assert stats.get(counter, 0) > 0, (counter, stats)
    shown = statuses(cli, due)
    assert shown == {("PAID", None): 100}, shown
    charged = collections.Counter(
        pi["metadata"]["antaeus_invoice"] for pi in intents if pi["status"] == "succeeded"
    )
    assert len(charged) == 100
    assert set(charged.values()) == {1}, charged.most_common(3)
    held = {
        r[0]: r[1]
        for r in cli.query(
            "SELECT invoice_id, charge_id FROM charge_attempts WHERE charge_id IS NOT NULL"
        )
    }
    by_invoice = {pi["metadata"]["antaeus_invoice"]: pi["id"] for pi in intents}
    assert sorted(held.values()) == sorted(by_invoice.values())


def test_lost_answers_end_in_review_and_reconcile_pays_them_once(cli: Cli) -> None:
    """Every answer lost and the key's repeats out of time: REVIEW; then `antaeus reconcile`
    lists the customer's PaymentIntents (by its providerCustomerId) and pays each."""
    state = cli.cwd / "stripe.json"
    with fake_stripe(cli.cwd, "--state", str(state), name="clean") as base:
        stripe = stripe_cli(cli, base, ANTAEUS_SCHEDULE="external")
        stripe.ok("seed")
        due = due_invoices(cli)
        with serving(stripe) as server:
            token = TOKEN.search(server.stdout())
            assert token is not None
            env = {**stripe.env, "ANTAEUS_API_TOKEN": token.group()}
            Cli(cli.cwd, env, cli.database_url).ok(
                "provider", "stripe-link", "--url", server.base_url, "--all-succeed"
            )
    # a retention of 60 s with a margin of 59 s: an attempt may be repeated for 1 s only, and
    # the first repeat would come 2 s later (a lost answer's replay would reveal the charge)
    trap = {
        "ANTAEUS_PROVIDER_KEY_RETENTION": "60",
        "ANTAEUS_KEY_RETENTION_MARGIN": "59",
        "ANTAEUS_PAYMENT_PROVIDER_TIMEOUT": "2",
        "ANTAEUS_RETRY_AFTER_MAX_SECONDS": "0",
        "ANTAEUS_LEASE_SECONDS": "5",
        "ANTAEUS_BACKOFF_BASE_SECONDS": "2",
        "ANTAEUS_BACKOFF_MAX_SECONDS": "4",
    }
    with fake_stripe(cli.cwd, "--state", str(state), "--ambiguous-rate", "1", name="lossy") as b:
        stripe_cli(cli, b, **trap).ok("bill")
    shown = statuses(cli, due)
    assert shown == {("REVIEW", "unknown_outcome"): 100}, shown
    review = due

    with fake_stripe(cli.cwd, "--state", str(state), name="after") as base:
        before = payment_intents(base)
        done = stripe_cli(cli, base, **trap).run("reconcile")
        assert done.returncode == 0, _describe(done)
        assert f"{len(review)} asked, 0 still in REVIEW" in done.stdout, done.stdout
        after = payment_intents(base)
        stats = httpx.get(f"{base}/_fake/stats").json()
    assert len(after) == len(before) == 100  # reconciling creates nothing
    assert stats["lists"] >= 100  # one list per customer, by its cus_…
    by_invoice = {pi["metadata"]["antaeus_invoice"]: pi for pi in after}
    assert len(by_invoice) == 100  # one PaymentIntent per invoice: none charged twice
    rows = cli.query(
        "SELECT i.id, i.status, a.charge_id FROM invoices i JOIN charge_attempts a "
        "ON a.invoice_id = i.id WHERE a.charge_id IS NOT NULL"
    )
    assert len(rows) == 100
    for invoice_id, status, charge_id in rows:
        assert status == "PAID"
        assert charge_id == by_invoice[str(invoice_id)]["id"]
        assert by_invoice[str(invoice_id)]["status"] == "succeeded"
    actors = cli.query("SELECT DISTINCT actor, action FROM invoice_actions")
    assert [tuple(a) for a in actors] == [("reconciler", "resolved_charged")]
