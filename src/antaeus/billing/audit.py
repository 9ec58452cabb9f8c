"""Proving nothing was charged twice: the provider's ledger against Antaeus's attempts.

`parse_ledger` reads the provider's charges (the simulator's `GET /admin/ledger`
JSON, or a CSV export); `audit` walks every invoice of the database in pages of
`PAGE` by id, with its attempts, and reports what disagrees. Only the ledger is
held in memory (keyed by invoice id); the database is never loaded whole.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from antaeus.domain.invoice import InvoiceStatus
from antaeus.domain.money import Currency, Money, MoneyError, parse_amount, parse_currency
from antaeus.storage.database import Database
from antaeus.storage.repositories.audit import AuditRepository
from antaeus.storage.repositories.installation import InstallationRepository

#: Invoices read per query (their attempts come in one more query).
PAGE: Final = 5_000

CSV_COLUMNS: Final = ("chargeId", "idempotencyKey", "value", "currency")
#: an optional column (and JSON field): the customer at the provider that was charged
CUSTOMER_COLUMN: Final = "providerCustomerId"


class LedgerError(ValueError):
    """A ledger file that cannot be read; the message names the row and field."""


@dataclass(frozen=True, slots=True)
class LedgerCharge:
    where: str  # "charges[3]" or "line 4", for messages
    charge_id: str
    idempotency_key: str
    invoice_id: int | None  # as the ledger says (JSON); None in a CSV
    amount: Money
    provider_customer_id: str | None = None  # the customer charged, when the ledger says


@dataclass(frozen=True, slots=True)
class Kind:
    code: str
    title: str
    fails: bool


CHARGED_TWICE: Final = Kind("charged_twice", "invoice charged more than once", True)
CHARGE_NOT_PAID: Final = Kind("charge_without_paid_invoice", "charge with no PAID invoice", True)
PAID_NO_CHARGE: Final = Kind("paid_without_charge", "PAID invoice with no charge", True)
AMOUNT_DIFFERS: Final = Kind("amount_differs", "amount differs", True)
CURRENCY_DIFFERS: Final = Kind("currency_differs", "currency differs", True)
FOREIGN_KEY: Final = Kind("foreign_key", "charge with a key not from this database", True)
CHARGE_ID_DIFFERS: Final = Kind(
    "charge_id_differs", "charge id differs from the attempt's recorded one", True
)
CUSTOMER_DIFFERS: Final = Kind(
    "customer_differs", "charged another provider customer than the attempt was sent to", True
)
NEEDS_RESOLVE: Final = Kind(
    "needs_resolve_charged", "needs resolve: charged (REVIEW invoice with a charge)", False
)
KINDS: Final = (
    CHARGED_TWICE,
    CHARGE_NOT_PAID,
    PAID_NO_CHARGE,
    AMOUNT_DIFFERS,
    CURRENCY_DIFFERS,
    FOREIGN_KEY,
    CHARGE_ID_DIFFERS,
    CUSTOMER_DIFFERS,
    NEEDS_RESOLVE,
)


@dataclass(frozen=True, slots=True)
class Finding:
    kind: Kind
    invoice_id: int | None
    detail: str
    charge_ids: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.code,
            "invoiceId": self.invoice_id,
            "chargeIds": list(self.charge_ids),
            "detail": self.detail,
        }


@dataclass
class AuditReport:
    """Counts of every kind, and the first `show` findings of each (all when 0)."""

    show: int
    charges: int = 0
    invoices: int = 0
    paid_without_attempts: int = 0
    counts: dict[Kind, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    findings: dict[Kind, list[Finding]] = field(default_factory=lambda: {k: [] for k in KINDS})

    def add(self, finding: Finding) -> None:
        self.counts[finding.kind] += 1
        kept = self.findings[finding.kind]
        if self.show == 0 or len(kept) < self.show:
            kept.append(finding)

    @property
    def disagreements(self) -> int:
        return sum(n for kind, n in self.counts.items() if kind.fails)

    def as_json(self) -> dict[str, Any]:
        return {
            "agree": self.disagreements == 0,
            "disagreements": self.disagreements,
            "ledgerCharges": self.charges,
            "invoicesChecked": self.invoices,
            "paidWithoutAttempts": self.paid_without_attempts,
            "counts": {k.code: self.counts[k] for k in KINDS},
            "findings": [f.as_json() for k in KINDS for f in self.findings[k]],
        }


# --- reading the ledger ---------------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON value")


def _at(where: str, name: str) -> str:
    """Where a field is: `charges[3].value` (JSON) or `line 4, column value` (CSV)."""
    return f"{where}, column {name}" if where.startswith("line") else f"{where}.{name}"


def _money(where: str, value: object, currency: object) -> Money:
    if not isinstance(currency, str):
        raise LedgerError(
            f"{_at(where, 'currency')}: expected a currency code, got {currency!r:.40}"
        )
    try:
        cur = parse_currency(currency)
    except MoneyError as exc:
        raise LedgerError(f"{_at(where, 'currency')}: {exc}") from None
    try:
        return Money(parse_amount(value, cur), cur)
    except MoneyError as exc:
        raise LedgerError(f"{_at(where, 'value')}: {exc}") from None


def _text(where: str, name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise LedgerError(f"{_at(where, name)}: expected a non-empty string, got {value!r:.40}")
    return value


def _json_charges(text: str) -> list[LedgerCharge]:
    try:
        doc = json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise LedgerError(f"the ledger is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("charges"), list):
        raise LedgerError('the JSON ledger must be an object {"charges": [...]}')
    charges = []
    for i, item in enumerate(doc["charges"]):
        where = f"charges[{i}]"
        if not isinstance(item, dict):
            raise LedgerError(f"{where}: expected an object")
        for name in ("chargeId", "idempotencyKey", "value", "currency"):
            if name not in item:
                raise LedgerError(f"{where}: no {name}")
        invoice_id = item.get("invoiceId")
        if invoice_id is not None and (type(invoice_id) is not int or invoice_id <= 0):
            raise LedgerError(f"{_at(where, 'invoiceId')}: expected a positive integer")
        customer = item.get(CUSTOMER_COLUMN)
        charges.append(
            LedgerCharge(
                where,
                _text(where, "chargeId", item["chargeId"]),
                _text(where, "idempotencyKey", item["idempotencyKey"]),
                invoice_id,
                _money(where, item["value"], item["currency"]),
                None if customer is None else _text(where, CUSTOMER_COLUMN, customer),
            )
        )
    return charges


def _csv_charges(text: str) -> list[LedgerCharge]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [name.strip() for name in next(reader, [])]
        missing = [c for c in CSV_COLUMNS if c not in header]
        if len(missing) == len(CSV_COLUMNS):
            raise LedgerError(
                'the ledger is neither JSON {"charges": [...]} nor CSV with the header '
                + ",".join(CSV_COLUMNS)
            )
        if missing:
            raise LedgerError(f"line 1: the CSV header has no column {', '.join(missing)}")
        at = {name: header.index(name) for name in CSV_COLUMNS}
        if CUSTOMER_COLUMN in header:
            at[CUSTOMER_COLUMN] = header.index(CUSTOMER_COLUMN)
        charges = []
        for row in reader:
            if not row or row == [""]:
                continue
            where = f"line {reader.line_num}"
            fields = {}
            for name, index in at.items():
                if index >= len(row):
                    raise LedgerError(
                        f"{_at(where, name)}: missing (the row has {len(row)} fields)"
                    )
                fields[name] = row[index].strip()
            charges.append(
                LedgerCharge(
                    where,
                    _text(where, "chargeId", fields["chargeId"]),
                    _text(where, "idempotencyKey", fields["idempotencyKey"]),
                    None,
                    _money(where, fields["value"], fields["currency"]),
                    fields.get(CUSTOMER_COLUMN) or None,
                )
            )
    except csv.Error as exc:
        raise LedgerError(f"line {reader.line_num}: not valid CSV: {exc}") from None
    return charges


def parse_ledger(data: bytes) -> list[LedgerCharge]:
    """The charges of a ledger file: JSON `{"charges": [...]}` or CSV with `CSV_COLUMNS`."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LedgerError(f"the ledger is not UTF-8 text (byte {exc.start})") from None
    if text.lstrip().startswith(("{", "[")):
        return _json_charges(text)
    return _csv_charges(text)


def parse_key(key: str) -> tuple[str, int, int] | None:
    """`<installation id>:<invoice id>:<attempt number>`, or None for any other key."""
    parts = key.rsplit(":", 2)
    if len(parts) != 3 or not parts[0]:
        return None
    installation, invoice, attempt = parts
    if not (invoice.isascii() and invoice.isdigit() and attempt.isascii() and attempt.isdigit()):
        return None
    return installation, int(invoice), int(attempt)


# --- comparing ------------------------------------------------------------------------


def _by_invoice(
    charges: Iterable[LedgerCharge], installation_id: str, report: AuditReport
) -> dict[int, list[LedgerCharge]]:
    """This installation's charges by invoice; the others are findings at once."""
    grouped: dict[int, list[LedgerCharge]] = defaultdict(list)
    for charge in charges:
        report.charges += 1
        parsed = parse_key(charge.idempotency_key)
        if parsed is None:
            reason = "not an Antaeus key"
        elif parsed[0] != installation_id:
            reason = f"installation {parsed[0]!r}, not this database's {installation_id!r}"
        elif charge.invoice_id is not None and charge.invoice_id != parsed[1]:
            reason = f"the ledger says invoice {charge.invoice_id}, the key {parsed[1]}"
        else:
            grouped[parsed[1]].append(charge)
            continue
        report.add(
            Finding(
                FOREIGN_KEY,
                charge.invoice_id,
                f"{charge.where}: key {charge.idempotency_key!r}: {reason}",
                (charge.charge_id,),
            )
        )
    return grouped


def _check_invoice(
    report: AuditReport,
    invoice: Any,
    attempts: Sequence[Any],
    charges: list[LedgerCharge],
) -> None:
    by_key = {a.idempotency_key: a for a in attempts}
    expected = Money.from_minor(invoice.amount_minor, Currency(invoice.currency))
    distinct: dict[str, LedgerCharge] = {}
    for charge in charges:
        if charge.charge_id in distinct:
            continue  # the same charge listed twice is one charge
        distinct[charge.charge_id] = charge
        attempt = by_key.get(charge.idempotency_key)
        if attempt is None:
            report.add(
                Finding(
                    FOREIGN_KEY,
                    invoice.id,
                    f"{charge.where}: key {charge.idempotency_key!r}: "
                    f"no such attempt of invoice {invoice.id}",
                    (charge.charge_id,),
                )
            )
        elif attempt.charge_id is not None and attempt.charge_id != charge.charge_id:
            report.add(
                Finding(
                    CHARGE_ID_DIFFERS,
                    invoice.id,
                    f"attempt {attempt.number} recorded {attempt.charge_id!r}, "
                    f"the ledger has {charge.charge_id!r}",
                    (charge.charge_id,),
                )
            )
        if (
            attempt is not None
            and charge.provider_customer_id is not None
            and attempt.references_recorded  # else: what it was sent with is not known
            and attempt.provider_customer_id != charge.provider_customer_id
        ):
            # the attempt's own references, never the customer's current ones
            report.add(
                Finding(
                    CUSTOMER_DIFFERS,
                    invoice.id,
                    f"attempt {attempt.number} was sent to provider customer "
                    f"{attempt.provider_customer_id!r}, the ledger charged "
                    f"{charge.provider_customer_id!r}",
                    (charge.charge_id,),
                )
            )
        if charge.amount.currency is not expected.currency:
            report.add(
                Finding(
                    CURRENCY_DIFFERS,
                    invoice.id,
                    f"invoice {expected}, charged {charge.amount}",
                    (charge.charge_id,),
                )
            )
        elif charge.amount.value != expected.value:
            report.add(
                Finding(
                    AMOUNT_DIFFERS,
                    invoice.id,
                    f"invoice {expected}, charged {charge.amount}",
                    (charge.charge_id,),
                )
            )
    ids = tuple(distinct)
    if len(ids) > 1:
        keys = ", ".join(c.idempotency_key for c in distinct.values())
        report.add(Finding(CHARGED_TWICE, invoice.id, f"{len(ids)} charges (keys {keys})", ids))
    status = invoice.status
    if status == InvoiceStatus.PAID:
        if not ids:
            if attempts:
                outcomes = ", ".join(f"{a.number}: {a.outcome or 'open'}" for a in attempts)
                report.add(
                    Finding(PAID_NO_CHARGE, invoice.id, f"{expected}, attempts {outcomes}", ids)
                )
            else:
                report.paid_without_attempts += 1
    elif ids and status == InvoiceStatus.REVIEW:
        report.add(Finding(NEEDS_RESOLVE, invoice.id, f"{expected}, in REVIEW", ids))
    elif ids:
        report.add(Finding(CHARGE_NOT_PAID, invoice.id, f"{expected}, invoice is {status}", ids))


async def audit(db: Database, charges: Iterable[LedgerCharge], *, show: int = 0) -> AuditReport:
    """Compare the ledger's charges with every invoice and attempt of the database."""
    report = AuditReport(show=show)
    async with db.read() as conn:
        installation_id = await InstallationRepository(conn).installation_id()
    ledger = _by_invoice(charges, installation_id, report)
    after = 0
    while True:
        # One short read transaction a page: an audit never holds back the database.
        async with db.read() as conn:
            repo = AuditRepository(conn)
            page = await repo.invoices_after(after, PAGE)
            if not page:
                break
            attempts: dict[int, list[Any]] = defaultdict(list)
            for row in await repo.attempts_between(page[0].id, page[-1].id):
                attempts[row.invoice_id].append(row)
        for invoice in page:
            report.invoices += 1
            _check_invoice(
                report, invoice, attempts.get(invoice.id, []), ledger.pop(invoice.id, [])
            )
        after = page[-1].id
    for invoice_id, left in sorted(ledger.items()):
        for charge in left:
            report.add(
                Finding(
                    FOREIGN_KEY,
                    invoice_id,
                    f"{charge.where}: key {charge.idempotency_key!r}: "
                    f"no invoice {invoice_id} in this database",
                    (charge.charge_id,),
                )
            )
    return report
