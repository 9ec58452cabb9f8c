"""Bill invoices through the HTTP adapter against the provider simulator.

    python benchmarks/http_provider.py                    # 10,000 invoices, 50 ms, 100 in flight
    python benchmarks/http_provider.py --client httpx     # the other client library
    python benchmarks/http_provider.py --database-url postgresql://postgres@127.0.0.1/bench

Two measurements, for each client library asked for (`--client aiohttp httpx`):

1. billing: a real `antaeus worker --concurrency C` bills N due invoices through
   `ANTAEUS_PAYMENT_PROVIDER_URL` pointing at a real `antaeus provider serve
   --latency-ms L` on the same machine. Prints invoices/s against the ideal
   C / L (each call slot busy all the time), and the ratio.
2. adapter CPU: in this process, `HttpPaymentProvider.charge` is called M times
   against a simulator with no latency (C concurrent calls); the CPU time of this
   process (the adapter and its client library; the simulator is another
   process) divided by M is the adapter's own cost per call.

A PostgreSQL database given here is dropped and re-created.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from billing_run import antaeus, peak_rss_mb, recreate_pg, wait_completed
from sqlalchemy import func, select

from antaeus.billing.service import open_run
from antaeus.clock import SystemClock
from antaeus.domain.money import Currency, Money
from antaeus.domain.policy import PolicySettings
from antaeus.payments.http import HttpPaymentProvider, HttpProviderSettings
from antaeus.payments.provider import Charged, ChargeRequest
from antaeus.storage.database import Database
from antaeus.storage.tables import invoices


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_simulator(port: int, latency_ms: float, work: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTAEUS_")}
    log = (work / f"simulator-{port}.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "antaeus", "provider", "serve", "--port", str(port),
         "--latency-ms", str(latency_ms)],
        env=env, stdout=log, stderr=log,
    )  # fmt: skip
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the simulator did not start; see {log.name}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


async def bill(
    args: argparse.Namespace, client: str, work: Path, port: int, simulator: int
) -> None:
    url = args.database_url or f"sqlite:///{work / f'antaeus-{client}.db'}"
    if url.startswith("postgres"):
        await recreate_pg(url)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ANTAEUS_")},
        "ANTAEUS_DATABASE_URL": url,
        "ANTAEUS_LOG_LEVEL": "warning",
        "ANTAEUS_SCHEDULE": "external",
        "ANTAEUS_PAYMENT_PROVIDER_URL": f"http://127.0.0.1:{port}",
        "ANTAEUS_PAYMENT_PROVIDER_HTTP_CLIENT": client,
        "ANTAEUS_WORKER_CONCURRENCY": str(args.concurrency),
    }
    antaeus("seed", "--seed", "1", "--customers", str(args.invoices),
            "--invoices-per-customer", "1", env=env, cwd=work)  # fmt: skip
    db = Database(url)
    worker = subprocess.Popen(  # noqa: ASYNC220 (started here, stopped below)
        [sys.executable, "-m", "antaeus", "worker"], env=env, cwd=work
    )
    try:
        await asyncio.sleep(2.0)  # imports, connections, the provider's health check
        started = time.perf_counter()
        cpu_before, sim_before = _cpu_seconds(worker.pid), _cpu_seconds(simulator)
        run_id = await open_run(db, SystemClock(), PolicySettings(), "cli")
        await wait_completed(db, run_id)
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds(worker.pid) - cpu_before
        sim_cpu = _cpu_seconds(simulator) - sim_before
        rss = peak_rss_mb(worker.pid)
    finally:
        stop(worker)
    async with db.read() as conn:
        paid = await conn.scalar(
            select(func.count()).select_from(invoices).where(invoices.c.status == "PAID")
        )
    await db.dispose()
    rate = args.invoices / elapsed
    ideal = args.concurrency / (args.latency_ms / 1000)
    kind = url.split("://")[0].split("+")[0]
    print(
        f"[{client}] billing on {kind}: {args.invoices:,} invoices in {elapsed:.1f} s = "
        f"{rate:,.0f} invoices/s; ideal {ideal:,.0f}/s -> {rate / ideal:.0%}; paid {paid:,}; "
        f"CPU per invoice: worker {cpu / args.invoices * 1e6:,.0f} µs, simulator "
        f"{sim_cpu / args.invoices * 1e6:,.0f} µs; worker peak RSS {rss:.0f} MB"
    )


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


async def adapter_cpu(args: argparse.Namespace, client: str, port: int) -> None:
    provider = HttpPaymentProvider(
        HttpProviderSettings(base_url=f"http://127.0.0.1:{port}", client=client)  # type: ignore[arg-type]
    )
    amount = Money.of(Decimal("12.34"), Currency.EUR)
    stamp = time.time_ns()
    calls = args.calls
    sem = asyncio.Semaphore(args.concurrency)

    async def one(i: int) -> bool:
        async with sem:
            result = await provider.charge(
                ChargeRequest(i + 1, i + 1, amount, f"bench-{client}-{stamp}-{i}")
            )
            return isinstance(result, Charged)

    try:
        await asyncio.gather(*(one(i) for i in range(200)))  # warm up: connections, imports
        cpu0, wall0 = time.process_time(), time.perf_counter()
        ok = sum(await asyncio.gather(*(one(i) for i in range(200, 200 + calls))))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        await provider.aclose()
    print(
        f"[{client}] adapter: {calls:,} calls ({ok:,} charged) in {wall:.2f} s = "
        f"{calls / wall:,.0f} calls/s; CPU in this process {cpu / calls * 1e6:,.0f} µs/call"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--invoices", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--calls", type=int, default=10_000, help="adapter CPU measurement")
    parser.add_argument("--client", nargs="+", default=["aiohttp", "httpx"],
                        choices=["aiohttp", "httpx"])  # fmt: skip
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--skip-billing", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="antaeus-http-bench-"))
    slow_port, fast_port = free_port(), free_port()
    slow = start_simulator(slow_port, args.latency_ms, work)
    fast = start_simulator(fast_port, 0, work)
    try:
        for client in args.client:
            await adapter_cpu(args, client, fast_port)
        if not args.skip_billing:
            for client in args.client:
                await bill(args, client, work, slow_port, slow.pid)
    finally:
        stop(slow)
        stop(fast)


if __name__ == "__main__":
    from antaeus.cli.common import run

    run(main())  # on uvloop when installed, as the worker runs
