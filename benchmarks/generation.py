"""Invoice generation (issue 21): `antaeus generate` on N due subscriptions, beside its floor.

    python benchmarks/generation.py                         # 1,000,000 on SQLite and PostgreSQL
    python benchmarks/generation.py --engine sqlite --n 100000
    python benchmarks/generation.py --also 100000           # and the rate at 100,000 beside it
    python benchmarks/generation.py --engine postgres \\
        --pg-url postgresql://postgres@127.0.0.1:5432/antaeus_generation

Per engine and size: a fresh database seeded with `antaeus seed --customers N
--invoices-per-customer 0 --subscriptions-per-customer 1` (N customers spread
over 20 time zones, calendar monthly, each starting today in its zone, so all
are due now); then `antaeus generate` timed as a whole process (start-up,
migrations check and count included), its CPU and peak RSS from wait4; then
that every subscription was billed once (N invoices, N subscription lines);
then `floor.py sqlite-generate` / `pg-generate` at the same N in the same
sitting (../shared/bench/floor.py beside the clone, else benchmarks/floor.py,
its verbatim copy). Prints subscriptions/s, the floor, their ratio, CPU per
subscription and peak RSS, and the goals: at least 0.2x the floor, peak RSS at
most 200 MB, the throughput at N within 20 % of the throughput at the --also
size (by the command's own count, "in X s": generation without the process's
fixed start-up, which would favour the larger N; the whole-process change is
printed beside it).

The PostgreSQL database (--pg-url, or ANTAEUS_BENCH_POSTGRES_URL; default
postgresql://postgres@127.0.0.1:5432/antaeus_generation) is dropped and
re-created for each size, with `<name>_floor` beside it for the floor, and both
are dropped at the end: never point it at a database you keep.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from antaeus.storage.database import Database  # noqa: E402
from benchmarks.billing_run import (  # noqa: E402 (after the path above)
    drop_pg,
    floor_script,
    libpq,
    recreate_pg,
    timed_process,
)

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/antaeus_generation"
PG_URL_ENV = "ANTAEUS_BENCH_POSTGRES_URL"
GOAL_RATIO, GOAL_RSS_MB, GOAL_SPREAD = 0.2, 200.0, 0.20


@dataclass
class Result:
    engine: str
    n: int
    seconds: float
    cpu: float
    rss_mb: float
    seed_seconds: float
    floor: float | None
    inside: float  # the seconds generation took by the command's own count (no start-up)

    @property
    def rate(self) -> float:
        return self.n / self.seconds

    @property
    def inside_rate(self) -> float:
        return self.n / self.inside

    def line(self) -> str:
        text = (
            f"{self.engine} N={self.n:,}: antaeus generate {self.seconds:.1f} s = "
            f"{self.rate:,.0f} subscriptions/s; CPU {self.cpu:.1f} s "
            f"({self.cpu / self.n * 1e6:,.0f} µs/subscription); peak RSS {self.rss_mb:.0f} MB; "
            f"{self.inside:.1f} s = {self.inside_rate:,.0f}/s by its own count (without "
            f"start-up); seeding {self.seed_seconds:.1f} s"
        )
        if self.floor:
            text += (
                f"; floor ({self.engine_floor}) {self.floor:,.0f}/s, "
                f"ratio {self.rate / self.floor:.3f}"
            )
        return text

    @property
    def engine_floor(self) -> str:
        return "sqlite-generate" if self.engine == "sqlite" else "pg-generate"


async def _check(url: str, n: int) -> None:
    """Every subscription billed once: n invoices, n subscription lines, none left due."""
    db = Database(url)
    try:
        async with db.read() as conn:
            invoices = await conn.scalar(text("SELECT count(*) FROM invoices"))
            lines = await conn.scalar(
                text("SELECT count(*) FROM invoice_lines WHERE kind = 'subscription'")
            )
            left = await conn.scalar(
                text(
                    "SELECT count(*) FROM subscriptions WHERE next_due_at IS NOT NULL "
                    "AND next_due_at <= :now"
                ),
                {"now": datetime.now(UTC)},
            )
    finally:
        await db.dispose()
    if (invoices, lines, left) != (n, n, 0):
        raise SystemExit(
            f"error: {n:,} subscriptions gave {invoices:,} invoices and {lines:,} lines, "
            f"{left:,} still due"
        )


def _floor(engine: str, n: int, pg_url: str) -> float:
    env = {**os.environ, "N": str(n)}
    which = "sqlite-generate"
    floor_url = libpq(pg_url) + "_floor"
    if engine == "postgres":
        asyncio.run(recreate_pg(floor_url))
        env["LIMITS_PG_URL"] = floor_url
        which = "pg-generate"
    try:
        out = subprocess.run(
            [sys.executable, str(floor_script()), which],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        if engine == "postgres":
            asyncio.run(drop_pg(floor_url))
    found = re.search(r": ([0-9,]+) subscriptions/s", out)
    if found is None:
        raise SystemExit(f"error: floor.py {which} printed no rate: {out!r}")
    return float(found.group(1).replace(",", ""))


def measure(engine: str, n: int, work: Path, pg_url: str, *, floor: bool) -> Result:
    if engine == "postgres":
        url = pg_url
        asyncio.run(recreate_pg(url))
    else:
        url = f"sqlite:///{work / f'generation-{n}.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTAEUS_")}
    env.update({"ANTAEUS_DATABASE_URL": url, "ANTAEUS_LOG_LEVEL": "warning"})
    try:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "antaeus", "seed", "--seed", "1", "--customers", str(n),
             "--invoices-per-customer", "0", "--subscriptions-per-customer", "1"],
            env=env, cwd=work, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        seeded = time.perf_counter() - started
        timed = timed_process([sys.executable, "-m", "antaeus", "generate"], env, work)
        asyncio.run(_check(url, n))
        inside = re.search(r"periods .* in ([0-9.]+) s", timed.output)
        if inside is None:
            raise SystemExit(f"error: antaeus generate printed no time:\n{timed.output}")
    finally:
        if engine == "postgres":
            asyncio.run(drop_pg(url))
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
    rate_floor = _floor(engine, n, pg_url) if floor else None
    return Result(
        engine,
        n,
        timed.wall,
        timed.cpu,
        timed.rss_mb,
        seeded,
        rate_floor,
        max(float(inside[1]), 0.01),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000, help="subscriptions (1,000,000)")
    parser.add_argument("--engine", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(PG_URL_ENV, DEFAULT_PG_URL),
        help=f"PostgreSQL database to re-create and drop [{PG_URL_ENV}; {DEFAULT_PG_URL}]",
    )
    parser.add_argument(
        "--also",
        type=int,
        action="append",
        default=[],
        help="also measure at this N (repeatable), to compare the rates",
    )
    parser.add_argument("--no-floor", action="store_true", help="skip floor.py")
    args = parser.parse_args()
    if args.n < 1 or any(a < 1 for a in args.also):
        parser.error("--n and --also must be at least 1")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # lines as they come
    engines = ["sqlite", "postgres"] if args.engine == "both" else [args.engine]
    sizes = sorted({*args.also, args.n})
    work = Path(tempfile.mkdtemp(prefix="antaeus-generation-"))
    print(
        f"antaeus generate: {', '.join(f'{s:,}' for s in sizes)} due subscriptions, "
        f"20 time zones; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; floor: {floor_script()}"
    )
    met = True
    for engine in engines:
        results = {}
        for size in sizes:
            result = measure(engine, size, work, args.pg_url, floor=not args.no_floor)
            results[size] = result
            print(result.line())
        main_result = results[args.n]
        goals = []
        if main_result.floor:
            ratio = main_result.rate / main_result.floor
            goals.append((f"ratio to the floor {ratio:.3f} (goal >= {GOAL_RATIO})", ratio >= 0.2))
        goals.append(
            (
                f"peak RSS {main_result.rss_mb:.0f} MB (goal <= {GOAL_RSS_MB:.0f})",
                main_result.rss_mb <= GOAL_RSS_MB,
            )
        )
        for size in sizes:
            if size != args.n:
                # the throughput of generation itself: the process's fixed start-up
                # (imports, schema check, count) would favour the larger N
                change = main_result.inside_rate / results[size].inside_rate - 1
                whole = main_result.rate / results[size].rate - 1
                goals.append(
                    (
                        f"throughput at {args.n:,} is {change:+.0%} of the throughput at "
                        f"{size:,} (whole process: {whole:+.0%}; goal within {GOAL_SPREAD:.0%})",
                        abs(change) <= GOAL_SPREAD,
                    )
                )
        for what, ok in goals:
            met &= ok
            print(f"  {engine}: {what}: {'met' if ok else 'NOT met'}")
    if not met:
        print("some goals are not met")


if __name__ == "__main__":
    main()
