"""`antaeus audit --provider-ledger FILE`: the provider's charges against the database.

The database is billed by the real Worker (a scripted provider); the ledger is
what that provider charged, then changed to plant each kind of disagreement.
The command runs in-process (typer's CliRunner) on SQLite and PostgreSQL, and,
at the end, as a subprocess against the real simulator's `GET /admin/ledger`.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result
from typer.testing import CliRunner

from antaeus.billing import audit as audit_module
from antaeus.billing.service import open_run
from antaeus.billing.worker import Worker, WorkerSettings
from antaeus.cli.main import app
from antaeus.clock import ManualClock
from antaeus.config import get_settings
from antaeus.domain.policy import PolicySettings
from antaeus.payments.provider import Charged, ChargeRequest, Declined, KeyReusedError
from antaeus.storage import migrate
from antaeus.storage.database import Database
from antaeus.storage.repositories.installation import InstallationRepository
from tests.billing.fakes import ScriptedProvider
from tests.billing.helpers import invoice_row, make_invoices
from tests.cli.test_cli import Cli
from tests.conftest import NOW, _empty_tables
from tests.payments.simulator import running_simulator

PAID_COUNT = 6  # invoices the worker charges; then one declined, one in REVIEW


@dataclass
class Billed:
    url: str
    installation: str
    paid: list[int]
    declined: int
    review: int
    ledger: list[dict[str, Any]]  # what the provider charged, as GET /admin/ledger lists it


def _charge(request: ChargeRequest) -> Charged:
    return Charged(f"ch_{request.invoice_id}")


async def _bill(url: str) -> Billed:
    db = Database(url)
    try:
        if db.is_sqlite:
            await migrate.upgrade(db)
        else:
            await _empty_tables(db)
        clock = ManualClock(NOW)
        ids = await make_invoices(db, PAID_COUNT + 2, NOW - timedelta(minutes=1))
        paid, (declined, review) = ids[:PAID_COUNT], ids[PAID_COUNT:]
        provider = ScriptedProvider(
            scripts={declined: [Declined()], review: [KeyReusedError()]}, default=_charge
        )
        await open_run(db, clock, PolicySettings(), "api")
        worker = Worker(
            db,
            provider,
            clock,
            PolicySettings(),
            WorkerSettings(batch_size=50, concurrency=10, retry_after_max=1.0),
        )
        await worker.run_until_idle()
        assert (await invoice_row(db, declined)).status == "PENDING"
        assert (await invoice_row(db, review)).status == "REVIEW"
        async with db.read() as conn:
            installation = await InstallationRepository(conn).installation_id()
    finally:
        await db.dispose()
    ledger = [
        {
            "chargeId": f"ch_{call.invoice_id}",
            "idempotencyKey": call.idempotency_key,
            "invoiceId": call.invoice_id,
            "customerId": call.customer_id,
            "value": f"{call.amount.value:f}",
            "currency": call.amount.currency.value,
        }
        for call in provider.calls
        if call.invoice_id in paid
    ]
    return Billed(url, installation, paid, declined, review, ledger)


@pytest.fixture(autouse=True)
def _no_logging_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command would send structlog to CliRunner's stderr, closed after each call."""
    monkeypatch.setattr("antaeus.cli.common.configure_logging", lambda *_args: None)


@pytest.fixture
def billed(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Billed]:
    monkeypatch.chdir(tmp_path)  # no .env of the repository
    monkeypatch.setenv("ANTAEUS_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield asyncio.run(_bill(database_url))
    get_settings.cache_clear()


def audit(tmp_path: Path, ledger: str | bytes, *args: str, name: str = "ledger.json") -> Result:
    path = tmp_path / name
    if isinstance(ledger, str):
        path.write_text(ledger)
    else:
        path.write_bytes(ledger)
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["audit", "--provider-ledger", str(path), *args])
    get_settings.cache_clear()
    return result


def as_json(charges: list[dict[str, Any]]) -> str:
    return json.dumps({"charges": charges})


def as_csv(charges: list[dict[str, Any]]) -> str:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["chargeId", "idempotencyKey", "value", "currency"])
    for c in charges:
        writer.writerow([c["chargeId"], c["idempotencyKey"], c["value"], c["currency"]])
    return text.getvalue()


def report(result: Result) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def failing(doc: dict[str, Any]) -> dict[str, int]:
    """The kinds with findings (informational ones included)."""
    return {kind: n for kind, n in doc["counts"].items() if n}


def test_the_providers_own_ledger_agrees(billed: Billed, tmp_path: Path) -> None:
    done = audit(tmp_path, as_json(billed.ledger))
    assert done.exit_code == 0, done.output
    assert "all agree" in done.stdout
    assert f"{PAID_COUNT} ledger charges, {PAID_COUNT + 2} invoices checked" in done.stdout
    doc = report(audit(tmp_path, as_json(billed.ledger), "--json"))
    assert doc["agree"] is True
    assert doc["ledgerCharges"] == PAID_COUNT
    assert failing(doc) == {}


def test_a_charge_of_an_invoice_in_review_is_listed_but_does_not_fail(
    billed: Billed, tmp_path: Path
) -> None:
    charge = {
        **billed.ledger[0],
        "chargeId": "ch_review",
        "idempotencyKey": f"{billed.installation}:{billed.review}:1",
        "invoiceId": billed.review,
        "value": "17.50",  # make_invoices: 10.50 + index
    }
    done = audit(tmp_path, as_json([*billed.ledger, charge]))
    assert done.exit_code == 0, done.output
    assert "needs resolve: charged" in done.stdout
    assert f"invoice {billed.review} [ch_review]" in done.stdout
    doc = report(audit(tmp_path, as_json([*billed.ledger, charge]), "--json"))
    assert failing(doc) == {"needs_resolve_charged": 1}
    assert doc["agree"] is True


def test_every_planted_disagreement_is_found(
    billed: Billed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_module, "PAGE", 3)  # several pages of invoices
    by_invoice = {c["invoiceId"]: c for c in billed.ledger}
    p = billed.paid
    ledger = [by_invoice[i] for i in p if i != p[1]]  # PAID p[1] lost its charge
    ledger += [
        # p[0] charged again under the same key (the provider forgot it)
        {**by_invoice[p[0]], "chargeId": "ch_again"},
        # the declined invoice was charged after all
        {
            **by_invoice[p[0]],
            "chargeId": "ch_declined",
            "idempotencyKey": f"{billed.installation}:{billed.declined}:1",
            "invoiceId": billed.declined,
            "value": "16.50",  # make_invoices: 10.50 + index
        },
        # another installation's charge, and a key Antaeus never makes
        {**by_invoice[p[5]], "chargeId": "ch_other", "idempotencyKey": f"0123abcd:{p[5]}:1"},
        {**by_invoice[p[5]], "chargeId": "ch_manual", "idempotencyKey": "manual-42"},
    ]
    changed = {
        p[2]: {"value": "999.99"},  # amount differs
        p[3]: {"currency": "SEK"},  # currency differs
        p[4]: {"chargeId": "ch_forged"},  # not the charge the attempt recorded
    }
    ledger = [{**c, **changed.get(c["invoiceId"], {})} for c in ledger]

    done = audit(tmp_path, as_json(ledger))
    assert done.exit_code == 1, done.output
    assert "9 disagreements" in done.stdout, done.stdout
    assert f"invoice {p[0]} [ch_{p[0]}, ch_again]: 2 charges" in done.stdout

    doc = report(audit(tmp_path, as_json(ledger), "--json"))
    assert doc["agree"] is False
    assert failing(doc) == {
        "charged_twice": 1,
        "charge_without_paid_invoice": 1,
        "paid_without_charge": 1,
        "amount_differs": 1,
        "currency_differs": 1,
        "foreign_key": 2,
        "charge_id_differs": 2,  # p[4], and p[0]'s second charge under the recorded key
    }
    found = {(f["kind"], f["invoiceId"]) for f in doc["findings"]}
    assert {
        ("charged_twice", p[0]),
        ("charge_id_differs", p[0]),
        ("paid_without_charge", p[1]),
        ("amount_differs", p[2]),
        ("currency_differs", p[3]),
        ("charge_id_differs", p[4]),
        ("charge_without_paid_invoice", billed.declined),
    } <= found
    details = " ".join(f["detail"] for f in doc["findings"])
    assert "installation '0123abcd'" in details
    assert "'manual-42': not an Antaeus key" in details
    assert "invoice 12.50 EUR, charged 999.99 EUR" in details
    assert "invoice 13.50 EUR, charged 13.50 SEK" in details


def test_a_charge_for_an_invoice_or_attempt_the_database_lacks(
    billed: Billed, tmp_path: Path
) -> None:
    base = billed.ledger[0]
    ledger = [
        *billed.ledger,
        {**base, "chargeId": "ch_x", "idempotencyKey": f"{billed.installation}:999999:1"},
        {
            **base,
            "chargeId": "ch_y",
            "idempotencyKey": f"{billed.installation}:{base['invoiceId']}:7",
        },
    ]
    for charge in ledger[-2:]:
        charge["invoiceId"] = int(charge["idempotencyKey"].split(":")[1])
    doc = report(audit(tmp_path, as_json(ledger), "--json"))
    assert failing(doc) == {"foreign_key": 2, "charged_twice": 1}
    details = " ".join(f["detail"] for f in doc["findings"])
    assert "no invoice 999999 in this database" in details
    assert f"no such attempt of invoice {base['invoiceId']}" in details


def test_csv_ledger_takes_the_invoice_from_the_key(billed: Billed, tmp_path: Path) -> None:
    done = audit(tmp_path, as_csv(billed.ledger), name="ledger.csv")
    assert done.exit_code == 0, done.output
    assert "all agree" in done.stdout
    twice = [*billed.ledger, {**billed.ledger[0], "chargeId": "ch_again"}]
    doc = report(audit(tmp_path, as_csv(twice), "--json", name="ledger.csv"))
    assert doc["counts"]["charged_twice"] == 1
    assert doc["findings"][0]["invoiceId"] == billed.ledger[0]["invoiceId"]
    # extra columns, in any order, are fine; a BOM too
    text = "\ufeffcurrency,value,note,idempotencyKey,chargeId\n" + "".join(
        f"{c['currency']},{c['value']},x,{c['idempotencyKey']},{c['chargeId']}\n"
        for c in billed.ledger
    )
    assert audit(tmp_path, text, name="ledger.csv").exit_code == 0


def test_json_numbers_are_exact(billed: Billed, tmp_path: Path) -> None:
    text = as_json(billed.ledger)
    for c in billed.ledger:  # "11.50" -> 11.50, a JSON number read as a Decimal
        text = text.replace(f'"value": "{c["value"]}"', f'"value": {c["value"]}')
    assert '"value": "' not in text
    done = audit(tmp_path, text)
    assert done.exit_code == 0, done.output


def test_json_invoice_id_may_be_left_out(billed: Billed, tmp_path: Path) -> None:
    ledger = [{k: v for k, v in c.items() if k != "invoiceId"} for c in billed.ledger]
    assert audit(tmp_path, as_json(ledger)).exit_code == 0
    lying = [{**billed.ledger[0], "invoiceId": billed.review}, *billed.ledger[1:]]
    doc = report(audit(tmp_path, as_json(lying), "--json"))
    assert failing(doc) == {"foreign_key": 1, "paid_without_charge": 1}
    [foreign] = [f for f in doc["findings"] if f["kind"] == "foreign_key"]
    keyed = billed.ledger[0]["invoiceId"]
    assert f"the ledger says invoice {billed.review}, the key {keyed}" in foreign["detail"]


def test_show_limits_the_listing_not_the_counts(billed: Billed, tmp_path: Path) -> None:
    doc = report(audit(tmp_path, as_json([]), "--json", "--show", "2"))
    assert doc["counts"]["paid_without_charge"] == PAID_COUNT
    assert len(doc["findings"]) == 2
    done = audit(tmp_path, as_json([]), "--show", "2")
    assert done.exit_code == 1
    assert f"PAID invoice with no charge: {PAID_COUNT}, first 2 shown" in done.stdout


BAD = [
    ("hello\n", "neither JSON"),
    ("", "neither JSON"),
    ('{"charges": [', "not valid JSON"),
    ("[]", 'must be an object {"charges": [...]}'),
    (
        '{"charges": [{"chargeId": "c", "idempotencyKey": "k", "value": "1.00"}]}',
        "charges[0]: no currency",
    ),
    (
        '{"charges": [{"chargeId": "c", "idempotencyKey": "k", '
        '"value": 1.005, "currency": "EUR"}]}',
        "charges[0].value: amount must have at most two decimals",
    ),
    (
        '{"charges": [{"chargeId": "c", "idempotencyKey": "k", '
        '"value": "1.00", "currency": "XXX"}]}',
        "charges[0].currency: unknown currency 'XXX'",
    ),
    (
        '{"charges": [{"chargeId": "c", "idempotencyKey": "k", "value": NaN, "currency": "EUR"}]}',
        "not valid JSON",
    ),
    (
        '{"charges": [{"chargeId": "", "idempotencyKey": "k", "value": "1", "currency": "EUR"}]}',
        "charges[0].chargeId: expected a non-empty string",
    ),
    (
        '{"charges": [{"chargeId": "c", "idempotencyKey": "k", "invoiceId": "7", '
        '"value": "1", "currency": "EUR"}]}',
        "charges[0].invoiceId: expected a positive integer",
    ),
    ("chargeId,idempotencyKey,value\nc,k,1.00\n", "line 1: the CSV header has no column currency"),
    (
        "chargeId,idempotencyKey,value,currency\nc,k,1.00,EUR\nd,k,ten,EUR\n",
        "line 3, column value: amount 'ten' is not a decimal number",
    ),
    ("chargeId,idempotencyKey,value,currency\nc,k,1.00\n", "line 2, column currency: missing"),
    ("chargeId,idempotencyKey,value,currency\nc,k,1.00,eur\n", "line 2, column currency"),
    ('chargeId,idempotencyKey,value,currency\nc,"k,1.00,EUR\n', "line"),
    (b"\xff\xfe{}", "not UTF-8 text"),
]


@pytest.mark.parametrize(("ledger", "message"), BAD)
def test_bad_ledger_is_one_line_and_exit_2(
    ledger: str | bytes, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    done = audit(tmp_path, ledger)
    assert done.exit_code == 2, done.output
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in done.output


def test_missing_file_and_unmigrated_database_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANTAEUS_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    get_settings.cache_clear()
    done = CliRunner().invoke(app, ["audit", "--provider-ledger", str(tmp_path / "nope.json")])
    assert done.exit_code == 2
    assert "cannot read" in done.stderr
    done = audit(tmp_path, '{"charges": []}')
    assert done.exit_code == 2
    assert "antaeus db upgrade" in done.stderr
    monkeypatch.setenv("ANTAEUS_DATABASE_URL", "mysql://nowhere/db")
    done = audit(tmp_path, '{"charges": []}')
    assert done.exit_code == 2
    assert "invalid configuration" in done.stderr


def test_a_database_failing_mid_audit_is_one_line_and_exit_2(
    billed: Billed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: object) -> None:
        raise ConnectionResetError("connection lost")

    monkeypatch.setattr("antaeus.storage.repositories.audit.AuditRepository.invoices_after", broken)
    done = audit(tmp_path, as_json(billed.ledger))
    assert done.exit_code == 2, done.output
    assert done.stderr.strip() == (
        "error: the audit could not finish: ConnectionResetError: connection lost"
    )


def test_against_the_real_simulators_ledger(cli: Cli) -> None:
    """Billed through `antaeus provider serve`; its GET /admin/ledger, as is, agrees."""
    cli.ok("seed", "--seed", "7", "--customers", "12", "--invoices-per-customer", "2")
    with running_simulator() as sim:
        cli.env["ANTAEUS_PAYMENT_PROVIDER_URL"] = sim
        cli.ok("bill")
        ledger = httpx.get(f"{sim}/admin/ledger", timeout=10).json()
    assert len(ledger["charges"]) == 12
    path = cli.cwd / "ledger.json"
    path.write_text(json.dumps(ledger))
    done = cli.ok("audit", "--provider-ledger", str(path))
    assert "12 ledger charges, 24 invoices checked: all agree" in done.stdout
    assert "12 PAID invoices have no attempt" in done.stdout  # seeded as paid
    twice = ledger["charges"][0]
    ledger["charges"].append({**twice, "chargeId": "ch_twice"})
    path.write_text(json.dumps(ledger))
    done = cli.run("audit", "--provider-ledger", str(path), "--json")
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    assert doc["counts"]["charged_twice"] == 1
    assert doc["counts"]["charge_id_differs"] == 1
