"""`antaeus reconcile`: settle invoices in REVIEW by asking the provider about their keys.

Exit codes: 0 every invoice asked about was settled (PAID or PENDING), or none
waited; 1 some are still in REVIEW (the provider could not tell, a "nothing
charged" too soon after the last send to trust, or the invoice changed
meanwhile); 2 it could not reconcile (settings, database, provider
configuration, an unknown invoice or one that is not reconcilable).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from antaeus.cli.common import fail, load_settings, out, prepare, run
from antaeus.security import scrub

if TYPE_CHECKING:
    from antaeus.billing.reconcile import Summary

#: Exit codes: all settled, some still in REVIEW, could not reconcile.
SETTLED, STILL_IN_REVIEW, CANNOT = 0, 1, 2

_SHOWN = {
    "paid": "[green]PAID[/]",
    "pending": "[cyan]PENDING[/] (new attempt next)",
    "review": "[yellow]REVIEW[/] (for a person)",
    "deferred": "[yellow]REVIEW[/] (asked again later)",
    "superseded": "changed meanwhile",
}


def _print(summary: Summary) -> None:
    from rich.table import Table

    from antaeus.billing.reconcile import OUTCOMES

    if summary.items:
        table = Table(title="reconciliation with the provider")
        table.add_column("invoice", justify="right")
        table.add_column("attempt", justify="right")
        table.add_column("provider said")
        table.add_column("charge id")
        table.add_column("now")
        for r in summary.items:
            table.add_row(
                str(r.invoice_id),
                str(r.attempt),
                r.result.replace("_", " "),
                escape(r.charge_id or ""),
                _SHOWN[r.outcome],
            )
        out.print(table)
        for r in summary.items:
            line = f"  invoice {r.invoice_id} ({r.idempotency_key}): {r.detail}"
            out.print(line, markup=False, highlight=False, soft_wrap=True)
    counts = Table(title="summary")
    counts.add_column("outcome")
    counts.add_column("invoices", justify="right")
    for outcome in OUTCOMES:
        counts.add_row(outcome, f"{summary.counts.get(outcome, 0):,}")
    out.print(counts)
    left = summary.still_in_review
    verdict = (
        "nothing in REVIEW to reconcile"
        if not summary.items
        else f"{len(summary.items):,} asked, {left:,} still in REVIEW"
    )
    out.print(f"reconcile: {verdict}", highlight=False)


def reconcile_command(
    invoice: Annotated[
        int | None,
        typer.Option(
            "--invoice", min=1, help="reconcile this invoice only (else every one in REVIEW)"
        ),
    ] = None,
) -> None:
    """Ask the provider what each REVIEW invoice's idempotency key did, and settle it.

    Charged: PAID with the charge id. Nothing charged: PENDING, charged again
    under a new key by the next run. The provider cannot tell: it stays in
    REVIEW for a person. Exit 0 all settled, 1 some still in REVIEW, 2 error.
    """
    from antaeus.billing.reconcile import NotReconcilableError, Reconciler, Summary
    from antaeus.clock import SystemClock
    from antaeus.domain.errors import InvoiceNotFoundError
    from antaeus.payments.factory import ProviderConfigError, build_provider
    from antaeus.storage.database import Database

    try:
        settings = load_settings()
    except typer.Exit as exc:
        raise typer.Exit(CANNOT) from exc

    async def main() -> Summary:
        db = Database.from_settings(settings)
        try:
            provider = build_provider(settings)
        except ProviderConfigError as exc:
            await db.dispose()
            fail(escape(str(exc)), CANNOT)
        try:
            try:
                await prepare(db, allow_migrate=False)
            except typer.Exit as exc:
                raise typer.Exit(CANNOT) from exc
            reconciler = Reconciler.from_settings(db, provider, SystemClock(), settings)
            try:
                if invoice is None:
                    return await reconciler.reconcile_all()
                return Summary([await reconciler.reconcile_invoice(invoice)])
            except (InvoiceNotFoundError, NotReconcilableError) as exc:
                fail(escape(str(exc)), CANNOT)
            except Exception as exc:  # a database that went away mid-way
                reason = " ".join(scrub(str(exc), db.url).split())
                fail(f"reconciliation stopped: {type(exc).__name__}: {escape(reason)}", CANNOT)
        finally:
            await provider.aclose()
            await db.dispose()

    summary = run(main())
    _print(summary)
    raise typer.Exit(STILL_IN_REVIEW if summary.still_in_review else SETTLED)
