"""The chaos test: real processes killed mid-charge, then the provider's ledger
is compared with Antaeus's database.

A provider simulator (`antaeus provider serve`) answers with 20% network errors,
5% ambiguous failures (charged, then the answer is lost) and 10 ± 10 ms of
latency. Antaeus runs with `ANTAEUS_SCHEDULE=external` and is given 5,000 due
invoices whose customers have, at the provider: enough funds, too little, no
account, or an account in another currency. One trigger opens a run; while it
runs, processes are SIGKILLed and restarted:

- postgres: the API process (`serve --no-worker`) and three `antaeus worker`
  processes; a random worker is killed about every second, the API once;
- sqlite: the single embedded `antaeus serve` process, killed and restarted.

When the run completes, every invoice is checked against the ledger and the
`events` outbox (see `verify`). By hand:

    python -m tests.chaos.harness --database sqlite
    ANTAEUS_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test \\
        python -m tests.chaos.harness --database postgres
    python -m tests.chaos.harness --database sqlite --hostile

`--hostile` adds the hostile provider's faults (`simulator_server.HostileFaults`)
to the same run: 429/409 answers with a huge or malformed Retry-After, 409
idempotency_key_in_use with a sane one, 200s of charges made whose chargeId is
malformed (the next request with the key gets the real one), a 400
invalid_request on the first repeat of a key whose answer was lost, and bursts
of 401 for every charge (1.5 s every 8 s). The workers probe a paused provider
every second (`ANTAEUS_PAUSE_PROBE_SECONDS=1`) and wait at most 5 s for a
Retry-After (`ANTAEUS_RETRY_AFTER_MAX_SECONDS=5`). Verification is the same,
and accepts REVIEW for an invoice whose repeat got that 400 (it may have been
charged: a person looks), counting them; the summary counts each fault
injected and the outcomes of the invoices they hit. `--hostile-faults
key-in-use,401` turns on only some of them (names in `HOSTILE_FAULTS`), to try
one client fix at a time.

`--provider stripe` runs the same against the fake Stripe (`antaeus.simulators.fake_stripe`,
served in this process) through the Stripe adapter: the customers are linked by
`antaeus provider stripe-link` (its mixed cycle of Stripe's test cards: charged,
insufficient funds, card_declined, authentication_required, a Stripe customer that does
not exist, another customer's card, one left unlinked) before any fault is on; then the
fake answers 20% 5xx before executing, 5% executed with the answer lost (a 500 or a
dropped connection) and 5% 429 (`Retry-After: 1`), with 10 ms latency. The ledger is the
fake's succeeded PaymentIntents (`metadata.antaeus_invoice`, `antaeus_key`):

    python -m tests.chaos.harness --database sqlite --provider stripe

It prints a summary and exits 1 when any invariant is broken.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import asyncpg
import httpx
from sqlalchemy import select

from antaeus.cli.stripe_fake import LINK_CYCLE
from antaeus.domain.money import ORIGINAL_CURRENCIES, Currency, Money
from antaeus.simulators.fake_stripe import FakeStripe
from antaeus.storage.database import Database
from antaeus.storage.repositories.customers import CustomerRepository
from antaeus.storage.repositories.invoices import InvoiceRepository
from antaeus.storage.tables import billing_runs, charge_attempts, customers, events, invoices
from tests.payments.fake_stripe_server import running_asgi
from tests.payments.simulator import free_port

PG_ENV = "ANTAEUS_TEST_POSTGRES_URL"
TOKEN = "ant_chaos_" + secrets.token_urlsafe(24)
Category = Literal[
    "funded",
    "insufficient",
    "unknown",
    "other_currency",
    # the fake Stripe's (by stripe-link's cycle)
    "declined",
    "authentication",
    "no_stripe_customer",
    "foreign_card",
    "unlinked",
]
Provider = Literal["simulator", "stripe"]
STRIPE_KEY = "sk_test_chaos_" + secrets.token_hex(8)
#: stripe-link's cycle (by customer id), as the chaos categories
STRIPE_CATEGORIES: dict[str, Category] = {
    "pm_card_visa": "funded",
    "pm_card_chargeDeclinedInsufficientFunds": "insufficient",
    "pm_card_chargeDeclined": "declined",
    "pm_card_chargeDeclinedExpiredCard": "declined",
    "pm_card_authenticationRequired": "authentication",
    "missing_customer": "no_stripe_customer",
    "foreign_card": "foreign_card",
    "unlinked": "unlinked",
}
#: what a category other than funded ends in: (status, lastFailure)
EXPECTED_FAILURE: dict[str, tuple[str, str]] = {
    "insufficient": ("PENDING", "insufficient_funds"),
    "unknown": ("FAILED", "customer_not_found"),
    "other_currency": ("FAILED", "currency_mismatch"),
    "declined": ("FAILED", "card_declined"),
    "authentication": ("FAILED", "authentication_required"),
    "no_stripe_customer": ("FAILED", "customer_not_found"),
    "foreign_card": ("FAILED", "provider_rejected"),
    "unlinked": ("FAILED", "payment_method_missing"),
}
CATEGORIES: tuple[Category, ...] = (
    ("funded",) * 14 + ("insufficient",) * 2 + ("unknown",) * 2 + ("other_currency",) * 2
)


SUMMARY_STATS = (
    ("requests", "requests"),
    ("replays", "replays"),
    ("networkErrors", "network errors (503)"),
    ("ambiguous", "ambiguous (charged, then 500 or dropped)"),
    ("keyInUse", "key in use (409)"),
    ("rateLimited", "rate limited (429)"),
    ("unauthorized", "unauthorized (401)"),
    ("invalidRequests", "invalid request (400)"),
    # the fake Stripe's
    ("created", "PaymentIntents created"),
    ("succeeded", "succeeded"),
    ("declined", "declined (402)"),
    ("replayed", "replays"),
    ("server_errors", "5xx"),
    ("lost_answers", "answers lost (500 or dropped)"),
    ("rate_limited", "rate limited (429)"),
    ("in_use", "key in use (409)"),
    ("idempotency_errors", "idempotency_error (400)"),
    ("invalid", "invalid request (400)"),
)
#: The hostile faults, by the names `--hostile-faults` takes.
HOSTILE_FAULTS = ("retry-after", "key-in-use", "charge-id", "400-after-unknown", "401")
#: The hostile faults injected, as /admin/stats counts them under "hostile".
HOSTILE_STATS = (
    ("hostile.unauthorized", "401 in bursts"),
    ("hostile.unauthorizedBursts", "401 bursts"),
    ("hostile.badRetryAfter", "bad Retry-After"),
    ("hostile.badRetryAfterByStatus.429", "of them 429"),
    ("hostile.badRetryAfterByStatus.409", "of them 409"),
    ("hostile.keyInUse", "409 key in use"),
    ("hostile.badChargeId", "bad chargeId"),
    ("hostile.rejectedAfterUnknown", "400 after unknown"),
)
#: The events an outcome of a charge writes (domain/policy.py, billing/runs.py).
OUTCOME_EVENTS = (
    "invoice.paid",
    "invoice.payment_declined",
    "invoice.failed",
    "invoice.review",
    "invoice.payment_unknown",
    "invoice.rescheduled",
)


@dataclass
class ChaosConfig:
    database: Literal["sqlite", "postgres"]
    invoices: int = 5_000
    workers: int = 3
    concurrency: int = 20  # per worker: slow enough that the kills land mid-run
    kill_interval: float = 1.0
    min_kills: int = 5
    timeout: float = 150.0
    network_error_rate: float = 0.2
    ambiguous_rate: float = 0.05
    latency_ms: int = 10
    jitter_ms: int = 10
    seed: int = 0
    provider: Provider = "simulator"
    rate_limit_rate: float = 0.05  # the fake Stripe's 429s
    postgres_url: str | None = None
    workdir: Path | None = None
    # the hostile provider (see the module doc); its rates are shares of requests
    hostile: bool = False
    hostile_faults: tuple[str, ...] = HOSTILE_FAULTS  # the ones that are on
    bad_retry_after_rate: float = 0.02
    key_in_use_rate: float = 0.03
    bad_charge_id_rate: float = 0.05
    reject_after_unknown_rate: float = 0.3
    unauthorized_every: float = 8.0
    unauthorized_for: float = 1.5
    # the generation mode (tests/chaos/generation.py): subscriptions instead of invoices
    generation: bool = False
    customers: int = 120
    generators: int = 3  # processes generating at once
    generation_batch: int = 2  # customers per generation batch (small: many transactions)
    generation_kills: int = 4  # SIGKILLs mid-generation at each simulated moment, at most

    def simulator_flags(self) -> list[str]:
        flags = [
            "--network-error-rate", str(self.network_error_rate),
            "--ambiguous-rate", str(self.ambiguous_rate),
            "--latency-ms", str(self.latency_ms),
            "--jitter-ms", str(self.jitter_ms),
            "--seed", str(self.seed),
        ]  # fmt: skip
        if not self.hostile:
            return flags
        unknown = set(self.hostile_faults) - set(HOSTILE_FAULTS)
        if unknown:
            raise ValueError(f"unknown hostile faults {sorted(unknown)}; known: {HOSTILE_FAULTS}")
        on = set(self.hostile_faults)
        for fault, flag, value in (
            ("retry-after", "--bad-retry-after-rate", self.bad_retry_after_rate),
            ("key-in-use", "--key-in-use-rate", self.key_in_use_rate),
            ("charge-id", "--bad-charge-id-rate", self.bad_charge_id_rate),
            ("400-after-unknown", "--reject-after-unknown-rate", self.reject_after_unknown_rate),
        ):
            if fault in on:
                flags += [flag, str(value)]
        if "401" in on:
            flags += [
                "--unauthorized-every", str(self.unauthorized_every),
                "--unauthorized-for", str(self.unauthorized_for),
            ]  # fmt: skip
        return flags


@dataclass
class Expected:
    category: Category
    customer_id: int
    amount: Money


@dataclass
class ChaosReport:
    database: str
    provider: str = "simulator"
    invoices: int = 0
    hostile: bool = False
    worker_kills: int = 0
    api_kills: int = 0
    seconds: float = 0.0
    run_status: str = ""
    charges: int = 0
    provider_stats: dict[str, Any] = field(default_factory=dict)
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    by_category: dict[str, collections.Counter[str]] = field(default_factory=dict)
    events: collections.Counter[str] = field(default_factory=collections.Counter)
    # hostile faults: the statuses of the invoices each one hit
    hit: dict[str, collections.Counter[str]] = field(default_factory=dict)
    rare: list[str] = field(default_factory=list)  # allowed, with the reason
    generation_kills: int = 0  # generating processes SIGKILLed mid-generation
    generation_phases: list[str] = field(default_factory=list)  # what each moment did
    problems: list[str] = field(default_factory=list)  # broken invariants

    @property
    def kills(self) -> int:
        return self.worker_kills + self.api_kills

    def summary(self) -> str:
        lines = [
            f"chaos on {self.database}{' (hostile provider)' if self.hostile else ''}"
            f"{' through the fake Stripe' if self.provider == 'stripe' else ''}: "
            f"{self.invoices} invoices in {self.seconds:.1f} s, run {self.run_status}",
            f"  kills: {self.worker_kills} worker, {self.api_kills} api/serve"
            + (f", {self.generation_kills} generating" if self.generation_phases else ""),
            *(f"  generation {line}" for line in self.generation_phases),
            f"  provider: {self.charges} charges in the ledger; "
            + ", ".join(
                f"{name} {self.provider_stats[key]}"
                for key, name in SUMMARY_STATS
                if key in self.provider_stats
            ),
        ]
        if self.hostile:
            lines.append(
                "  hostile faults injected: "
                + ", ".join(
                    f"{name} {self.provider_stats.get(key, 0)}" for key, name in HOSTILE_STATS
                )
            )
            for fault, counts in sorted(self.hit.items()):
                lines.append(
                    f"    invoices hit by {fault}: "
                    + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none")
                )
        lines.append(
            "  outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        )
        for category, counts in sorted(self.by_category.items()):
            lines.append(
                f"    {category}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            )
        lines.append("  events: " + ", ".join(f"{k} {v}" for k, v in sorted(self.events.items())))
        lines.append(f"  rare but allowed: {len(self.rare)}")
        lines.extend(f"    {r}" for r in self.rare[:20])
        lines.append(f"  problems: {len(self.problems)}")
        kinds = collections.Counter(_kind(p) for p in self.problems)
        if len(kinds) > 1 or len(self.problems) > 1:
            lines.extend(f"    {n} x {kind}" for kind, n in kinds.most_common())
            lines.append("   the first ones:")
        lines.extend(f"    {p}" for p in self.problems[:50])
        return "\n".join(lines)


def _kind(problem: str) -> str:
    """A problem without its ids, numbers and quoted values, to count problems by kind."""
    text = re.sub(r"\[[^\]]*\]", "…", problem)  # lists of values
    text = re.sub(r"(?<=invoice )\d+|(?<=run )\d+", "N", text)
    text = re.sub(r"(?<=[\s(])'(?:[^'\\]|\\.)*'", "…", text)  # quoted values, not "ledger's"
    return re.sub(r"(?<!\w)(?!(?:400|401|409|429)\b)\d+", "N", text)  # not HTTP statuses


# -- processes -------------------------------------------------------------------------


class Process:
    """One `antaeus` command that can be killed and started again."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.args, self.env, self.log = name, args, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with self.log.open("ab") as sink:
            sink.write(f"--- start {self.starts} of {self.name}\n".encode())
            sink.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "antaeus", *self.args],
                env=self.env,
                stdout=sink,
                stderr=sink,
            )
        self.starts += 1

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


async def wait_http(url: str, process: Process, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if not process.alive():
                raise RuntimeError(f"{process.name} exited: {process.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{process.name} did not answer {url}: {process.log.read_text()[-3000:]}")


# -- databases -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def database_url(config: ChaosConfig, workdir: Path) -> AsyncIterator[str]:
    if config.database == "sqlite":
        yield f"sqlite:///{workdir / 'antaeus.db'}"
        return
    base = config.postgres_url or os.environ.get(PG_ENV)
    if not base:
        raise RuntimeError(f"{PG_ENV} is not set")
    name = f"antaeus_chaos_{secrets.token_hex(4)}"
    dsn = "postgresql://" + base.partition("://")[2]
    root, _, _ = dsn.rpartition("/")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield f"{root}/{name}"
    finally:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def load(url: str, config: ChaosConfig) -> tuple[dict[int, Expected], list[dict[str, Any]]]:
    """Due invoices, one per customer, and the provider's accounts for them."""
    rng = random.Random(config.seed)
    now = datetime.now(UTC)
    due = now - timedelta(days=1)
    currencies = list(ORIGINAL_CURRENCIES)
    plan: list[tuple[Category, Currency, int]] = [
        (rng.choice(CATEGORIES), rng.choice(currencies), rng.randrange(1_000, 50_000))
        for _ in range(config.invoices)
    ]
    db = Database(url)
    expected: dict[int, Expected] = {}
    accounts: list[dict[str, Any]] = []
    try:
        async with db.write() as conn:
            customer_ids = await CustomerRepository(conn).create_many(
                [(currency, "UTC") for _, currency, _ in plan], now
            )
            await InvoiceRepository(conn).insert_many(
                {
                    "customer_id": cid,
                    "currency": currency.value,
                    "amount_minor": minor,
                    "status": "PENDING",
                    "due_at": due,
                    "eligible_at": due,
                    "attempt_count": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for cid, (_, currency, minor) in zip(customer_ids, plan, strict=True)
            )
            rows = await conn.execute(select(invoices.c.id, invoices.c.customer_id))
            invoice_of = {r.customer_id: r.id for r in rows}
    finally:
        await db.dispose()
    for cid, (category, currency, minor) in zip(customer_ids, plan, strict=True):
        amount = Money.from_minor(minor, currency)
        if config.provider == "stripe":  # what stripe-link gives the customer
            kind, card = LINK_CYCLE[cid % len(LINK_CYCLE)]
            category = STRIPE_CATEGORIES[card if kind == "card" else kind]
        expected[invoice_of[cid]] = Expected(category, cid, amount)
        if category == "unknown" or config.provider == "stripe":
            continue
        if category == "funded":
            balance, account_currency = minor + rng.randrange(0, 100_000), currency
        elif category == "insufficient":
            balance, account_currency = rng.randrange(0, minor), currency
        else:
            account_currency = next(c for c in currencies if c is not currency)
            balance = 10_000_000
        accounts.append(
            {
                "customerId": cid,
                "currency": account_currency.value,
                "balance": str(Money.from_minor(balance, account_currency).value),
            }
        )
    return expected, accounts


# -- the run ---------------------------------------------------------------------------


async def run_chaos(config: ChaosConfig) -> ChaosReport:
    if config.provider == "stripe" and config.hostile:
        raise ValueError("--hostile is the simulator's; the fake Stripe has its own faults")
    report = ChaosReport(
        config.database, config.provider, invoices=config.invoices, hostile=config.hostile
    )
    with _workdir(config) as workdir:
        async with database_url(config, workdir) as url:
            if config.generation:
                from tests.chaos.generation import run_generation  # (it imports this module)

                await run_generation(config, report, workdir, url)
            elif config.provider == "stripe":
                await _run_stripe(config, report, workdir, url)
            else:
                await _run(config, report, workdir, url)
    return report


@contextlib.contextmanager
def _workdir(config: ChaosConfig) -> Iterator[Path]:
    if config.workdir is not None:
        config.workdir.mkdir(parents=True, exist_ok=True)
        yield config.workdir
        return
    with tempfile.TemporaryDirectory(prefix="antaeus-chaos-") as tmp:
        yield Path(tmp)


def _antaeus_env(config: ChaosConfig, url: str, api_port: int) -> dict[str, str]:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("ANTAEUS_")}
    return {
        **base_env,
        "ANTAEUS_DATABASE_URL": url,
        "ANTAEUS_SCHEDULE": "external",
        "ANTAEUS_API_TOKEN": TOKEN,
        "ANTAEUS_LEASE_SECONDS": "5",
        "ANTAEUS_BACKOFF_BASE_SECONDS": "0.2",
        "ANTAEUS_BACKOFF_MAX_SECONDS": "2",
        "ANTAEUS_WORKER_CONCURRENCY": str(config.concurrency),
        "ANTAEUS_BATCH_SIZE": str(config.concurrency),
        "ANTAEUS_LOG_LEVEL": "warning",
        "ANTAEUS_PORT": str(api_port),
        # the scheduler's reconciler would settle REVIEW invoices (invoice.resolved, back
        # to PENDING) in a run longer than its 300 s; the verdict is of the run alone
        "ANTAEUS_RECONCILE_INTERVAL": "0",  # the verdict expects no reconciler
    }


async def _migrate(env: dict[str, str]) -> None:
    migrate = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "antaeus", "db", "upgrade"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if migrate.returncode != 0:
        raise RuntimeError(f"db upgrade failed: {migrate.stderr}")


def _antaeus_processes(
    config: ChaosConfig, env: dict[str, str], workdir: Path
) -> tuple[Process, list[Process]]:
    embedded = config.database == "sqlite"
    api = Process(
        "serve" if embedded else "api",
        ["serve"] if embedded else ["serve", "--no-worker"],
        env,
        workdir / "api.log",
    )
    workers = [
        Process(f"worker-{i}", ["worker"], env, workdir / f"worker-{i}.log")
        for i in range(0 if embedded else config.workers)
    ]
    return api, workers


async def _open_run(api_url: str) -> int:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as client:
        answer = await client.post("/rest/v1/billing", headers={"Idempotency-Key": "chaos"})
        if answer.status_code != 202:
            raise RuntimeError(f"POST /billing answered {answer.status_code}: {answer.text}")
        return int(answer.json()["id"])


async def _run_stripe(config: ChaosConfig, report: ChaosReport, workdir: Path, url: str) -> None:
    """The run against the fake Stripe (see the module doc)."""
    rng = random.Random(config.seed)
    api_port = free_port()
    fake = FakeStripe(api_key=STRIPE_KEY, latency_ms=config.latency_ms, seed=config.seed)
    started = time.monotonic()
    with running_asgi(fake) as stripe_url:
        env = {
            **_antaeus_env(config, url, api_port),
            "ANTAEUS_PAYMENT_PROVIDER": "stripe",
            "ANTAEUS_STRIPE_API_KEY": STRIPE_KEY,
            "ANTAEUS_STRIPE_API_BASE": stripe_url,
        }
        await _migrate(env)
        expected, _ = await load(url, config)
        api, workers = _antaeus_processes(config, env, workdir)
        api_url = f"http://127.0.0.1:{api_port}"
        try:
            api.start()
            for worker in workers:
                worker.start()
            await wait_http(f"{api_url}/rest/health", api)
            linked = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "antaeus", "provider", "stripe-link", "--url", api_url],
                env=env, capture_output=True, text=True, timeout=1200, check=False,
            )  # fmt: skip
            if linked.returncode != 0:
                raise RuntimeError(f"stripe-link failed: {linked.stdout}{linked.stderr}")
            # the faults, from now on
            fake.server_error_rate = config.network_error_rate
            fake.lost_answer_rate = config.ambiguous_rate
            fake.rate_limit_rate = config.rate_limit_rate
            started = time.monotonic()
            run_id = await _open_run(api_url)
            await _kill_until_done(config, report, rng, url, run_id, api, workers, api_url)
            report.seconds = time.monotonic() - started
            for process in (api, *workers):
                process.stop()
            fake.server_error_rate = fake.lost_answer_rate = fake.rate_limit_rate = 0.0
            ledger = await _stripe_ledger(fake, url)
            report.provider_stats = dict(fake.stats.__dict__)
            await verify(url, run_id, expected, ledger, report)
        finally:
            for process in (api, *workers):
                process.stop()
            report.seconds = report.seconds or time.monotonic() - started


async def _stripe_ledger(fake: FakeStripe, url: str) -> list[dict[str, Any]]:
    """The fake's succeeded PaymentIntents, as the simulator's ledger shows charges."""
    db = Database(url)
    try:
        async with db.read() as conn:
            rows = await conn.execute(select(customers.c.id, customers.c.provider_customer_id))
            customer_of = {r.provider_customer_id: r.id for r in rows if r.provider_customer_id}
    finally:
        await db.dispose()
    ledger = []
    for pi in list(fake.state.intents.values()):
        if pi["status"] != "succeeded":
            continue
        currency = Currency(pi["currency"].upper())
        ledger.append(
            {
                "invoiceId": int(pi["metadata"]["antaeus_invoice"]),
                "value": str(Money.from_minor(int(pi["amount"]), currency).value),
                "currency": currency.value,
                "customerId": customer_of.get(pi["customer"], -1),
                "chargeId": pi["id"],
                "idempotencyKey": pi["metadata"]["antaeus_key"],
            }
        )
    return ledger


async def _run(config: ChaosConfig, report: ChaosReport, workdir: Path, url: str) -> None:
    rng = random.Random(config.seed)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("ANTAEUS_")}
    sim_port, api_port = free_port(), free_port()
    simulator = Process(
        "simulator",
        ["provider", "serve", "--port", str(sim_port), *config.simulator_flags()],
        base_env,
        workdir / "simulator.log",
    )
    sim_url = f"http://127.0.0.1:{sim_port}"
    env = {**_antaeus_env(config, url, api_port), "ANTAEUS_PAYMENT_PROVIDER_URL": sim_url}
    if config.hostile:
        # a 401 burst lasts 1.5 s: probe often enough to see it end; and a Retry-After
        # is waited for at most 5 s before the invoice is released for later
        env["ANTAEUS_PAUSE_PROBE_SECONDS"] = "1"
        env["ANTAEUS_RETRY_AFTER_MAX_SECONDS"] = "5"
    await _migrate(env)
    expected, accounts = await load(url, config)

    embedded = config.database == "sqlite"
    api = Process(
        "serve" if embedded else "api",
        ["serve"] if embedded else ["serve", "--no-worker"],
        env,
        workdir / "api.log",
    )
    workers = [
        Process(f"worker-{i}", ["worker", "--processes", "1"], env, workdir / f"worker-{i}.log")
        for i in range(0 if embedded else config.workers)
    ]
    everything = [simulator, api, *workers]
    api_url = f"http://127.0.0.1:{api_port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    started = time.monotonic()
    try:
        simulator.start()
        await wait_http(f"{sim_url}/v1/health", simulator)
        async with httpx.AsyncClient(base_url=sim_url, timeout=30) as sim:
            answer = await sim.post("/admin/accounts", json=accounts)
            answer.raise_for_status()
        api.start()
        for worker in workers:
            worker.start()
        await wait_http(f"{api_url}/rest/health", api)
        async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as client:
            answer = await client.post("/rest/v1/billing", headers={"Idempotency-Key": "chaos"})
            if answer.status_code != 202:
                raise RuntimeError(f"POST /billing answered {answer.status_code}: {answer.text}")
            run_id = int(answer.json()["id"])
        await _kill_until_done(config, report, rng, url, run_id, api, workers, api_url)
        report.seconds = time.monotonic() - started
        for process in (api, *workers):
            process.stop()
        async with httpx.AsyncClient(base_url=sim_url, timeout=60) as sim:
            ledger = (await sim.get("/admin/ledger")).json()["charges"]
            stats = (await sim.get("/admin/stats")).json()
            faults = (await sim.get("/admin/faults")).json()
        report.provider_stats = _flatten(stats)
        await verify(url, run_id, expected, ledger, report, faults)
    finally:
        for process in everything:
            process.stop()
        report.seconds = report.seconds or time.monotonic() - started


async def _kill_until_done(
    config: ChaosConfig,
    report: ChaosReport,
    rng: random.Random,
    url: str,
    run_id: int,
    api: Process,
    workers: list[Process],
    api_url: str,
) -> None:
    db = Database(url)
    deadline = time.monotonic() + config.timeout
    next_kill = time.monotonic() + config.kill_interval
    try:
        while True:
            async with db.read() as conn:
                status = await conn.scalar(
                    select(billing_runs.c.status).where(billing_runs.c.id == run_id)
                )
            report.run_status = str(status)
            if status == "completed":
                return
            if time.monotonic() > deadline:
                report.problems.append(f"the run did not complete in {config.timeout:.0f} s")
                return
            for process in (api, *workers):
                if not process.alive():  # a crash we did not cause is a finding
                    report.problems.append(f"{process.name} exited by itself")
                    process.start()
            if time.monotonic() >= next_kill:
                if workers and report.worker_kills == 3 and not report.api_kills:
                    api.kill()
                    report.api_kills += 1
                    api.start()
                elif workers:
                    victim = rng.choice(workers)
                    victim.kill()
                    report.worker_kills += 1
                    victim.start()
                else:  # the embedded process is everything: wait until it serves again
                    api.kill()
                    report.api_kills += 1
                    api.start()
                    await wait_http(f"{api_url}/rest/health", api)
                spread = rng.uniform(0.7, 1.3)
                next_kill = time.monotonic() + config.kill_interval * spread
            await asyncio.sleep(0.1)
    finally:
        await db.dispose()


def _flatten(stats: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(stats, dict):
        return {prefix or "value": stats}
    flat: dict[str, Any] = {}
    for key, value in stats.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        flat.update(_flatten(value, name) if isinstance(value, dict) else {name: value})
    return flat


# -- the verdict -----------------------------------------------------------------------


async def verify(
    url: str,
    run_id: int,
    expected: dict[int, Expected],
    ledger: list[dict[str, Any]],
    report: ChaosReport,
    faults: dict[str, list[dict[str, Any]]] | None = None,
) -> None:
    """Every invariant of the issue, on every invoice.

    - the ledger: nobody charged twice; every charge of the invoice's amount,
      currency and customer; every PAID invoice charged, its attempt holding the
      ledger's chargeId; every charged invoice PAID, or REVIEW, or (rare,
      reported) PENDING with the open attempt of that charge's key;
    - the categories: funded ends PAID, the others declined or failed for their
      reason (rare, reported: REVIEW, or PENDING with an open attempt);
    - the outbox: one `invoice.paid` per PAID invoice (with the ledger's
      chargeId), one `invoice.failed` per FAILED, one `invoice.review` per
      REVIEW, none of them otherwise; one `invoice.payment_declined` per decline
      (`dunning_count`); at least one `invoice.payment_unknown` for an invoice
      waiting on an unknown outcome;
    - nothing left PROCESSING, and the run completed.

    `faults` is the simulator's GET /admin/faults: an invoice whose repeat got a
    400 after an unknown outcome may end in REVIEW (it may have been charged),
    counted in `report.hit`, never FAILED.
    """
    db = Database(url)
    try:
        async with db.read() as conn:
            rows = {r.id: r for r in await conn.execute(select(invoices))}
            attempts: dict[int, list[Any]] = collections.defaultdict(list)
            for a in await conn.execute(select(charge_attempts)):
                attempts[a.invoice_id].append(a)
            outbox = (
                await conn.execute(select(events.c.type, events.c.invoice_id, events.c.payload))
            ).all()
            run_status = await conn.scalar(
                select(billing_runs.c.status).where(billing_runs.c.id == run_id)
            )
    finally:
        await db.dispose()
    problems, rare = report.problems, report.rare
    report.charges = len(ledger)
    if run_status != "completed":
        problems.append(f"run {run_id} is {run_status}, not completed")
    charges: dict[int, list[dict[str, Any]]] = collections.defaultdict(list)
    for charge in ledger:
        charges[int(charge["invoiceId"])].append(charge)
    for invoice_id, made in charges.items():
        if len(made) > 1:
            problems.append(f"invoice {invoice_id} charged {len(made)} times")
        if invoice_id not in rows:
            problems.append(f"invoice {invoice_id} charged but unknown to the database")
    events_of: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    paid_charge_ids: dict[int, list[Any]] = collections.defaultdict(list)
    for event in outbox:
        report.events[event.type] += 1
        if event.invoice_id is None or event.type == "invoice.created":
            continue  # (the generation mode checks one invoice.created per invoice)
        if event.type not in OUTCOME_EVENTS:
            problems.append(f"event {event.type} for invoice {event.invoice_id}: not an outcome")
        if event.invoice_id not in expected:
            problems.append(f"event {event.type} for invoice {event.invoice_id}, not one of ours")
        events_of[event.invoice_id][event.type] += 1
        if event.type == "invoice.paid":
            paid_charge_ids[event.invoice_id].append(
                json.loads(event.payload)["attempt"].get("chargeId")
            )
    hit_by: dict[str, set[int]] = {
        fault: {int(f["invoiceId"]) for f in hits} for fault, hits in (faults or {}).items()
    }
    if report.hostile:
        report.hit = {fault: collections.Counter() for fault in hit_by}
    rejected = hit_by.get("rejectedAfterUnknown", set())
    for invoice_id, want in expected.items():
        row = rows[invoice_id]
        status = row.status
        report.statuses[status] += 1
        report.by_category.setdefault(want.category, collections.Counter())[status] += 1
        made = charges.get(invoice_id, [])
        mine = sorted(attempts.get(invoice_id, []), key=lambda a: a.number)
        open_attempt = row.attempt_open_since is not None
        after_400 = invoice_id in rejected
        for fault, hit in hit_by.items():
            if invoice_id in hit and fault in report.hit:
                label = f"{status}, charged" if made and status != "PAID" else status
                report.hit[fault][label] += 1
        if status == "PROCESSING":
            problems.append(f"invoice {invoice_id} left PROCESSING")
        for charge in made:
            value = Decimal(str(charge["value"]))
            if (value, charge["currency"]) != (want.amount.value, want.amount.currency.value):
                problems.append(
                    f"invoice {invoice_id} charged {value} {charge['currency']}, not {want.amount}"
                )
            if int(charge["customerId"]) != want.customer_id:
                problems.append(f"invoice {invoice_id} charged to customer {charge['customerId']}")
        if (
            after_400
            and status not in ("PAID", "REVIEW")
            and not (status == "PENDING" and open_attempt)
        ):
            problems.append(
                f"invoice {invoice_id} got a 400 after an unknown outcome and is {status} "
                f"({row.last_failure}){', charged' if made else ''}: it may have been "
                "charged, so it must be REVIEW"
            )
        elif status == "PAID":
            if not made:
                problems.append(f"invoice {invoice_id} PAID but never charged")
            elif not any(a.charge_id == made[0]["chargeId"] for a in mine):
                shown = [a.charge_id[:40] for a in mine if a.charge_id]
                problems.append(
                    f"invoice {invoice_id} PAID without the ledger's charge id "
                    f"{made[0]['chargeId']!r} (its attempts hold {shown!r})"
                )
        elif made:
            key = made[0]["idempotencyKey"]
            holds = open_attempt and mine and mine[-1].idempotency_key == key
            if status == "REVIEW" and after_400:
                if not (mine and mine[-1].idempotency_key == key):
                    problems.append(
                        f"invoice {invoice_id} REVIEW after a 400, but its last attempt is not "
                        "the key that charged"
                    )
            elif status in ("REVIEW", "PENDING") and holds:
                rare.append(
                    f"invoice {invoice_id} charged, {status} with its open attempt "
                    f"({row.last_failure}): the answer was lost and not yet repeated"
                )
            else:
                problems.append(
                    f"invoice {invoice_id} charged but {status} ({row.last_failure}), "
                    "without the open attempt of that charge"
                )
        if want.category == "funded" and status != "PAID":
            if status == "REVIEW" or (status == "PENDING" and open_attempt):
                if not made and not after_400:
                    rare.append(f"funded invoice {invoice_id} {status} ({row.last_failure})")
            elif not after_400:  # (reported above)
                problems.append(
                    f"funded invoice {invoice_id} is {status} ({row.last_failure}), not PAID"
                )
        expected_failure = EXPECTED_FAILURE.get(want.category)
        if expected_failure and (status, row.last_failure) != expected_failure:
            if status in ("REVIEW", "PENDING") and open_attempt:
                rare.append(f"{want.category} invoice {invoice_id} {status} ({row.last_failure})")
            elif want.category == "foreign_card" and status == "REVIEW" and not made:
                # Stripe refused the card after an unknown outcome: a person looks
                rare.append(f"{want.category} invoice {invoice_id} REVIEW ({row.last_failure})")
            else:
                problems.append(
                    f"{want.category} invoice {invoice_id} is {status} ({row.last_failure}), "
                    f"not {expected_failure[0]} ({expected_failure[1]})"
                )
        _verify_events(invoice_id, row, made, events_of[invoice_id], paid_charge_ids, problems)


def _verify_events(
    invoice_id: int,
    row: Any,
    made: list[dict[str, Any]],
    seen: collections.Counter[str],
    paid_charge_ids: dict[int, list[Any]],
    problems: list[str],
) -> None:
    """One event per outcome (see `verify`)."""
    status = row.status
    exhausted = status == "FAILED" and row.last_failure == "insufficient_funds"
    want = {
        "invoice.paid": int(status == "PAID"),
        "invoice.failed": int(status == "FAILED"),
        "invoice.review": int(status == "REVIEW"),
        "invoice.payment_declined": row.dunning_count - int(exhausted),
    }
    for type_, n in want.items():
        if seen[type_] != n:
            problems.append(
                f"invoice {invoice_id} {status} ({row.last_failure}) has {seen[type_]} "
                f"{type_} events, not {n}"
            )
    waiting = status == "PENDING" and row.last_failure == "unknown_outcome"
    if waiting and not seen["invoice.payment_unknown"]:
        problems.append(f"invoice {invoice_id} waits on an unknown outcome without its event")
    if status == "PAID" and made and seen["invoice.paid"] == 1:
        carried = paid_charge_ids[invoice_id][0]
        if carried != made[0]["chargeId"]:
            shown = carried[:40] if isinstance(carried, str) else carried
            problems.append(
                f"invoice {invoice_id}: its invoice.paid event carries chargeId {shown!r}, "
                f"not the ledger's {made[0]['chargeId']!r}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--provider",
        choices=["simulator", "stripe"],
        default="simulator",
        help="the provider simulator, or the fake Stripe through the Stripe adapter",
    )
    parser.add_argument("--invoices", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument(
        "--timeout", type=float, default=150.0, help="seconds the run may take (then a problem)"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs here")
    parser.add_argument(
        "--hostile",
        action="store_true",
        help="a hostile provider: bad Retry-After values, 409s, malformed chargeIds, "
        "400 after an unknown outcome, 401 bursts (see the module doc)",
    )
    parser.add_argument(
        "--hostile-faults",
        default=",".join(HOSTILE_FAULTS),
        help=f"with --hostile, only these faults (comma-separated; default all: "
        f"{','.join(HOSTILE_FAULTS)})",
    )
    parser.add_argument(
        "--generation",
        action="store_true",
        help="the generation mode: subscriptions generated into invoices by several "
        "processes killed mid-generation, across downtime, then charged "
        "(tests/chaos/generation.py)",
    )
    parser.add_argument(
        "--customers", type=int, default=120, help="with --generation: how many customers"
    )
    args = parser.parse_args(argv)
    faults = tuple(f.strip() for f in args.hostile_faults.split(",") if f.strip())
    if set(faults) - set(HOSTILE_FAULTS):
        parser.error(f"--hostile-faults: unknown {sorted(set(faults) - set(HOSTILE_FAULTS))}")
    config = ChaosConfig(
        database=args.database,
        invoices=args.invoices,
        concurrency=args.concurrency,
        seed=args.seed,
        workdir=args.workdir,
        hostile=args.hostile,
        hostile_faults=faults,
        provider=args.provider,
        timeout=args.timeout,
        generation=args.generation,
        customers=args.customers,
    )
    report = asyncio.run(run_chaos(config))
    print(report.summary())
    print(f"  seed: {config.seed}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
