"""Throughput of `antaeus provider serve`: many concurrent POST /v1/charges, zero latency.

    python benchmarks/simulator_server.py [--requests 50000] [--concurrency 200]
        [--state :memory:] [-- extra serve flags]

Starts the server in a subprocess, sends every charge with its own key from one
aiohttp client (keep-alive connections), and prints requests per second of wall
time and of the server's CPU time (user + system, read from /proc), which is
what the server can do on one core even when the client is the slower side.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time

import aiohttp
import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


async def blast(base: str, requests: int, concurrency: int, prefix: str) -> dict[int, int]:
    statuses: dict[int, int] = {}
    queue = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, connector=connector) as session:

        async def one_worker() -> None:
            for i in queue:
                body = (
                    f'{{"invoiceId":{i + 1},"customerId":{i % 1000 + 1},'
                    '"amount":{"value":"12.34","currency":"EUR"}}'
                )
                async with session.post(
                    "/v1/charges",
                    data=body,
                    headers={
                        "Idempotency-Key": f"{prefix}-{i}",
                        "Content-Type": "application/json",
                    },
                ) as answer:
                    await answer.read()
                    statuses[answer.status] = statuses.get(answer.status, 0) + 1

        await asyncio.gather(*(one_worker() for _ in range(concurrency)))
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--state", default=":memory:")
    parser.add_argument("serve_args", nargs="*")
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "antaeus",
            "provider",
            "serve",
            "--port",
            str(port),
            "--state",
            args.state,
            *args.serve_args,
        ]
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/v1/health").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        asyncio.run(blast(base, 2_000, args.concurrency, "warm"))
        cpu0, t0 = cpu_seconds(server.pid), time.perf_counter()
        statuses = asyncio.run(blast(base, args.requests, args.concurrency, "run"))
        wall, cpu = time.perf_counter() - t0, cpu_seconds(server.pid) - cpu0
        print(
            f"{args.requests:,} charges, {args.concurrency} in flight: "
            f"{args.requests / wall:,.0f} req/s wall ({wall:.2f} s), "
            f"server CPU {cpu:.2f} s = {args.requests / cpu:,.0f} req/s per server core, "
            f"statuses {statuses}"
        )
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
