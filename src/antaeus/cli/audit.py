"""`antaeus audit`: the provider's ledger against the database. Exit 0 agree, 1 not, 2 error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from antaeus.cli.common import fail, load_settings, out, prepare, run
from antaeus.security import scrub

if TYPE_CHECKING:
    from antaeus.billing.audit import AuditReport

#: Exit codes: everything agrees, something disagrees, the audit could not be made.
AGREE, DISAGREE, CANNOT = 0, 1, 2


def _print(report: AuditReport) -> None:
    from rich.table import Table

    from antaeus.billing.audit import KINDS

    table = Table(title="provider ledger against the database")
    table.add_column("disagreement")
    table.add_column("count", justify="right")
    for kind in KINDS:
        if kind.fails:
            table.add_row(kind.title, f"{report.counts[kind]:,}")
    out.print(table)
    for kind in KINDS:
        count = report.counts[kind]
        if not count:
            continue
        shown = report.findings[kind]
        suffix = "" if len(shown) == count else f", first {len(shown):,} shown"
        note = "" if kind.fails else " (informational, does not fail the audit)"
        out.print(f"\n[bold]{escape(kind.title)}[/]: {count:,}{suffix}{note}", highlight=False)
        for f in shown:
            invoice = f"invoice {f.invoice_id}" if f.invoice_id is not None else "no invoice"
            charges = f" [{', '.join(f.charge_ids)}]" if f.charge_ids else ""
            line = f"  {invoice}{charges}: {f.detail}"
            out.print(line, markup=False, highlight=False, soft_wrap=True)
    extra = (
        f"; {report.paid_without_attempts:,} PAID invoices have no attempt (not charged by "
        "Antaeus, not checked)"
        if report.paid_without_attempts
        else ""
    )
    verdict = (
        "all agree"
        if not report.disagreements
        else f"{report.disagreements:,} disagreement{'s' if report.disagreements != 1 else ''}"
    )
    out.print(
        f"\naudit: {report.charges:,} ledger charges, {report.invoices:,} invoices checked: "
        f"{verdict}{extra}",
        highlight=False,
        soft_wrap=True,
    )


def audit_command(
    provider_ledger: Annotated[
        Path,
        typer.Option(
            "--provider-ledger",
            help='the provider\'s charges: JSON {"charges": [...]} (as GET /admin/ledger '
            "answers) or CSV with the header chargeId,idempotencyKey,value,currency",
        ),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="print the report as one JSON document")
    ] = False,
    show: Annotated[
        int, typer.Option(min=0, help="findings listed per kind (0: all; counts are always all)")
    ] = 20,
) -> None:
    """Prove nothing was charged twice: compare the provider's ledger with the attempts.

    Exit 0 when everything agrees, 1 on any disagreement, 2 when the audit could
    not be made (unreadable ledger, unreachable database).
    """
    from antaeus.billing.audit import LedgerError, audit, parse_ledger
    from antaeus.storage.database import Database

    try:
        data = provider_ledger.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        fail(f"cannot read {escape(str(provider_ledger))}: {escape(reason)}", CANNOT)
    try:
        charges = parse_ledger(data)
    except LedgerError as exc:
        fail(f"{escape(str(provider_ledger))}: {escape(str(exc))}", CANNOT)
    try:
        settings = load_settings()
    except typer.Exit as exc:  # the one-line error is printed; 1 would read "disagrees"
        raise typer.Exit(CANNOT) from exc

    async def main() -> AuditReport:
        db = Database.from_settings(settings)
        try:
            try:
                await prepare(db, allow_migrate=False)
            except typer.Exit as exc:
                raise typer.Exit(CANNOT) from exc
            try:
                return await audit(db, charges, show=show)
            except Exception as exc:  # a database that went away or refused us mid-audit
                reason = " ".join(scrub(str(exc), db.url).split())
                fail(f"the audit could not finish: {type(exc).__name__}: {escape(reason)}", CANNOT)
        finally:
            await db.dispose()

    report = run(main())
    if as_json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        _print(report)
    raise typer.Exit(AGREE if not report.disagreements else DISAGREE)
