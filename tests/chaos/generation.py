"""The chaos test's generation mode (issue 21): invoices generated from subscriptions by
several processes at once, SIGKILLed mid-generation, across downtime; then charged by
the charge path under the harness's usual kills; then every period checked.

1. **Load** (in this process, through the real API at a simulated clock, T0 = about
   four months ago): customers spread over zones from UTC+14 to UTC-11 (a skipped
   midnight among them), in EUR, JPY and KWD, each with one or two calendar-monthly
   subscriptions starting between 45 days before and 20 days after T0 (their local
   date), some with a trial, some canceled at period end.
2. **Generate** at three simulated moments: T0 (the periods already due), T0 + 33
   days, then now (catch-up after about three months of downtime). At each, several
   `tests.chaos.generate_once` processes run `generate_due` against the same
   database at once, with small batches; some are SIGKILLed after a random number of
   committed batches (mid-generation) and started again. At T0 + 33 days, a tenth of
   the subscriptions are canceled at period end through the API meanwhile (requests
   that lock the customer and the subscription, as the generators do). After each
   moment the database is checked (`check_generation`).
3. **Charge**: the provider simulator (with faults, as the charge chaos test),
   `POST /rest/v1/billing`, and the harness's kills until the run completes; then
   `harness.verify` (nobody charged twice, every invoice charged its amount, one
   outcome event each) and `check_generation` once more.

`check_generation` never imports generation code: it computes each subscription's
periods with its own calendar-month arithmetic (the first period from the billing
start to the next 1st, prorated by days of that month, half up; then whole months;
nothing from `cancelAt` on) and asserts every (subscription, period) billed exactly
once, none skipped, none not due, each amount, each invoice's due moment (the first
instant of its start date in the customer's zone), one invoice per customer and date,
and exactly one `invoice.created` event per invoice.

    python -m tests.chaos.harness --generation --database sqlite
    ANTAEUS_TEST_POSTGRES_URL=... python -m tests.chaos.harness --generation \\
        --database postgres --customers 3000
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select

from antaeus.api.app import create_app
from antaeus.clock import ManualClock
from antaeus.config import Settings
from antaeus.domain.money import Currency, Money
from antaeus.storage.database import Database
from antaeus.storage.tables import events, invoice_lines, invoices

if TYPE_CHECKING:
    from tests.chaos.harness import ChaosConfig, ChaosReport

ROOT = Path(__file__).resolve().parents[2]
ZONES = (
    "UTC",
    "Pacific/Kiritimati",  # UTC+14
    "Pacific/Pago_Pago",  # UTC-11
    "America/Havana",  # midnight skipped in March
    "Asia/Tokyo",
    "Europe/Copenhagen",
    "America/New_York",
    "Asia/Kathmandu",  # UTC+5:45
)
#: a plan's price per currency (minor units) and its text
PRICES = {"EUR": (3000, "30.00"), "JPY": (1000, "1000"), "KWD": (7250, "7.250")}
TRIALS = (0, 0, 0, 0, 2, 7, 20)
Post = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
NOTICE_TYPES = ("subscription.canceled", "subscription.trial_will_end")


@dataclass(frozen=True)
class Sub:
    """A subscription as loaded: what the checker computes its periods from."""

    id: int
    customer_id: int
    zone: str
    currency: str
    price_minor: int
    quantity: int
    start: date
    trial_days: int
    cancel_at: date | None


def local_date(moment: datetime, zone: str) -> date:
    return moment.astimezone(ZoneInfo(zone)).date()


def expected_periods(sub: Sub, horizon: datetime) -> list[tuple[date, date, int]]:
    """(start, end, amount in minor units) of every period due by `horizon`: the checker's
    own calendar-month arithmetic (see the module docstring)."""
    today = local_date(horizon, sub.zone)
    day = sub.start + timedelta(days=sub.trial_days)
    found = []
    while day <= today and (sub.cancel_at is None or day < sub.cancel_at):
        following = date(day.year + day.month // 12, day.month % 12 + 1, 1)
        days = (following - day).days
        month_days = (following - day.replace(day=1)).days
        total = sub.price_minor * sub.quantity
        # half up (never negative here): floor(total x days / month_days + 1/2)
        amount = (2 * total * days + month_days) // (2 * month_days)
        found.append((day, following, amount))
        day = following
    return found


# -- load ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def api_at(url: str, now: datetime, token: str) -> AsyncIterator[Post]:
    """The real API in this process, its clock standing at `now`: a POST that answers
    the JSON of a 200 or 201 (anything else raises)."""
    db = Database(url)
    settings = Settings(DATABASE_URL=url, API_TOKEN=token)
    app = create_app(settings, clock=ManualClock(now), database=db)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://antaeus.chaos",
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            ) as client:

                async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
                    answer = await client.post(path, json=body)
                    if answer.status_code not in (200, 201):
                        raise RuntimeError(f"POST {path}: {answer.status_code} {answer.text}")
                    got: dict[str, Any] = answer.json()
                    return got

                yield post
    finally:
        await db.dispose()


def _cancel_at(shown: dict[str, Any]) -> date | None:
    return date.fromisoformat(shown["cancelAt"]) if shown["cancelAt"] else None


async def cancel_while_generating(
    url: str, subs: list[Sub], now: datetime, token: str, rng: random.Random, share: float
) -> int:
    """Cancel at period end a `share` of the subscriptions not canceled yet, through the
    API at `now`, while generators run (the customer's lock against theirs); `subs` is
    updated with each `cancelAt`. Answers how many."""
    candidates = [i for i, s in enumerate(subs) if s.cancel_at is None]
    chosen = rng.sample(candidates, int(len(candidates) * share))
    async with api_at(url, now, token) as post:
        for i in chosen:
            shown = await post(f"/rest/v1/subscriptions/{subs[i].id}/cancel", {})
            subs[i] = dataclasses.replace(subs[i], cancel_at=_cancel_at(shown))
            await asyncio.sleep(rng.uniform(0, 0.1))
    return len(chosen)


async def load_subscriptions(url: str, config: ChaosConfig, t0: datetime, token: str) -> list[Sub]:
    rng = random.Random(config.seed)
    subs: list[Sub] = []
    async with api_at(url, t0, token) as post:
        plans = {}
        for code, (_, text) in PRICES.items():
            plan = await post(
                "/rest/v1/plans",
                {
                    "code": f"monthly-{code.lower()}",
                    "name": f"Monthly {code}",
                    "amount": {"value": text, "currency": code},
                    "interval": "month",
                },
            )
            plans[code] = int(plan["id"])
        for i in range(config.customers):
            zone, currency = ZONES[i % len(ZONES)], rng.choice(sorted(PRICES))
            customer = await post("/rest/v1/customers", {"currency": currency, "timezone": zone})
            for _ in range(1 + (rng.random() < 0.3)):
                start = local_date(t0, zone) + timedelta(days=rng.randint(-45, 20))
                body = {
                    "customerId": customer["id"],
                    "planId": plans[currency],
                    "quantity": rng.randint(1, 3),
                    "startDate": start.isoformat(),
                    "trialDays": rng.choice(TRIALS),
                    "billingAnchor": "calendar",
                }
                sub = await post("/rest/v1/subscriptions", body)
                if rng.random() < 0.1:
                    sub = await post(
                        f"/rest/v1/subscriptions/{sub['id']}/cancel", {"at": "period_end"}
                    )
                subs.append(
                    Sub(
                        id=int(sub["id"]),
                        customer_id=int(customer["id"]),
                        zone=zone,
                        currency=currency,
                        price_minor=PRICES[currency][0],
                        quantity=int(body["quantity"]),
                        start=start,
                        trial_days=int(body["trialDays"]),
                        cancel_at=_cancel_at(sub),
                    )
                )
    return subs


# -- generating processes --------------------------------------------------------------


@dataclass
class _Generator:
    log: Path
    proc: subprocess.Popen[bytes]
    kill_after: int | None  # committed batches before its SIGKILL (None: left alone)

    def batches(self) -> int:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return 0
        return sum(1 for line in text.splitlines() if line.startswith("batch "))


async def generate_with_kills(
    config: ChaosConfig,
    report: ChaosReport,
    url: str,
    now: datetime,
    workdir: Path,
    phase: str,
    rng: random.Random,
) -> None:
    """`config.generators` processes generating at `now` at once; up to
    `config.generation_kills` SIGKILLs, each after a random number of committed batches
    of its victim, which is started again. Returns when every process finished."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTAEUS_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    starts = 0
    kills = 0

    def launch() -> _Generator:
        nonlocal starts
        starts += 1
        log = workdir / f"generate-{phase}-{starts}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [
                    sys.executable, "-m", "tests.chaos.generate_once",
                    "--url", url,
                    "--now", now.isoformat(),
                    "--batch-size", str(config.generation_batch),
                ],
                env=env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        victim = kills < config.generation_kills  # (until enough were killed)
        return _Generator(log, proc, rng.randint(1, 3) if victim else None)

    running = [launch() for _ in range(config.generators)]
    deadline = time.monotonic() + config.timeout
    while running:
        if time.monotonic() > deadline:
            report.problems.append(f"generation at {now:%Y-%m-%d} did not finish in time")
            for g in running:
                g.proc.kill()
            return
        for g in list(running):
            code = g.proc.poll()
            if code is None:
                victim = g.kill_after is not None and kills < config.generation_kills
                if victim and g.batches() >= (g.kill_after or 0):
                    g.proc.send_signal(signal.SIGKILL)
                    g.proc.wait(timeout=30)
                    kills += 1
                    report.generation_kills += 1
                    running.remove(g)
                    running.append(launch())
                continue
            running.remove(g)
            if code != 0:
                tail = g.log.read_text(errors="replace")[-2000:]
                report.problems.append(f"a generator at {now:%Y-%m-%d} exited {code}: {tail}")
        await asyncio.sleep(0.02)
    report.generation_phases.append(
        f"at {now:%Y-%m-%d %H:%M} UTC: {starts} generator processes, "
        f"{kills} SIGKILLed mid-generation"
    )


# -- the verdict -----------------------------------------------------------------------


async def check_generation(
    url: str,
    subs: list[Sub],
    horizon: datetime,
    report: ChaosReport,
    label: str,
    late_until: datetime | None = None,
    moments: list[datetime] | None = None,
) -> dict[int, tuple[int, Money]]:
    """Every period due by `horizon` billed exactly once with its amount, nothing else
    (a period due after `horizon` but by `late_until` may be billed, once); answers each
    invoice's customer and amount as the checker computes them.

    With `moments` (every moment generation ran at, the load's first): one
    `subscription.canceled` for each subscription whose `cancelAt` has begun by
    `horizon`, none for the others; at most one `subscription.trial_will_end` each, and
    exactly one when some moment fell between the first instants of trialEndDate - 3
    days and trialEndDate."""
    db = Database(url)
    try:
        async with db.read() as conn:
            rows = {r.id: r for r in await conn.execute(select(invoices))}
            lines = list(await conn.execute(select(invoice_lines)))
            created = collections.Counter(
                r.invoice_id
                for r in await conn.execute(
                    select(events.c.invoice_id).where(events.c.type == "invoice.created")
                )
            )
            notices = collections.Counter(
                (r.type, json.loads(r.payload)["subscription"]["id"])
                for r in await conn.execute(
                    select(events.c.type, events.c.payload).where(events.c.type.in_(NOTICE_TYPES))
                )
            )
    finally:
        await db.dispose()
    problems = report.problems
    by_id = {s.id: s for s in subs}
    seen: collections.Counter[tuple[int, date]] = collections.Counter()
    got: dict[int, set[tuple[date, date, int]]] = collections.defaultdict(set)
    of_invoice: dict[int, list[Any]] = collections.defaultdict(list)
    for line in lines:
        of_invoice[line.invoice_id].append(line)
        if line.kind != "subscription":
            problems.append(f"{label}: invoice {line.invoice_id} has a {line.kind} line")
            continue
        seen[(line.subscription_id, line.period_start)] += 1
        got[line.subscription_id].add((line.period_start, line.period_end, line.amount_minor))
    for (sid, start), n in seen.items():
        if n > 1:
            problems.append(f"{label}: subscription {sid} billed {n} times for {start}")
    lines_total = 0
    wanted_amount: dict[tuple[int, date], int] = {}
    for sub in subs:
        due = expected_periods(sub, horizon)
        may = expected_periods(sub, late_until) if late_until else due
        mine = got.pop(sub.id, set())
        lines_total += len(mine)
        for period in set(due) - mine:
            problems.append(f"{label}: subscription {sub.id} not billed (or wrongly) for {period}")
        for period in mine - set(may):
            problems.append(f"{label}: subscription {sub.id} billed {period}, not due or wrong")
        for start, _, amount in may:
            wanted_amount[(sub.id, start)] = amount
    for sid in got:
        problems.append(f"{label}: lines of subscription {sid}, which was not loaded")
    one_per_date: collections.Counter[tuple[int, date]] = collections.Counter()
    expected: dict[int, tuple[int, Money]] = {}
    for invoice_id, row in rows.items():
        mine = of_invoice.get(invoice_id, [])
        if created[invoice_id] != 1:
            n = created[invoice_id]
            problems.append(f"{label}: invoice {invoice_id} has {n} invoice.created events")
        if not mine:
            problems.append(f"{label}: invoice {invoice_id} has no lines")
            continue
        if sum(x.amount_minor for x in mine) != row.amount_minor:
            problems.append(f"{label}: invoice {invoice_id}'s amount is not its lines' sum")
        starts = {x.period_start for x in mine}
        owners = {by_id[x.subscription_id].customer_id for x in mine if x.subscription_id in by_id}
        if len(starts) != 1 or owners != {row.customer_id}:
            problems.append(f"{label}: invoice {invoice_id} mixes {starts} of customers {owners}")
            continue
        start = starts.pop()
        one_per_date[(row.customer_id, start)] += 1
        zone = by_id[mine[0].subscription_id].zone
        due = row.due_at
        first = local_date(due, zone) == start > local_date(due - timedelta(microseconds=1), zone)
        if not first:
            problems.append(
                f"{label}: invoice {invoice_id} due {due}, not the first instant of {start} "
                f"in {zone}"
            )
        amount = sum(wanted_amount.get((x.subscription_id, start), 0) for x in mine)
        expected[invoice_id] = (row.customer_id, Money.from_minor(amount, Currency(row.currency)))
    for (cid, start), n in one_per_date.items():
        if n > 1:
            problems.append(f"{label}: customer {cid} has {n} invoices for {start}")
    for invoice_id in set(created) - set(rows):
        problems.append(f"{label}: invoice.created for invoice {invoice_id}, which does not exist")
    if moments is not None:
        _check_notices(subs, horizon, moments, notices, label, problems)
    report.generation_phases.append(
        f"  checked at {horizon:%Y-%m-%d %H:%M} UTC: {len(rows)} invoices, "
        f"{lines_total} periods of {len(subs)} subscriptions"
    )
    return expected


def _check_notices(
    subs: list[Sub],
    horizon: datetime,
    moments: list[datetime],
    notices: collections.Counter[tuple[str, int]],
    label: str,
    problems: list[str],
) -> None:
    for sub in subs:
        canceled = notices[("subscription.canceled", sub.id)]
        ended = sub.cancel_at is not None and sub.cancel_at <= local_date(horizon, sub.zone)
        if canceled != int(ended):
            problems.append(
                f"{label}: subscription {sub.id} (cancelAt {sub.cancel_at}) has {canceled} "
                f"subscription.canceled events, not {int(ended)}"
            )
        told = notices[("subscription.trial_will_end", sub.id)]
        if not sub.trial_days:
            if told:
                problems.append(f"{label}: subscription {sub.id} has no trial, yet was told")
            continue
        trial_end = sub.start + timedelta(days=sub.trial_days)
        notice_on = trial_end - timedelta(days=3)
        due = any(notice_on <= local_date(m, sub.zone) < trial_end for m in moments)
        if told > 1 or (due and told != 1):
            problems.append(
                f"{label}: subscription {sub.id} (trial to {trial_end}) has {told} "
                "subscription.trial_will_end events" + (", one was due" if due else "")
            )


# -- the whole mode --------------------------------------------------------------------


async def run_generation(config: ChaosConfig, report: ChaosReport, workdir: Path, url: str) -> None:
    from tests.chaos import harness  # (harness imports this module)

    rng = random.Random(config.seed)
    started = time.monotonic()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("ANTAEUS_")}
    sim_port, api_port = harness.free_port(), harness.free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    env = {
        **harness._antaeus_env(config, url, api_port),
        "ANTAEUS_PAYMENT_PROVIDER_URL": sim_url,
        # the events of the simulated past are months old: the relay must not prune them
        "ANTAEUS_EVENT_RETENTION": str(10 * 366 * 86400),
    }
    await harness._migrate(env)
    real_now = datetime.now(UTC).replace(microsecond=0)
    t0 = real_now - timedelta(days=120)
    subs = await load_subscriptions(url, config, t0, harness.TOKEN)
    report.generation_phases.append(
        f"loaded {len(subs)} subscriptions in {time.monotonic() - started:.1f} s"
    )
    report.invoices = 0
    for phase, moment in (("t0", t0), ("t1", t0 + timedelta(days=33)), ("now", real_now)):
        began = time.monotonic()
        generating = asyncio.create_task(
            generate_with_kills(config, report, url, moment, workdir, phase, rng)
        )
        canceled = 0
        if phase == "t1":  # requests that lock what the generators lock, meanwhile
            await asyncio.sleep(1.0)
            canceled = await cancel_while_generating(url, subs, moment, harness.TOKEN, rng, 0.1)
        await generating
        report.generation_phases[-1] += f" ({time.monotonic() - began:.1f} s)"
        if canceled:
            report.generation_phases[-1] += f", {canceled} canceled through the API meanwhile"
        await check_generation(url, subs, moment, report, f"after {phase}")
        if report.problems:
            return

    # charge what was generated, as the charge chaos test charges
    simulator = harness.Process(
        "simulator",
        ["provider", "serve", "--port", str(sim_port), *config.simulator_flags()],
        base_env,
        workdir / "simulator.log",
    )
    api, workers = harness._antaeus_processes(config, env, workdir)
    api_url = f"http://127.0.0.1:{api_port}"
    accounts = [
        {
            "customerId": cid,
            "currency": currency,
            "balance": str(Money.from_minor(10**11, Currency(currency)).value),
        }
        for cid, currency in sorted({(s.customer_id, s.currency) for s in subs})
    ]
    try:
        simulator.start()
        await harness.wait_http(f"{sim_url}/v1/health", simulator)
        async with httpx.AsyncClient(base_url=sim_url, timeout=30) as sim:
            (await sim.post("/admin/accounts", json=accounts)).raise_for_status()
        api.start()
        for worker in workers:
            worker.start()
        await harness.wait_http(f"{api_url}/rest/health", api)
        began = time.monotonic()
        run_id = await harness._open_run(api_url)
        opened = datetime.now(UTC)
        await harness._kill_until_done(config, report, rng, url, run_id, api, workers, api_url)
        report.generation_phases.append(f"charged in {time.monotonic() - began:.1f} s")
        for process in (api, *workers):
            process.stop()
        async with httpx.AsyncClient(base_url=sim_url, timeout=60) as sim:
            ledger = (await sim.get("/admin/ledger")).json()["charges"]
            stats = (await sim.get("/admin/stats")).json()
        report.provider_stats = harness._flatten(stats)
        # generation may run again when the run opens (every path that opens a run
        # generates first): periods due by then may be billed too, once
        amounts = await check_generation(
            url,
            subs,
            real_now,
            report,
            "after the run",
            late_until=opened + timedelta(seconds=10),
            moments=[t0, t0 + timedelta(days=33), real_now],
        )
        report.invoices = len(amounts)
        expected = {
            invoice_id: harness.Expected("funded", cid, amount)
            for invoice_id, (cid, amount) in amounts.items()
        }
        await harness.verify(url, run_id, expected, ledger, report)
    finally:
        for process in (simulator, api, *workers):
            process.stop()
        report.seconds = time.monotonic() - started
