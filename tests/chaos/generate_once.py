"""One generating process of the chaos test's generation mode: `generate_due` against
a database at a simulated moment, printing a line after each committed batch (so that
the harness can kill it mid-generation), then `done`.

    python -m tests.chaos.generate_once --url sqlite:///x.db --now 2027-03-01T00:00:00Z

(`antaeus generate` does the same at the system clock's now; this takes `--now`, the
chaos test's simulated clock.)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime

from antaeus.billing.generation import GenerationSummary, generate_due
from antaeus.clock import ManualClock
from antaeus.storage.database import Database


async def _generate(url: str, now: datetime, batch_size: int) -> GenerationSummary:
    db = Database(url)

    def said(batch: GenerationSummary) -> None:
        print(f"batch invoices={batch.invoices} periods={batch.periods}", flush=True)

    try:
        return await generate_due(db, ManualClock(now), batch_size=batch_size, on_batch=said)
    finally:
        await db.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--now", required=True, type=datetime.fromisoformat)
    parser.add_argument("--batch-size", type=int, default=5)
    args = parser.parse_args(argv)
    if args.now.tzinfo is None:
        parser.error("--now must name its offset (e.g. 2027-03-01T00:00:00Z)")
    made = asyncio.run(_generate(args.url, args.now, args.batch_size))
    print(f"done invoices={made.invoices} periods={made.periods}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
