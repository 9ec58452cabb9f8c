"""Where `antaeus bill`'s CPU goes: a py-spy profile, summed by part of the charge flow.

    python benchmarks/profile_bill.py                          # SQLite, 100,000 invoices
    python benchmarks/profile_bill.py --database-url postgresql://postgres@127.0.0.1/bench
    python benchmarks/profile_bill.py --raw profile.txt        # keep the raw stacks too

Seeds N due invoices (every charge succeeds, the simulator in process with its state
in a file, as billing_run.py does), then runs `antaeus bill` under `py-spy record
--gil --threads`: only the thread holding the GIL is sampled, so the samples add up
to the process's Python time (SQLite's own work in aiosqlite's thread runs with the
GIL released and shows up only where it is held). Prints each part's share of the
samples and its microseconds per invoice, then the hottest functions by own time.
It needs the `bench` extra (py-spy). A PostgreSQL database given here is dropped
and re-created.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

RATE = 250  # samples per second

#: (part, what marks a sample as that part: any frame whose text contains it),
#: the first match wins, so the more specific parts come first.
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("start-up (imports, settings, migrations check)", ("_find_and_load", "_call_with_frames")),
    ("simulated provider (the benchmark's, not the engine's)", ("simulated.py",)),
    ("claim: SQL and the Claimed rows", ("Worker.claim ",)),
    ("record: decisions, rows and event payloads", ("Worker._row ", "Worker._refused_row ")),
    ("record: SQL (invoices, attempts, answers, runs, events)", ("Worker.record ",)),
    ("call: task, request, answer, metrics", ("Worker._call ", "Worker._start_call ",
                                              "Worker._call_done ", "Worker._fill ")),
    ("lease renewal and pause checks", ("Worker._renew_leases ", "Worker._is_paused ")),
    ("the database driver's thread (aiosqlite)", ("_connection_worker_thread",)),
    ("bill's progress display", ("live.py", "_follow")),
    ("the event loop (uvloop callbacks) and the rest", ("",)),
]  # fmt: skip


def part_of(stack: str) -> str:
    for name, marks in PARTS:
        if any(mark in stack for mark in marks):
            return name
    return PARTS[-1][0]


def summarize(raw: Path, invoices: int) -> None:
    parts: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        parts[part_of(stack)] += n
        own[stack.rsplit(";", 1)[-1]] += n
    if not total:
        raise SystemExit("error: py-spy recorded no samples")
    seconds = total / RATE
    print(
        f"{total:,} samples holding the GIL = {seconds:.1f} s of Python, "
        f"{seconds / invoices * 1e6:,.0f} µs per invoice"
    )
    print(f"{'part':<58} {'share':>6} {'µs/invoice':>11}")
    for name, _ in PARTS:
        n = parts[name]
        print(f"{name:<58} {n / total:>6.1%} {n / RATE / invoices * 1e6:>11,.1f}")
    print("hottest functions by own time:")
    for frame, n in own.most_common(15):
        print(f"  {n / total:>6.1%}  {frame[:110]}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--raw", type=Path, default=None, help="also keep py-spy's raw stacks")
    parser.add_argument("--processes", type=int, default=1, help="bill --processes (profiled: 1)")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("error: py-spy is not installed (pip install -e '.[bench]')")
    work = Path(tempfile.mkdtemp(prefix="antaeus-profile-"))
    url = args.database_url or f"sqlite:///{work / 'antaeus.db'}"
    if url.startswith("postgres"):
        import asyncio

        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from benchmarks.billing_run import recreate_pg

        asyncio.run(recreate_pg(url))
    env = {
        **os.environ,
        "ANTAEUS_DATABASE_URL": url,
        "ANTAEUS_LOG_LEVEL": "warning",
        "ANTAEUS_SIMULATED_FAILURE_RATE": "0",
        "ANTAEUS_SIMULATED_STATE": str(work / "simulator.db"),
        "ANTAEUS_SCHEDULE": "external",
    }
    subprocess.run(
        [sys.executable, "-m", "antaeus", "seed", "--seed", "1", "--customers",
         str(args.invoices), "--invoices-per-customer", "1"],
        env=env, cwd=work, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    raw = args.raw or work / "profile.txt"
    subprocess.run(
        [spy, "record", "--gil", "--threads", "-r", str(RATE), "-f", "raw", "-o", str(raw),
         "--", sys.executable, "-m", "antaeus", "bill", "--processes", str(args.processes)],
        env=env, cwd=work, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    kind = "PostgreSQL" if url.startswith("postgres") else "SQLite"
    print(f"{kind}; antaeus bill of {args.invoices:,} invoices under py-spy (--gil, {RATE}/s)")
    summarize(raw, args.invoices)


if __name__ == "__main__":
    main()
