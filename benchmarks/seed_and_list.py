"""Seed N invoices, then time `GET /rest/v1/invoices?limit=1000` on a running `antaeus serve`.

    python benchmarks/seed_and_list.py                        # 1,000,000 invoices on SQLite
    python benchmarks/seed_and_list.py --database-url postgresql://postgres@127.0.0.1/bench

The PostgreSQL database is dropped and re-created (it must not be one you use).
Prints seed time, then list latency (p50/p95/max) at the start, middle and end
of the table and with a status filter, over real HTTP on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def recreate_pg(url: str) -> None:
    base, _, name = url.rpartition("/")
    conn = await asyncpg.connect(f"{base.replace('+asyncpg', '')}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def antaeus(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "antaeus", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )


def timed_gets(client: httpx.Client, path: str, n: int) -> list[float]:
    out = []
    client.get(path)  # warm
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(path)
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, r.text
        assert len(r.json()) == 1000
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="antaeus-bench-"))
    url = args.database_url or f"sqlite:///{work / 'antaeus.db'}"
    if url.startswith("postgres"):
        asyncio.run(recreate_pg(url))
    # external schedule: the server must not be charging the seeded invoices meanwhile
    env = {
        **os.environ,
        "ANTAEUS_DATABASE_URL": url,
        "ANTAEUS_LOG_LEVEL": "warning",
        "ANTAEUS_SCHEDULE": "external",
    }
    env.pop("ANTAEUS_API_TOKEN", None)
    customers = args.invoices // 10

    t0 = time.perf_counter()
    antaeus("seed", "--seed", "1", "--customers", str(customers), env=env, cwd=work)
    seed_s = time.perf_counter() - t0
    token = antaeus("token", "create", "--name", "bench", env=env, cwd=work).stdout.strip()
    print(f"database: {url.split('://')[0]}")
    print(f"seed: {customers * 10:,} invoices in {seed_s:.1f} s ({customers * 10 / seed_s:,.0f}/s)")

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "antaeus", "serve", "--port", str(port)],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if client.get("/rest/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("server did not start")
                time.sleep(0.1)
            total = customers * 10
            cases = {
                "first page": "/rest/v1/invoices?limit=1000",
                "middle page": f"/rest/v1/invoices?limit=1000&after={total // 2}",
                "last full page": f"/rest/v1/invoices?limit=1000&after={total - 1000}",
                "status=PENDING": f"/rest/v1/invoices?limit=1000&status=PENDING&after={total // 2}",
            }
            for label, path in cases.items():
                ms = sorted(timed_gets(client, path, args.requests))
                p95 = ms[int(len(ms) * 0.95) - 1]
                print(
                    f"GET limit=1000 {label:15s} p50 {statistics.median(ms):6.1f} ms  "
                    f"p95 {p95:6.1f} ms  max {ms[-1]:6.1f} ms"
                )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
