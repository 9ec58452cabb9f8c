"""`antaeus worker` and `antaeus bill`."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from antaeus.cli.common import (
    err,
    fail,
    freeze_heap,
    load_settings,
    out,
    prepare,
    run,
    serve_metrics,
    start_multiprocess_metrics,
)
from antaeus.cli.stopping import GracefulStop, stopped_line
from antaeus.security import mask_url, scrub

if TYPE_CHECKING:
    from rich.progress import ProgressColumn
    from rich.table import Table

    from antaeus.billing.worker import WorkerStats
    from antaeus.cli.supervise import Supervisor
    from antaeus.config import Settings
    from antaeus.storage.database import Database

# What the commands need beyond this is imported when they run (see antaeus.cli.common).

OUTCOMES = ("paid", "failed", "review", "rescheduled", "void")


async def _wait_for_schema(db: Database, stop: asyncio.Event) -> None:
    """Workers never migrate; they wait for `serve` or `antaeus db upgrade` to do it."""
    from antaeus.cli.common import newer_schema
    from antaeus.storage import migrate
    from antaeus.storage.problems import database_problem

    warned = False
    while not stop.is_set():
        try:
            current = await migrate.current_revision(db)
            if current == migrate.head_revision():
                return
            if not migrate.is_known(current):
                fail(newer_schema(current))
            reason = "the database schema is not current (run `antaeus db upgrade`)"
        except typer.Exit:
            raise
        except Exception as exc:  # unreachable database: say so, keep trying
            problem = database_problem(exc, db.url)
            if problem is not None and problem.lasting:  # waiting does not help
                fail(escape(problem.message))
            reason = (
                problem.message
                if problem is not None
                else f"cannot reach the database: {scrub(str(exc), db.url)}"
            )
        if not warned:
            err.print(f"[yellow]waiting:[/] {reason}", highlight=False)
            warned = True
        await asyncio.sleep(2)


def _failpoint() -> Callable[[str, list[Any]], None] | None:
    """`ANTAEUS_FAILPOINT=<step>` makes this worker SIGKILL itself at that step (crash tests).

    Steps: after_claim (attempts written ahead, nothing sent), before_record
    (the provider answered; nothing recorded), before_commit (outcomes written,
    not committed).
    """
    point = os.environ.get("ANTAEUS_FAILPOINT")
    if not point:
        return None

    def hook(step: str, _batch: list[Any]) -> None:
        if step == point:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, max=10_000, help="provider calls in flight [ANTAEUS_WORKER_CONCURRENCY]"
        ),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="serve Prometheus metrics on this port")
    ] = None,
    no_relay: Annotated[
        bool,
        typer.Option("--no-relay", help="do not deliver events (webhooks, RabbitMQ) from here"),
    ] = False,
    processes: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=1024,
            help="worker processes under this one (default: one per core on PostgreSQL, "
            "1 on SQLite)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Charge the invoices of open runs (run as many as you like, on any machine).

    It also relays the outbox's events to their destinations, unless --no-relay.

    Stops gracefully on SIGTERM: finishes the calls in flight, records them, exits.
    With --processes N above 1 it supervises N worker processes: it forwards the
    signal to them, restarts one that dies, and prints one line for all of them
    (--metrics-port then serves the sum of their metrics).
    """
    from antaeus.cli.supervise import SupervisedChild, default_processes

    settings = load_settings()
    count = processes or default_processes(settings.DATABASE_URL)
    if count > 1:
        # the children's metrics, summed: multiprocess mode, chosen before
        # anything imports prometheus_client (only when someone can scrape them)
        metrics_dir = start_multiprocess_metrics() if metrics_port else None
        if metrics_port:
            serve_metrics(metrics_port, settings.HOST)
        args = ["worker", "--processes", "1"]
        args += ["--concurrency", str(concurrency)] if concurrency else []
        args += ["--no-relay"] if no_relay else []
        stats, failure = run(_supervise_workers(settings, count, args, concurrency, metrics_dir))
        if failure is not None:
            fail(failure)
        err.print(stopped_line(stats), highlight=False, soft_wrap=True)
        return
    from antaeus.billing.worker import Worker, WorkerStats, worker_settings
    from antaeus.clock import SystemClock
    from antaeus.notify.factory import build_relay
    from antaeus.payments.factory import ProviderConfigError, build_provider
    from antaeus.storage.database import Database

    if metrics_port:
        serve_metrics(metrics_port, settings.HOST)
    supervised = SupervisedChild.from_environment()

    async def main() -> WorkerStats:
        stopping = GracefulStop()
        stopping.install()
        stop = stopping.event
        if supervised is not None:
            supervised.watch_parent(lambda: stopping.request(signal.SIGTERM))
        db = Database.from_settings(settings)
        try:
            provider = build_provider(settings, concurrency)
        except ProviderConfigError as exc:
            fail(str(exc))
        try:
            await _wait_for_schema(db, stop)
            if stop.is_set():
                return WorkerStats()
            w = Worker(
                db,
                provider,
                SystemClock(),
                settings.policy(provider.deduplicates_keys),
                worker_settings(settings, concurrency),
                crash_hook=_failpoint(),
            )
            relay = None if no_relay else build_relay(db, SystemClock(), settings)
            freeze_heap()
            relaying = asyncio.create_task(relay.run(stop)) if relay is not None else None
            try:
                await w.run(stop)
            finally:
                stop.set()
                if relaying is not None:
                    await asyncio.gather(relaying, return_exceptions=True)
                if relay is not None:
                    await relay.aclose()
            return w.stats
        finally:
            await provider.aclose()
            await db.dispose()

    stats = run(main())
    if supervised is not None:  # the supervisor prints one line for all its workers
        supervised.report(stats)
        return
    err.print(stopped_line(stats), highlight=False, soft_wrap=True)


async def _check_provider(settings: Settings, concurrency: int | None = None) -> None:
    """Fail now on a provider misconfiguration, rather than in every worker process."""
    from antaeus.payments.factory import ProviderConfigError, build_provider

    try:
        provider = build_provider(settings, concurrency)
    except ProviderConfigError as exc:
        fail(str(exc))
    await provider.aclose()


async def _supervise_workers(
    settings: Settings,
    count: int,
    args: list[str],
    concurrency: int | None,
    metrics_dir: str | None = None,
) -> tuple[WorkerStats, str | None]:
    """`worker --processes N`: wait for the schema here (once), then run N workers."""
    from antaeus.cli.supervise import Supervisor
    from antaeus.storage.database import Database

    stopping = GracefulStop()
    stopping.install()
    await _check_provider(settings, concurrency)
    db = Database.from_settings(settings)
    try:
        await _wait_for_schema(db, stopping.event)
    finally:
        await db.dispose()  # before the children start: they open their own
    supervisor = Supervisor(args, count, metrics_dir=metrics_dir)
    if stopping.requested:
        return supervisor.totals, None
    stopping.listen(supervisor.forward)
    try:
        await supervisor.run(stopping.event)
    finally:
        await supervisor.aclose()
    return supervisor.totals, supervisor.failure


def _summary(run_json: dict[str, Any]) -> Table:
    from rich.table import Table

    table = Table(title=f"billing run {run_json['id']} ({run_json['status']})")
    table.add_column("outcome")
    table.add_column("invoices", justify="right")
    counts = run_json["counts"]
    table.add_row("due", f"{counts['due']:,}")
    for name in OUTCOMES:
        table.add_row(name, f"{counts.get(name, 0):,}")
    for money in run_json["collected"]:
        table.add_row(f"collected {money['currency']}", f"{money['value']:,}")
    return table


def _columns() -> tuple[ProgressColumn, ...]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    class EndColumn(ProgressColumn):
        """The run's expected end (local time) and what is left of it, from the recent pace."""

        max_refresh = 1.0

        def render(self, task: Task) -> Text:
            left = task.time_remaining
            if task.finished or left is None or task.completed < 1:
                return Text("")
            end = datetime.now().astimezone() + timedelta(seconds=left)
            return Text(f"ends ~{end:%H:%M:%S} ({timedelta(seconds=round(left))} left)")

    return (
        TextColumn("run {task.fields[run]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        EndColumn(),
    )


#: (status, invoices without an outcome, paused reason) of the run being followed
RunProgress = tuple[str, int, str | None]


async def _follow(
    fetch: Callable[[], Awaitable[dict[str, Any]]],
    deadline: float,
    stop: asyncio.Event,
    tick: Callable[[], Awaitable[None]] | None = None,
    progress: Callable[[], Awaitable[RunProgress]] | None = None,
) -> dict[str, Any]:
    """Show a progress bar until the run completes, `deadline` (monotonic; inf: none)
    passes or `stop` is set; answers the run's last state.

    `progress`, when given, is polled instead of `fetch` (which counts every
    membership of the run and sums what it collected: its cost grows with the
    run), and `fetch` is called once more at the end.
    """
    state = await fetch()
    if progress is not None:
        await _follow_bar(state, progress, deadline, stop, tick)
        return await fetch()
    latest = state

    async def from_fetch() -> RunProgress:
        nonlocal latest
        latest = await fetch()
        counts = latest["counts"]
        done = sum(counts.get(k, 0) for k in OUTCOMES)
        return latest["status"], counts["due"] - done, latest["pausedReason"]

    await _follow_bar(state, from_fetch, deadline, stop, tick)
    return latest


async def _follow_bar(
    state: dict[str, Any],
    progress: Callable[[], Awaitable[RunProgress]],
    deadline: float,
    stop: asyncio.Event,
    tick: Callable[[], Awaitable[None]] | None,
) -> None:
    """`_follow`'s bar, from `progress` (the run's members do not change while it runs)."""
    from rich.progress import Progress

    due = state["counts"]["due"]
    with Progress(*_columns(), console=err, transient=False) as bar:
        task = bar.add_task("billing", total=due, run=state["id"], detail="")
        next_poll = 0.0
        while True:
            if time.monotonic() >= next_poll:
                started = time.monotonic()
                status, left, paused = await progress()
                # counting what is left costs what is left: at most a tenth of the time
                next_poll = started + max(0.25, 10 * (time.monotonic() - started))
                detail = f"paused: {paused}" if paused else ""
                bar.update(task, completed=due - left, detail=detail)
                if status == "completed" or time.monotonic() >= deadline:
                    return
            if stop.is_set():
                return
            if tick is not None:
                await tick()
            else:
                await asyncio.sleep(0.25)


#: what `bill` followed: each run's last state (resumed runs first, the new run last)
Followed = list[dict[str, Any]]
#: (status, reason, count, first invoice ids) of what the followed runs left for a person
NeedsPersonRows = list[tuple[str, str, int, list[int]]]


async def _open_runs(db: Database) -> list[tuple[int, int, int]]:
    """(run id, invoices, invoices left) of every run still open, oldest first."""
    from antaeus.storage.repositories.billing import BillingRepository

    async with db.read() as conn:
        repo = BillingRepository(conn)
        found = []
        for run_id in sorted(await repo.running_run_ids()):
            due = (await repo.run_stats([run_id]))[run_id].counts["due"]
            found.append((run_id, due, await repo.open_members(run_id)))
        return found


async def _bill_direct(
    settings: Settings, deadline: float, processes: int, *, summarize: bool = False
) -> tuple[Followed, GracefulStop, WorkerStats, NeedsPersonRows]:
    """Resume the runs left open, then open a run and follow it; charges here (or in
    `processes` workers). With `summarize`, also answers what the runs left for a person."""
    from antaeus.billing.generation import generate_due
    from antaeus.billing.runs_view import runs_json
    from antaeus.billing.service import open_run
    from antaeus.billing.worker import Worker, worker_settings
    from antaeus.cli.supervise import Supervisor
    from antaeus.clock import SystemClock
    from antaeus.payments.factory import ProviderConfigError, build_provider
    from antaeus.storage.database import Database
    from antaeus.storage.repositories.billing import BillingRepository

    stopping = GracefulStop()
    stopping.install()
    db = Database.from_settings(settings)
    try:
        provider = build_provider(settings)
    except ProviderConfigError as exc:
        fail(str(exc))
    clock = SystemClock()
    supervisor: Supervisor | None = None
    try:
        await prepare(db, allow_migrate=True)
        # A run left open (a Ctrl-C, a crash) is finished first: its invoices
        # belong to it, and a new run would only take what is due besides them.
        resumed = await _open_runs(db)
        for run_id, due, left in resumed:
            err.print(
                f"resuming run {run_id}: {left:,} of {due:,} invoices left "
                "(it was left open; it completes before a new run opens)",
                highlight=False,
                soft_wrap=True,
            )

        def fetcher(run_id: int) -> Callable[[], Awaitable[dict[str, Any]]]:
            async def fetch() -> dict[str, Any]:
                async with db.read() as conn:
                    return (await runs_json(conn, [run_id]))[0]

            return fetch

        def progresser(run_id: int) -> Callable[[], Awaitable[RunProgress]]:
            async def progress() -> RunProgress:
                async with db.read() as conn:
                    repo = BillingRepository(conn)
                    run = await repo.get_run(run_id)
                    paused, _ = await repo.pause_state()
                    left = await repo.open_members(run_id)
                return (run.status if run else "completed", left, paused)

            return progress

        stop = asyncio.Event()  # set by a signal, the runs' end or the timeout
        if processes > 1:
            # The run is open (once, here); N worker processes charge it and
            # this process follows it (its provider only checked the settings).
            supervisor = Supervisor(["worker", "--processes", "1", "--no-relay"], processes)
            stopping.listen(supervisor.forward)
            charging = asyncio.create_task(supervisor.run(stop))
            w = None
        else:
            w = Worker(
                db,
                provider,
                clock,
                settings.policy(provider.deduplicates_keys),
                worker_settings(settings),
            )
            freeze_heap()
            charging = asyncio.create_task(w.run(stop))

        async def tick() -> None:
            if charging.done():
                charging.result()  # the worker failed: say why rather than wait
                if supervisor is not None and supervisor.failure:
                    fail(supervisor.failure)
            await asyncio.sleep(0.1)

        followed: Followed = []
        try:
            for run_id, _, _ in resumed:
                state = await _follow(
                    fetcher(run_id), deadline, stopping.event, tick, progresser(run_id)
                )
                followed.append(state)
                if state["status"] != "completed":  # stopped or out of time
                    break
            else:
                # every subscription period due by now becomes its invoice first
                generated = await generate_due(db, clock)
                if generated.invoices:
                    err.print(
                        f"generated {generated.invoices:,} invoices from subscriptions",
                        highlight=False,
                    )
                opened = await open_run(db, clock, settings.policy(), "cli")
                if opened is None:  # only a run that may be skipped is ever None
                    fail("no run was opened")
                followed.append(
                    await _follow(
                        fetcher(opened), deadline, stopping.event, tick, progresser(opened)
                    )
                )
        finally:
            stop.set()  # the workers record the calls in flight, then return
            await charging
            if supervisor is not None:
                await supervisor.aclose()
        if supervisor is not None and supervisor.failure:
            fail(supervisor.failure)
        followed = [await fetcher(state["id"])() for state in followed]
        waiting: NeedsPersonRows = []
        if summarize:
            async with db.read() as conn:
                waiting = await BillingRepository(conn).needs_person([s["id"] for s in followed])
        stats = w.stats if w is not None else supervisor_totals(supervisor)
        return followed, stopping, stats, waiting
    finally:
        stopping.uninstall()
        await provider.aclose()
        await db.dispose()


def supervisor_totals(supervisor: Supervisor | None) -> WorkerStats:
    from antaeus.billing.worker import WorkerStats

    return supervisor.totals if supervisor is not None else WorkerStats()


async def _bill_remote(
    url: str, token: str, deadline: float
) -> tuple[dict[str, Any], GracefulStop]:
    import httpx

    from antaeus import exactjson

    stopping = GracefulStop()
    stopping.install()
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=30) as client:
        try:
            response = await client.post("/rest/v1/billing", json={"trigger": "cli"})
        except httpx.HTTPError as exc:
            fail(f"cannot reach {mask_url(url)}: {scrub(str(exc), url)}")
        if response.status_code != 202:
            fail(f"{mask_url(url)} answered {response.status_code}: {response.text[:500]}")
        run_id = response.json()["id"]

        async def fetch() -> dict[str, Any]:
            r = await client.get(f"/rest/v1/billing/runs/{run_id}")
            r.raise_for_status()
            body: dict[str, Any] = exactjson.loads(r.content)  # amounts as exact decimals
            return body

        return await _follow(fetch, deadline, stopping.event), stopping


def _needs_person_lines(waiting: NeedsPersonRows, settings: Settings) -> list[str]:
    """The end-of-bill summary of what needs a person: counts by reason, the first ids,
    and the request that lists them all."""
    if not waiting:
        return []
    host = "127.0.0.1" if settings.HOST in ("0.0.0.0", "::") else settings.HOST  # noqa: S104
    lines = [f"{sum(n for _, _, n, _ in waiting):,} invoices need a person:"]
    for status, reason, count, ids in waiting:
        shown = ", ".join(map(str, ids)) + (", ..." if count > len(ids) else "")
        lines.append(f"  {status:<6} {reason or '-':<24} {count:>9,}   invoices {shown}")
    for status in sorted({status for status, *_ in waiting}):
        lines.append(
            f"  list every {status} invoice: curl -H 'Authorization: Bearer <token>' "
            f"'http://{host}:{settings.PORT}/rest/v1/invoices?status={status}' "
            "(or the dashboard's invoice list)"
        )
    lines.append("  one log line each (invoice_needs_person): ANTAEUS_LOG_LEVEL=info antaeus bill")
    return lines


def _quiet_needs_person(settings: Settings) -> bool:
    """In a terminal, `bill` keeps the per-invoice `invoice_needs_person` lines out of its
    bar (20,000 invoices scrolled 1,813 of them) and sums them up at the end; they are
    printed only when asked for with ANTAEUS_LOG_LEVEL=info (or debug)."""
    return err.is_terminal and settings.LOG_LEVEL not in ("info", "debug")


def bill(
    url: Annotated[
        str | None,
        typer.Option(
            envvar="ANTAEUS_URL", help="a running Antaeus to trigger (else: this database)"
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="ANTAEUS_API_TOKEN", help="API token for --url", show_default=False),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=1,
            help="seconds to wait for the runs to complete (default: no limit when charging "
            "here; 900 with --url)",
            show_default=False,
        ),
    ] = None,
    processes: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=1024,
            help="worker processes charging the run (default: one per core on PostgreSQL, "
            "1 on SQLite); not with --url",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Open a billing run now and follow it to completion, with a summary.

    Without --url it charges directly on the database, in this process or (with
    --processes N above 1) in N worker processes it supervises. A run left open
    (by a Ctrl-C or a crash) is resumed and completed first, then the new run
    opens; charging here has no time limit unless --timeout gives one. Exits 0
    when the run completed (whatever the declines), 1 when it is still open after
    --timeout (the run goes on) or on errors, 130 (143) when Ctrl-C (SIGTERM)
    stopped it first: the calls in flight are recorded and the run stays open.
    """
    from antaeus.billing.attention import EVENT
    from antaeus.cli.supervise import default_processes
    from antaeus.observability.logging import drop_events

    os.environ.setdefault("ANTAEUS_LOG_LEVEL", "warning")
    settings = load_settings()
    started = time.perf_counter()
    waiting: NeedsPersonRows = []
    if url:
        if not token:
            fail("--url needs a token: --token or ANTAEUS_API_TOKEN")
        limit = timeout if timeout is not None else 900.0
        state, stopping = run(_bill_remote(url, token, time.monotonic() + limit))
        followed = [state]
        stats = None
    else:
        limit = timeout if timeout is not None else float("inf")
        quiet = _quiet_needs_person(settings)
        if quiet:
            # each of these invoices is in the summary (charge_rejected: as provider_rejected)
            drop_events(EVENT, "charge_rejected")
        count = processes or default_processes(settings.DATABASE_URL)
        # (not quiet: each invoice that needs a person was a log line already)
        followed, stopping, stats, waiting = run(
            _bill_direct(settings, time.monotonic() + limit, count, summarize=quiet)
        )
    state = followed[-1]
    if stopping.signal is not None and state["status"] != "completed":
        counts = state["counts"]
        done = sum(counts.get(k, 0) for k in OUTCOMES)
        progress = f"run {state['id']} stays open, {done:,} of {counts['due']:,} done"
        if stats is None:
            line = f"stopped following {progress}; it goes on at {mask_url(url or '')}"
        else:
            line = stopped_line(
                stats,
                f" ({progress}; `antaeus bill` resumes it, or `antaeus worker` or "
                "`antaeus serve` finishes it)",
            )
        err.print(line, highlight=False, soft_wrap=True)
        raise typer.Exit(128 + stopping.signal)
    for each in followed:
        out.print(_summary(each))
    for line in _needs_person_lines(waiting, settings):
        err.print(line, highlight=False, soft_wrap=True)
    elapsed = time.perf_counter() - started
    if state["status"] != "completed":
        why = f" (charging paused: {state['pausedReason']})" if state["pausedReason"] else ""
        fail(f"run {state['id']} is still open after {limit:g} s{why}; it goes on")
    out.print(f"run {state['id']} completed in {elapsed:.1f} s", highlight=False)
