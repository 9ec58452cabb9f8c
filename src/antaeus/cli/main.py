"""The `antaeus` command."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from antaeus.cli import audit, billing, generate, provider, reconcile
from antaeus.cli.common import (
    check_environment,
    err,
    fail,
    freeze_heap,
    listen_socket,
    load_settings,
    newer_schema,
    out,
    prepare,
    run,
    serve_metrics,
    start_multiprocess_metrics,
)
from antaeus.cli.stopping import GracefulStop, stopped_line
from antaeus.clock import SystemClock
from antaeus.security import generate_token, hash_token, valid_token_name

if TYPE_CHECKING:
    from antaeus.billing.worker import Worker, WorkerStats
    from antaeus.config import Settings
    from antaeus.storage.database import Database

# The command modules import what their commands need when those run (see
# antaeus.cli.common): `antaeus --help` and `antaeus <command> --help` import
# typer, rich and these modules only.

app = typer.Typer(
    help="Antaeus: a recurring billing engine that charges every due invoice exactly once.",
    no_args_is_help=True,
    add_completion=False,
    # Plain help wraps long option names; rich's tables cut them short at 80 columns.
    rich_markup_mode=None,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True, rich_markup_mode=None)
token_app = typer.Typer(
    help="API tokens (stored only as hashes).", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")
app.add_typer(provider.app, name="provider")

DEFAULT_TOKEN_NAME = "admin"


@app.callback()
def _before_every_command(ctx: typer.Context) -> None:
    # Before any command does anything (help aside): an unknown ANTAEUS_* variable stops it.
    if "--help" not in sys.argv[1:] and not ctx.resilient_parsing:
        check_environment(ctx.find_root().command)


async def _ensure_token(db: Database, settings: Settings, port: int, host: str) -> None:
    """On a database with no token (and no ANTAEUS_API_TOKEN), create one and print it once."""
    from antaeus.storage.repositories.tokens import TokenRepository

    if settings.API_TOKEN is not None:
        return
    token = generate_token()
    async with db.write() as conn:
        repo = TokenRepository(conn)
        if await repo.any_active():
            return
        name = DEFAULT_TOKEN_NAME
        if await repo.exists(name):
            name = f"{DEFAULT_TOKEN_NAME}-{secrets.token_hex(3)}"
        await repo.create(name, hash_token(token), SystemClock().now())
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 (only a display name)
    out.print(
        f"Created API token [bold]{name}[/] (shown once, keep it):\n\n    {token}\n\n"
        f"Use it as:  curl -H 'Authorization: Bearer {token}' "
        f"http://{shown}:{port}/rest/v1/invoices\n"
        "More tokens: antaeus token create --name NAME",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on [ANTAEUS_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on [ANTAEUS_PORT]")] = None,
    no_migrate: Annotated[
        bool, typer.Option("--no-migrate", help="refuse to start on an out-of-date schema")
    ] = False,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="do not charge in this process")
    ] = False,
    no_scheduler: Annotated[
        bool, typer.Option("--no-scheduler", help="another process runs the scheduler")
    ] = False,
    no_relay: Annotated[
        bool,
        typer.Option("--no-relay", help="do not deliver events (webhooks, RabbitMQ) from here"),
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="also serve Prometheus metrics on this port, without a token "
            "(on the API port /metrics needs one unless ANTAEUS_METRICS_PUBLIC=true)",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=1024,
            help="charging worker processes (default: one per core on PostgreSQL, 1 on "
            "SQLite); 1 charges in this process",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the REST API (port 7000), the run scheduler and an embedded charging worker.

    With --workers N above 1 the charging happens in N worker processes beside
    the API (this process supervises them; the scheduler and the relay stay here).

    Ctrl-C or SIGTERM stops it gracefully: the calls in flight are finished and
    recorded, invoices claimed ahead are handed back, and one line says so.
    """
    from antaeus.cli.supervise import Supervisor, default_processes

    settings = load_settings()
    bind_host = host or settings.HOST
    bind_port = port or settings.PORT
    # The port first: a busy one ends here, before a worker, a scheduler, a
    # migration or a token exist.
    sock = listen_socket(bind_host, bind_port)
    count = 0 if no_worker else workers or default_processes(settings.DATABASE_URL)
    # With worker processes, /metrics shows their sum: multiprocess mode, chosen
    # before anything below imports prometheus_client.
    metrics_dir = start_multiprocess_metrics() if count > 1 else None
    if metrics_port:
        serve_metrics(metrics_port, host or settings.HOST)

    import uvicorn

    from antaeus.api.app import create_app
    from antaeus.cli.serving import StoppableServer
    from antaeus.storage.database import Database

    async def main() -> tuple[WorkerStats | None, str | None]:
        stop = GracefulStop()
        stop.install()
        db = Database.from_settings(settings)
        supervisor: Supervisor | None = None
        supervising: asyncio.Task[None] | None = None
        try:
            await prepare(db, allow_migrate=not no_migrate)
            await _ensure_token(db, settings, bind_port, bind_host)
            app = create_app(
                settings,
                database=db,
                embedded_worker=count == 1,
                scheduler=not no_scheduler,
                relay=not no_relay,
            )
            config = uvicorn.Config(
                app,
                host=bind_host,
                port=bind_port,
                log_level=settings.LOG_LEVEL,
                access_log=settings.LOG_LEVEL == "debug",
                server_header=False,
            )
            server = StoppableServer(config, stop)
            if count > 1:
                # The workers get neither the listening socket nor a connection:
                # they are this program started again (antaeus.cli.supervise).
                supervisor = Supervisor(
                    ["worker", "--processes", "1", "--no-relay"], count, metrics_dir=metrics_dir
                )
                stop.listen(supervisor.forward)
                supervising = asyncio.create_task(supervisor.run(stop.event))

                def given_up(_task: asyncio.Task[None]) -> None:
                    if supervisor is not None and supervisor.failure:
                        server.should_exit = True  # the API stops too, with the error

                supervising.add_done_callback(given_up)
            freeze_heap()  # what start-up made lives as long as the process
            await server.serve(sockets=[sock])
            if supervisor is not None and supervising is not None:
                supervisor.forward(stop.signal or signal.SIGTERM)
                await supervising
                return supervisor.totals, supervisor.failure
            worker: Worker | None = getattr(app.state, "worker", None)
            return (worker.stats if worker is not None else None), None
        finally:
            if supervisor is not None:
                await supervisor.aclose()
            await db.dispose()
            sock.close()

    stats, failure = run(main())
    if failure is not None:
        fail(failure)
    err.print(stopped_line(stats), highlight=False, soft_wrap=True)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="target revision")] = "head",
) -> None:
    """Migrate the database to the newest schema (creates it when empty)."""
    from antaeus.storage import migrate
    from antaeus.storage.database import Database

    settings = load_settings()

    async def main() -> None:
        db = Database.from_settings(settings)
        try:
            before = await migrate.current_revision(db)
            if not migrate.is_known(before):
                fail(newer_schema(before))
            await migrate.upgrade(db, revision)
            after = await migrate.current_revision(db)
        finally:
            await db.dispose()
        if before == after:
            out.print(f"database already at {after}")
        else:
            out.print(f"database migrated from {before or 'empty'} to {after}")

    run(main())


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the database and the newest one."""
    from antaeus.storage import migrate
    from antaeus.storage.database import Database

    settings = load_settings()

    async def main() -> None:
        db = Database.from_settings(settings)
        try:
            current = await migrate.current_revision(db)
        finally:
            await db.dispose()
        out.print(f"database: {current or 'empty'}; newest: {migrate.head_revision()}")

    run(main())


class TokenScope(StrEnum):
    read = "read"
    write = "write"


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option("--name", help="who or what uses the token")],
    scope: Annotated[
        TokenScope,
        typer.Option(
            "--scope",
            case_sensitive=False,
            help="read: every GET (the API, the dashboard without its actions, /metrics); "
            "write: everything",
        ),
    ] = TokenScope.write,
) -> None:
    """Create a token and print it, alone, on standard output (shown only this once)."""
    from antaeus.storage.database import Database
    from antaeus.storage.repositories.tokens import TokenRepository

    if not valid_token_name(name):
        fail("a token name is 1-100 letters, digits, '_', '.', '@' or '-' (and not 'env')")
    settings = load_settings()
    token = generate_token()

    async def main() -> bool:
        db = Database.from_settings(settings)
        try:
            await prepare(db, allow_migrate=True)
            async with db.write() as conn:
                repo = TokenRepository(conn)
                if await repo.exists(name):
                    return False
                await repo.create(name, hash_token(token), SystemClock().now(), scope=scope.value)
                return True
        finally:
            await db.dispose()

    if not run(main()):
        fail(f"a token named {name!r} already exists (names are never reused)")
    print(token)


@token_app.command("list")
def token_list() -> None:
    """List tokens (names, scopes and dates; the tokens themselves are not kept)."""
    from rich.table import Table

    from antaeus.storage.database import Database
    from antaeus.storage.repositories.tokens import TokenRepository

    settings = load_settings()

    async def main() -> list[tuple[str, str, str, str]]:
        db = Database.from_settings(settings)
        try:
            await prepare(db, allow_migrate=True)
            async with db.read() as conn:
                records = await TokenRepository(conn).all()
        finally:
            await db.dispose()
        return [
            (
                r.name,
                r.scope,
                r.created_at.strftime("%Y-%m-%d %H:%M:%SZ"),
                r.revoked_at.strftime("%Y-%m-%d %H:%M:%SZ") if r.revoked_at else "",
            )
            for r in records
        ]

    rows = run(main())
    table = Table("name", "scope", "created", "revoked")
    for row in rows:
        table.add_row(*row)
    if settings.API_TOKEN is not None:
        table.add_row("env", "write", "(ANTAEUS_API_TOKEN)", "")
    out.print(table)


@token_app.command("revoke")
def token_revoke(name: Annotated[str, typer.Argument(help="the token's name")]) -> None:
    """Revoke a token; every API instance refuses it within seconds."""
    from antaeus.storage.database import Database
    from antaeus.storage.repositories.tokens import TokenRepository

    settings = load_settings()

    from antaeus.storage.repositories.dashboard import SessionRepository

    async def main() -> int | None:
        db = Database.from_settings(settings)
        try:
            await prepare(db, allow_migrate=True)
            async with db.write() as conn:
                if not await TokenRepository(conn).revoke(name, SystemClock().now()):
                    return None
                # Its dashboard sessions end at once here (names are never reused); an API
                # process would refuse them anyway within ANTAEUS_TOKEN_CACHE_SECONDS.
                return await SessionRepository(conn).delete_of_token(name)
        finally:
            await db.dispose()

    ended = run(main())
    if ended is None:
        fail(f"no active token named {name!r}")
    sessions = "session" if ended == 1 else "sessions"
    out.print(f"token {name!r} revoked; {ended} dashboard {sessions} ended")


@app.command()
def seed(
    seed_value: Annotated[
        int | None, typer.Option("--seed", help="random seed, for the same data every time")
    ] = None,
    customers: Annotated[
        int | None,
        typer.Option(min=0, max=10_000_000, help="customers [default: 100]", show_default=False),
    ] = None,
    invoices_per_customer: Annotated[
        int, typer.Option(min=0, max=1_000, help="invoices per customer (the first is pending)")
    ] = 10,
    subscriptions_per_customer: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=100,
            help="K calendar monthly subscriptions per customer, customers spread over 20 "
            "time zones, starting today in each (all due now; `antaeus generate` bills them). "
            "Without it (and without --customers), the sample plans and subscriptions and "
            "their invoices due now",
            show_default=False,
        ),
    ] = None,
    append: Annotated[bool, typer.Option(help="add to a database that has customers")] = False,
) -> None:
    """Load the original sample data (100 customers, 1,000 invoices, 100 due now), with
    sample plans and subscriptions whose invoices due now are generated at once."""
    from rich.progress import Progress

    from antaeus.seeding import SeedRefusedError
    from antaeus.seeding import seed as do_seed
    from antaeus.storage.database import Database

    os.environ.setdefault("ANTAEUS_LOG_LEVEL", "warning")
    settings = load_settings()
    value = seed_value if seed_value is not None else secrets.randbelow(2**31)
    samples = customers is None and subscriptions_per_customer is None
    count = 100 if customers is None else customers

    async def main() -> None:
        db = Database.from_settings(settings)
        started = time.perf_counter()
        try:
            await prepare(db, allow_migrate=True)
            with Progress(console=err, transient=True, disable=count < 50_000) as bar:
                task = bar.add_task("seeding", total=count)
                result = await do_seed(
                    db,
                    now=SystemClock().now(),
                    seed_value=value,
                    customers=count,
                    invoices_per_customer=invoices_per_customer,
                    append=append,
                    progress=lambda n: bar.advance(task, n),
                    subscriptions_per_customer=subscriptions_per_customer or 0,
                    sample_subscriptions=samples,
                )
        except SeedRefusedError as exc:
            fail(str(exc))
        finally:
            await db.dispose()
        elapsed = time.perf_counter() - started
        line = (
            f"seeded {result.customers:,} customers and {result.invoices:,} invoices "
            f"({result.pending:,} pending and due now)"
        )
        if result.subscriptions:
            line += f", {result.subscriptions:,} subscriptions ({result.plans:,} new plans)"
        if result.generated is not None:
            line += f" and generated their {result.generated.invoices:,} invoices due now"
        out.print(f"{line} in {elapsed:.1f} s, seed {result.seed}", highlight=False, soft_wrap=True)

    run(main())


app.command()(billing.worker)
app.command()(billing.bill)
app.command("audit")(audit.audit_command)
app.command("reconcile")(reconcile.reconcile_command)
app.command("generate")(generate.generate_command)


def main() -> None:
    app()
