"""Charge through the Stripe adapter (the official `stripe` library) against the fake Stripe.

    python benchmarks/stripe_provider.py              # both transports, 50 ms, 100 in flight
    python benchmarks/stripe_provider.py --client httpx --calls 20000

For each transport asked for (`--client aiohttp httpx`), against fake Stripe
processes (`antaeus provider serve --stripe`) on the same machine:

1. adapter CPU: `StripePaymentProvider.charge` is called M times against a fake
   with no latency (C concurrent calls); the CPU time of this process (the
   adapter, the stripe library and its HTTP client; the fake is another process)
   divided by M is the adapter's own cost per call.
2. throughput: M calls, C at a time, against a fake answering after `--latency-ms`
   (Stripe's own latency is rather 300-600 ms; 50 ms matches the HTTP adapter's
   benchmark). Prints calls/s against the ideal C / L, and the ratio.

Every call is a new PaymentIntent (a new idempotency key) of one of 100 customers
with Stripe's succeeding test card.
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

import httpx

from antaeus.domain.money import Currency, Money
from antaeus.payments.provider import Charged, ChargeRequest, ProviderError
from antaeus.payments.stripe import StripePaymentProvider, StripeProviderSettings

KEY = "sk_test_benchmark_0123456789abcdefghij"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_fake(port: int, latency_ms: float, work: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTAEUS_")}
    log = (work / f"fake-stripe-{port}.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "antaeus", "provider", "serve", "--stripe", "--port", str(port),
         "--latency-ms", str(latency_ms), "--api-key", KEY],
        env=env, stdout=log, stderr=log,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_fake/stats", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the fake Stripe did not start; see {log.name}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def customers(port: int, n: int = 100) -> list[tuple[str, str]]:
    auth = {"Authorization": f"Bearer {KEY}"}
    out = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth) as client:
        for _ in range(n):
            cus = client.post("/v1/customers").json()["id"]
            pm = client.post("/v1/payment_methods/pm_card_visa/attach", data={"customer": cus})
            out.append((cus, pm.json()["id"]))
    return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


async def run_calls(
    args: argparse.Namespace, client: str, port: int, fake_pid: int, refs: list[tuple[str, str]]
) -> tuple[int, int, float, float, float]:
    provider = StripePaymentProvider(
        StripeProviderSettings(
            api_key=KEY,
            api_base=f"http://127.0.0.1:{port}",
            client=client,  # type: ignore[arg-type]
            max_connections=args.concurrency,
        )
    )
    amount = Money.of(Decimal("12.34"), Currency.EUR)
    stamp = time.time_ns()
    sem = asyncio.Semaphore(args.concurrency)

    async def one(i: int) -> bool:
        cus, pm = refs[i % len(refs)]
        async with sem:
            try:
                result = await provider.charge(
                    ChargeRequest(i + 1, i + 1, amount, f"bench-{client}-{stamp}-{i}", 1, cus, pm)
                )
            except ProviderError:  # counted as not charged (a loaded machine: timeouts)
                return False
            return isinstance(result, Charged)

    try:
        await asyncio.gather(*(one(i) for i in range(200)))  # warm up: connections, imports
        cpu0, wall0, fake0 = time.process_time(), time.perf_counter(), _cpu_seconds(fake_pid)
        ok = sum(await asyncio.gather(*(one(i) for i in range(200, 200 + args.calls))))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        fake_cpu = _cpu_seconds(fake_pid) - fake0
    finally:
        await provider.aclose()
    return args.calls, ok, wall, cpu, fake_cpu


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--client", nargs="+", default=["aiohttp", "httpx"],
                        choices=["aiohttp", "httpx"])  # fmt: skip
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="antaeus-stripe-bench-"))
    slow_port, fast_port = free_port(), free_port()
    slow = start_fake(slow_port, args.latency_ms, work)
    fast = start_fake(fast_port, 0, work)
    try:
        fast_refs, slow_refs = customers(fast_port), customers(slow_port)
        for client in args.client:
            calls, ok, wall, cpu, fake_cpu = await run_calls(
                args, client, fast_port, fast.pid, fast_refs
            )
            print(
                f"[{client}] adapter: {calls:,} calls ({ok:,} charged) in {wall:.2f} s = "
                f"{calls / wall:,.0f} calls/s; CPU in this process {cpu / calls * 1e6:,.0f} "
                f"µs/call (the fake: {fake_cpu / calls * 1e6:,.0f} µs/call)"
            )
        for client in args.client:
            calls, ok, wall, cpu, _ = await run_calls(args, client, slow_port, slow.pid, slow_refs)
            ideal = args.concurrency / (args.latency_ms / 1000)
            rate = calls / wall
            print(
                f"[{client}] at {args.latency_ms:g} ms, {args.concurrency} in flight: "
                f"{calls:,} calls ({ok:,} charged) in {wall:.2f} s = {rate:,.0f} calls/s; "
                f"ideal {ideal:,.0f}/s -> {rate / ideal:.0%}; CPU {cpu / calls * 1e6:,.0f} µs/call"
            )
    finally:
        stop(slow)
        stop(fast)


if __name__ == "__main__":
    asyncio.run(main())
