"""`antaeus generate`: every invoice due by now, without opening a run (issue 21)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import typer

from antaeus.cli.common import err, freeze_heap, load_settings, out, prepare, run
from antaeus.cli.stopping import GracefulStop

if TYPE_CHECKING:
    from antaeus.billing.generation import GenerationSummary
    from antaeus.config import Settings

# What the command needs beyond this is imported when it runs (see antaeus.cli.common).

#: from this many due subscriptions on, PostgreSQL's statistics are refreshed first
ANALYZE_AT = 10_000


async def _generate(settings: Settings) -> tuple[GenerationSummary, int, int | None]:
    """(what was generated, subscriptions due at the start, the signal that stopped it)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from antaeus.billing.generation import generate_due
    from antaeus.clock import ManualClock, SystemClock
    from antaeus.storage.database import Database
    from antaeus.storage.repositories.subscriptions import SubscriptionRepository

    stopping = GracefulStop()
    stopping.install()
    db = Database.from_settings(settings)
    try:
        await prepare(db, allow_migrate=True)
        now = SystemClock().now()  # one moment: what is counted is what is generated
        async with db.read() as conn:
            due = await SubscriptionRepository(conn).count_due(now)
        if due >= ANALYZE_AT:  # fresh statistics: the planner then reads by customer
            async with db.write() as conn:
                await SubscriptionRepository(conn).analyze()
        freeze_heap()
        with Progress(
            "generating",
            BarColumn(),
            MofNCompleteColumn(),
            "subscriptions",
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=due == 0,
        ) as bar:
            task = bar.add_task("generating", total=due)
            done = 0

            def advance(made: GenerationSummary) -> None:
                nonlocal done
                done = min(due, done + made.subscriptions)  # a catch-up may read one twice
                bar.update(task, completed=done)

            summary = await generate_due(
                db, ManualClock(now), on_batch=advance, stop=stopping.event
            )
        return summary, due, stopping.signal if summary.stopped else None
    finally:
        stopping.uninstall()
        await db.dispose()


def _lines(summary: GenerationSummary) -> list[str]:
    made = summary.invoices
    lines = [
        f"generated {made:,} invoice{'s' if made != 1 else ''} for "
        f"{summary.periods:,} period{'s' if summary.periods != 1 else ''} "
        f"({summary.paid_at_once:,} of total 0, created PAID) in {summary.seconds:.2f} s"
    ]
    for code, value in sorted(summary.amounts.items()):
        lines.append(f"  {code} {value:,}")
    return lines


def generate_command() -> None:
    """Generate every invoice due by now from the subscriptions, without opening a run.

    For external schedules that keep generating and charging apart (then `antaeus
    bill`), and for measuring. Prints how many invoices it made and their amounts
    per currency; run again at once, it makes nothing. Ctrl-C (SIGTERM) stops it
    between two batches: what was generated is committed, and the next `antaeus
    generate` (or run) goes on from there. Exits 130 (143) when stopped.
    """
    os.environ.setdefault("ANTAEUS_LOG_LEVEL", "warning")
    settings = load_settings()
    started = time.perf_counter()
    summary, due, stopped_by = run(_generate(settings))
    if stopped_by is not None:
        err.print(
            f"stopped: {summary.invoices:,} invoices generated and committed, from "
            f"{min(summary.subscriptions, due):,} of {due:,} due subscriptions; "
            "`antaeus generate` goes on from there",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(128 + stopped_by)
    if summary.invoices == 0:
        out.print(
            f"nothing due: no invoice generated ({time.perf_counter() - started:.1f} s)",
            highlight=False,
        )
        return
    for line in _lines(summary):
        out.print(line, highlight=False, soft_wrap=True)
