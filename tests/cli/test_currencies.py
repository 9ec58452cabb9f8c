"""`antaeus bill` in JPY and KWD: created over REST, billed, listed with their decimals."""

from __future__ import annotations

import re

import httpx

from tests.cli.test_cli import Cli, serving


def test_bill_shows_and_lists_each_currency_with_its_decimals(cli: Cli) -> None:
    cli.env["ANTAEUS_SCHEDULE"] = "external"  # nothing is charged until the trigger
    cli.env["ANTAEUS_SIMULATED_FAILURE_RATE"] = "0"
    token = cli.ok("token", "create", "--name", "cron").stdout.strip()
    amounts = [("JPY", "1234567", "1234567"), ("KWD", "12.5", "12.500"), ("EUR", "7", "7.00")]
    with serving(cli) as server:
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.base_url, headers=auth, timeout=10) as api:
            for code, sent, _ in amounts:
                customer = api.post("/rest/v1/customers", json={"currency": code})
                assert customer.status_code == 201, customer.text
                invoice = api.post(
                    "/rest/v1/invoices",
                    json={
                        "customerId": customer.json()["id"],
                        "amount": {"value": sent, "currency": code},
                        "dueAt": "2020-01-01T00:00:00Z",
                    },
                )
                assert invoice.status_code == 201, invoice.text
            done = cli.ok("bill", "--url", server.base_url, "--token", token)
            assert re.search(r"collected JPY\s+│\s+1,234,567 │", done.stdout), done.stdout
            assert re.search(r"collected KWD\s+│\s+12\.500 │", done.stdout), done.stdout
            assert re.search(r"collected EUR\s+│\s+7\.00 │", done.stdout), done.stdout
            listed = api.get("/rest/v1/invoices?status=PAID")
            for code, _, written in amounts:
                assert f'"amount":{{"value":{written},"currency":"{code}"}}' in listed.text
    assert dict(cli.query("SELECT currency, amount_minor FROM invoices")) == {
        "JPY": 1234567,
        "KWD": 12500,
        "EUR": 700,
    }
