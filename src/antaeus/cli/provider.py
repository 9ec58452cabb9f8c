"""`antaeus provider serve`: the simulated payment provider behind HTTP, with faults."""

from __future__ import annotations

import json
import math
import os
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from antaeus.cli.common import err, fail, load_settings, out, run
from antaeus.security import mask_url, scrub

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from antaeus.simulators.simulated import Account, SimulatorStore
    from antaeus.simulators.simulator_server import HostileFaults

# The simulator is imported when a command runs (see antaeus.cli.common).

app = typer.Typer(
    help="A payment provider speaking the HTTP protocol, for tests and benchmarks.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

API_KEY_ENV = "ANTAEUS_PROVIDER_API_KEY"


def _rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        fail(f"--{name} must be between 0 and 1, not {value}")


def _duration(name: str, value: float, *, at_least: float = 0.0, above: bool = False) -> None:
    bad = not math.isfinite(value) or value < at_least or (above and value == at_least)
    if bad:
        relation = "more than" if above else "at least"
        fail(f"--{name} must be a number {relation} {at_least:g}, not {value}")


def _accounts_from_file(path: Path) -> list[Account]:
    from antaeus.simulators.simulator_server import InvalidInput, loads, parse_accounts

    shown = escape(str(path))
    try:
        data = path.read_bytes()
    except OSError as exc:
        fail(f"--accounts: cannot read {shown}: {escape(exc.strerror or str(exc))}")
    try:
        return parse_accounts(loads(data))
    except InvalidInput as exc:
        fail(f"--accounts {shown}: {escape(exc.message)}")
    except ValueError as exc:
        fail(f"--accounts {shown} is not valid JSON: {escape(str(exc))}")


async def _accounts_from_db(url: str, balance: Decimal) -> list[Account]:
    """One account per customer of an Antaeus database: its currency, `balance` in it."""
    from sqlalchemy import select

    from antaeus.domain.money import Currency
    from antaeus.simulators.simulated import Account
    from antaeus.storage.database import Database
    from antaeus.storage.tables import customers

    try:
        db = Database(url)
    except Exception as exc:  # an unparseable URL, an unknown driver
        shown = escape(repr(mask_url(url)))
        fail(f"--accounts-from-db: cannot use {shown}: {escape(scrub(str(exc), url))}")
    try:
        async with db.read() as conn:
            rows = (
                await conn.execute(
                    select(customers.c.id, customers.c.currency).order_by(customers.c.id)
                )
            ).all()
    except Exception as exc:  # unreachable, or not an Antaeus database
        reason = getattr(exc, "orig", None) or exc  # the driver's words, without the SQL
        fail(
            f"--accounts-from-db: cannot read the customers of {escape(mask_url(url))}: "
            f"{escape(scrub(str(reason), url))}"
        )
    finally:
        await db.dispose()
    if not rows:
        fail(
            f"--accounts-from-db: {escape(mask_url(url))} has no customers "
            "(load some with `antaeus seed`)"
        )
    minor: dict[str, int] = {}  # the balance in each currency's minor units
    for code in sorted({row.currency for row in rows}):
        currency = Currency(code)
        if balance != balance.quantize(currency.quantum):
            fail(
                f"--balance {balance} is no amount in {currency} ({currency.minor_units} "
                "decimals), the currency of customers of that database; give a whole amount"
            )
        minor[code] = int(balance.scaleb(currency.minor_units))
    return [Account(row.id, Currency(row.currency), minor[row.currency]) for row in rows]


async def serve_announced(
    app: ASGIApp, host: str, port: int, what: str, details: list[str]
) -> None:
    """Listen on host:port (or fail in one line), say what is served there, serve it."""
    from antaeus.simulators.server import base_url, listen, serve

    try:
        sock = listen(host, port)
    except OSError as exc:
        fail(f"cannot listen on {escape(host)}:{port}: {escape(exc.strerror or str(exc))}")
    err.print(
        f"antaeus provider: serving {what} on {base_url(host, port)} "
        f"({'; '.join(details)}; pid {os.getpid()})",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    await serve(app, sock)


def _faults(
    latency_ms: float,
    jitter_ms: float,
    network_error_rate: float,
    ambiguous_rate: float,
    rate_limit: float,
    hostile: HostileFaults,
) -> str:
    faults = []
    if latency_ms or jitter_ms:
        faults.append(f"latency {latency_ms:g}±{jitter_ms:g} ms")
    if network_error_rate:
        faults.append(f"network errors {network_error_rate * 100:g}%")
    if ambiguous_rate:
        faults.append(f"ambiguous answers {ambiguous_rate * 100:g}%")
    if rate_limit:
        faults.append(f"rate limit {rate_limit:g}/s")
    faults.extend(hostile.describe())
    return ", ".join(faults) or "none"


@app.command("serve")
def serve_command(
    port: Annotated[int, typer.Option(help="port to listen on")] = 8700,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    accounts: Annotated[
        Path | None,
        typer.Option(
            "--accounts",
            help='JSON file: a list of {"customerId", "currency", "balance"} to load',
        ),
    ] = None,
    accounts_from_db: Annotated[
        str | None,
        typer.Option(
            "--accounts-from-db",
            metavar="DATABASE_URL",
            help="one account per customer of this Antaeus database (its currency, --balance)",
        ),
    ] = None,
    balance: Annotated[
        str, typer.Option(help="balance of each account made by --accounts-from-db")
    ] = "1000000.00",
    key_retention: Annotated[
        float,
        typer.Option(
            help="seconds a key's outcome is remembered; after that the same key charges again"
        ),
    ] = 86_400,
    failure_rate: Annotated[
        float,
        typer.Option(
            help="without loaded accounts: seeded customer profiles (as "
            "ANTAEUS_SIMULATED_FAILURE_RATE): about half this share of the customers has too "
            "little money, a tenth each no account, an account in another currency, or lost "
            "answers; 0: every charge of a customer without an account is made"
        ),
    ] = 0.0,
    latency_ms: Annotated[float, typer.Option(help="added to every charge")] = 0.0,
    jitter_ms: Annotated[float, typer.Option(help="latency varies by up to ± this")] = 0.0,
    network_error_rate: Annotated[
        float, typer.Option(help="share of charges answered 503 before anything happens")
    ] = 0.0,
    ambiguous_rate: Annotated[
        float,
        typer.Option(help="share of charges made, then answered 500 or dropped mid-answer"),
    ] = 0.0,
    rate_limit: Annotated[
        float, typer.Option(help="requests a second on /v1/charges (token bucket), 0: none")
    ] = 0.0,
    bad_retry_after_rate: Annotated[
        float,
        typer.Option(
            help="hostile: share of charges answered 429 rate_limited or 409 "
            "idempotency_key_in_use with a huge or malformed Retry-After (1e300, a date in "
            "year 9999, -5, nan, garbage); nothing is charged"
        ),
    ] = 0.0,
    key_in_use_rate: Annotated[
        float,
        typer.Option(
            help="hostile: share of charges answered 409 idempotency_key_in_use with "
            "Retry-After: 1; nothing is charged"
        ),
    ] = 0.0,
    bad_charge_id_rate: Annotated[
        float,
        typer.Option(
            help="hostile: share of charges made whose 200 carries a chargeId over 255 "
            "characters or with a control character (NUL, newline, tab); the charge is in "
            "the ledger, and the next request with the key replays the real chargeId"
        ),
    ] = 0.0,
    reject_after_unknown_rate: Annotated[
        float,
        typer.Option(
            help="hostile: share of keys whose answer was lost (charged, then 500 or dropped) "
            "whose next request is answered 400 invalid_request, not processed and not "
            "remembered"
        ),
    ] = 0.0,
    unauthorized_every: Annotated[
        float,
        typer.Option(
            help="hostile: every this many seconds, a burst of --unauthorized-for seconds "
            "in which every charge is answered 401 unauthorized (nothing charged); 0: none"
        ),
    ] = 0.0,
    unauthorized_for: Annotated[
        float,
        typer.Option(help="hostile: seconds each 401 burst lasts (less than --unauthorized-every)"),
    ] = 1.5,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar=API_KEY_ENV,
            show_envvar=True,
            help="require `Authorization: Bearer <key>` on /v1/charges and /admin/*",
        ),
    ] = None,
    state: Annotated[
        str, typer.Option(help="the simulator's SQLite file (keys, accounts, ledger)")
    ] = ":memory:",
    seed: Annotated[int, typer.Option(help="seed of every pseudo-random choice")] = 0,
    stripe: Annotated[
        bool,
        typer.Option(
            "--stripe",
            help="serve a fake Stripe API instead (POST /v1/payment_intents, customers, "
            "Stripe's test cards; see `antaeus.simulators.fake_stripe`); takes --port, --host, "
            "--api-key (default: any sk_test_ key), --key-retention, --latency-ms, "
            "--network-error-rate (5xx before anything), --ambiguous-rate (executed, then the "
            "answer lost), --rate-limit-rate, --read-only-key, --state (a JSON file), --seed",
        ),
    ] = False,
    rate_limit_rate: Annotated[
        float,
        typer.Option(help="--stripe: share of requests answered 429 rate_limit, Retry-After: 1"),
    ] = 0.0,
    read_only_key: Annotated[
        str | None,
        typer.Option(help="--stripe: a restricted key that may read but not charge (403)"),
    ] = None,
) -> None:
    """Serve the payment-provider protocol (POST /v1/charges) with faults on demand.

    Also GET /v1/health, POST /admin/accounts (load a list), GET and POST
    /admin/accounts/{customerId} (show, create or change one), POST
    /admin/accounts/{customerId}/fund, GET /admin/ledger, GET /admin/stats, GET
    /admin/faults. The customer's account decides (404 no account, 409 other
    currency, 402 balance too low); without loaded accounts, --failure-rate gives
    customers seeded profiles, and with neither every charge is made. The
    "hostile" flags make a provider that answers what a client must survive:
    bad Retry-After values, 409s, malformed chargeIds of charges made, a 400
    after an unknown outcome, 401 bursts (/admin/stats counts each under
    "hostile").
    """
    from antaeus.domain.money import MoneyError, parse_amount
    from antaeus.simulators.simulated import SimulatedPaymentProvider
    from antaeus.simulators.simulator_server import HostileFaults, create_simulator_app

    if not 1 <= port <= 65535:
        fail(f"--port must be between 1 and 65535, not {port}")
    if not host:
        fail("--host must not be empty")
    if stripe:
        others = {
            "--accounts": accounts is not None,
            "--accounts-from-db": accounts_from_db is not None,
            "--failure-rate": failure_rate != 0,
            "--jitter-ms": jitter_ms != 0,
            "--rate-limit": rate_limit != 0,
            "--bad-retry-after-rate": bad_retry_after_rate != 0,
            "--key-in-use-rate": key_in_use_rate != 0,
            "--bad-charge-id-rate": bad_charge_id_rate != 0,
            "--reject-after-unknown-rate": reject_after_unknown_rate != 0,
            "--unauthorized-every": unauthorized_every != 0,
        }
        given = [name for name, set_ in others.items() if set_]
        if given:
            fail(f"{', '.join(given)} cannot be used with --stripe")
        _rate("network-error-rate", network_error_rate)
        _rate("ambiguous-rate", ambiguous_rate)
        _rate("rate-limit-rate", rate_limit_rate)
        _duration("latency-ms", latency_ms)
        _duration("key-retention", key_retention, above=True)
        from antaeus.cli.stripe_fake import serve_stripe

        serve_stripe(
            host=host,
            port=port,
            api_key=api_key,
            read_only_key=read_only_key,
            key_retention=key_retention,
            latency_ms=latency_ms,
            server_error_rate=network_error_rate,
            lost_answer_rate=ambiguous_rate,
            rate_limit_rate=rate_limit_rate,
            seed=seed,
            state=state,
        )
        return
    if rate_limit_rate or read_only_key is not None:
        fail("--rate-limit-rate and --read-only-key need --stripe")
    _rate("failure-rate", failure_rate)
    _rate("network-error-rate", network_error_rate)
    _rate("ambiguous-rate", ambiguous_rate)
    _rate("bad-retry-after-rate", bad_retry_after_rate)
    _rate("key-in-use-rate", key_in_use_rate)
    _rate("bad-charge-id-rate", bad_charge_id_rate)
    _rate("reject-after-unknown-rate", reject_after_unknown_rate)
    _duration("unauthorized-every", unauthorized_every)
    if unauthorized_every:
        _duration("unauthorized-for", unauthorized_for, above=True)
        if unauthorized_for >= unauthorized_every:
            fail(
                f"--unauthorized-for must be less than --unauthorized-every "
                f"({unauthorized_every:g}), not {unauthorized_for:g}"
            )
    hostile = HostileFaults(
        bad_retry_after_rate=bad_retry_after_rate,
        key_in_use_rate=key_in_use_rate,
        bad_charge_id_rate=bad_charge_id_rate,
        reject_after_unknown_rate=reject_after_unknown_rate,
        unauthorized_every=unauthorized_every,
        unauthorized_for=unauthorized_for,
    )
    _duration("latency-ms", latency_ms)
    _duration("jitter-ms", jitter_ms)
    _duration("rate-limit", rate_limit)
    _duration("key-retention", key_retention, above=True)
    if api_key is not None and not (api_key and api_key.isascii() and api_key.isprintable()):
        fail(f"--api-key (or {API_KEY_ENV}) must be printable ASCII characters, not empty")
    try:
        balance_value = parse_amount(balance)
    except MoneyError as exc:
        fail(f"--balance: {escape(str(exc))}")
    if balance_value < 0:
        fail("--balance must not be negative")
    if state != ":memory:" and Path(state).is_dir():
        fail(f"--state {escape(state)} is a directory; give a file")

    loaded = _accounts_from_file(accounts) if accounts is not None else []

    async def main() -> None:
        from_db: list[Account] = []
        if accounts_from_db is not None:
            from_db = await _accounts_from_db(accounts_from_db, balance_value)
        try:
            provider = SimulatedPaymentProvider(
                state,
                failure_rate=failure_rate,
                network_error_rate=network_error_rate,
                ambiguous_rate=ambiguous_rate,
                seed=seed,
                latency_ms=latency_ms,
                jitter_ms=jitter_ms,
                key_retention=timedelta(seconds=key_retention),
            )
        except Exception as exc:  # sqlite3 cannot open the file
            fail(f"--state {escape(state)}: {escape(str(exc))}")
        try:
            if from_db or loaded:
                # the file's accounts win over the database's for the same customer
                provider.store.set_accounts({a.customer_id: a for a in from_db + loaded}.values())
            faults = _faults(
                latency_ms, jitter_ms, network_error_rate, ambiguous_rate, rate_limit, hostile
            )
            how_many = (
                f"{len(from_db) + len(loaded):,} accounts loaded"
                if from_db or loaded
                else "accounts loaded in the state file"
                if provider.store.accounts_loaded()
                else f"seeded customer profiles, failure rate {failure_rate:g}"
                if failure_rate
                else "every charge is made (no accounts)"
                if not provider.store.has_accounts()
                else "accounts of the state file; every other charge is made"
            )
            app_ = create_simulator_app(
                provider, api_key=api_key, rate_limit=rate_limit, seed=seed, hostile=hostile
            )
            await serve_announced(
                app_,
                host,
                port,
                "the payment-provider protocol",
                [
                    f"faults: {faults}",
                    f"key retention {key_retention:g} s",
                    how_many,
                    "API key required" if api_key else "no API key",
                    f"state {state}",
                    f"seed {seed}",
                ],
            )
        finally:
            await provider.aclose()

    run(main())


# --- the embedded simulator's store: accounts and ledger, for people ---------------------

StateOption = Annotated[
    str | None,
    typer.Option(
        "--state",
        help="the simulator's SQLite file (default: ANTAEUS_SIMULATED_STATE, "
        "antaeus-simulator.db); the same file `antaeus serve` and `antaeus bill` charge through",
    ),
]
CustomerOption = Annotated[
    int, typer.Option("--customer", min=1, help="the customer's id (as in Antaeus)")
]


def _open_store(state: str | None, *, create: bool) -> SimulatorStore:
    from antaeus.simulators.simulated import SimulatorStore

    path = state if state is not None else load_settings().SIMULATED_STATE
    if path == ":memory:" or not path:
        fail("the simulator's state is :memory: (nothing to read or change); give --state FILE")
    if Path(path).is_dir():
        fail(f"--state {escape(path)} is a directory; give a file")
    if not create and not Path(path).exists():
        fail(
            f"no simulator state at {escape(path)} (nothing was charged through it yet); "
            "give --state FILE, or create the account with `antaeus provider account`"
        )
    try:
        return SimulatorStore(path)
    except Exception as exc:  # sqlite3 cannot open the file, or it is not a simulator's
        fail(f"--state {escape(path)}: {escape(str(exc))}")


def _print_account(account: Account | None, customer: int) -> None:
    from antaeus.simulators.simulator_server import account_json

    if account is None:
        out.print(f"customer {customer}: no account", markup=False, highlight=False)
        return
    out.print(json.dumps(account_json(account)), markup=False, highlight=False)


@app.command("account")
def account_command(
    customer: CustomerOption,
    currency: Annotated[
        str | None,
        typer.Option(help="set the account's currency (required to create an account)"),
    ] = None,
    balance: Annotated[
        str | None,
        typer.Option(help="set the account's balance (required to create an account)"),
    ] = None,
    state: StateOption = None,
) -> None:
    """Show a customer's account at the embedded simulator, or create or change it.

    Without --currency and --balance it prints the account as JSON
    ({"customerId", "currency", "balance"}), or "no account". With either, it
    creates or replaces the account (the other field is kept), so a customer the
    simulator did not know, or whose account is in another currency, is charged
    on the next attempt (`POST /rest/v1/invoices/{id}/retry` of a FAILED invoice).
    Same as `POST /admin/accounts/{customerId}` of `antaeus provider serve`.
    """
    from antaeus.simulators.simulator_server import InvalidInput, parse_account

    changing = currency is not None or balance is not None
    store = _open_store(state, create=changing)
    try:
        current = store.account(customer)
        if not changing:
            _print_account(current, customer)
            return
        doc: dict[str, str] = {}
        if currency is not None:
            doc["currency"] = currency
        if balance is not None:
            doc["balance"] = balance
        try:
            account = parse_account(customer, doc, current)
        except InvalidInput as exc:
            fail(f"--{exc.field}: {escape(exc.message)}")
        store.put_account(account)
        _print_account(account, customer)
    finally:
        store.close()


@app.command("fund")
def fund_command(
    customer: CustomerOption,
    amount: Annotated[str, typer.Option(help="added to the balance, in the account's currency")],
    state: StateOption = None,
) -> None:
    """Add money to a customer's account at the embedded simulator.

    A charge declined for insufficient funds is then made on its next attempt
    (the invoice's dunning retry, or `POST /rest/v1/invoices/{id}/retry` once it
    is FAILED). Prints the account. Same as
    `POST /admin/accounts/{customerId}/fund` of `antaeus provider serve`.
    """
    from antaeus.simulators.simulator_server import InvalidInput, parse_funding

    store = _open_store(state, create=False)
    try:
        current = store.account(customer)
        if current is None:
            fail(
                f"customer {customer} has no account at the simulator; create one with "
                f"`antaeus provider account --customer {customer} --currency C --balance X`"
            )
        try:
            minor = parse_funding({"amount": amount}, current.currency)
        except InvalidInput as exc:
            fail(f"--amount: {escape(exc.message)}")
        _print_account(store.fund(customer, minor), customer)
    finally:
        store.close()


@app.command("ledger")
def ledger_command(
    invoice: Annotated[
        int | None, typer.Option(min=1, help="only the charges of this invoice")
    ] = None,
    state: StateOption = None,
) -> None:
    """Print the charges the embedded simulator made, as `GET /admin/ledger` answers them.

    {"charges": [{"chargeId", "idempotencyKey", "invoiceId", "customerId", "value",
    "currency"}]}: what `antaeus audit --provider-ledger` reads, and where an
    invoice in REVIEW is looked up (its attempt's idempotencyKey) before it is
    resolved.
    """
    from antaeus.simulators.simulator_server import ledger_json

    store = _open_store(state, create=False)
    try:
        entries = store.ledger()
    finally:
        store.close()
    charges = [ledger_json(e) for e in entries if invoice is None or e.invoice_id == invoice]
    out.print(json.dumps({"charges": charges}, indent=1), markup=False, highlight=False)


@app.command("stripe-link")
def stripe_link_command(
    url: Annotated[
        str, typer.Option(help="the Antaeus API whose customers to link")
    ] = "http://127.0.0.1:7000",
    token: Annotated[
        str | None,
        typer.Option(envvar="ANTAEUS_API_TOKEN", help="API token for --url", show_default=False),
    ] = None,
    stripe_api_base: Annotated[
        str,
        typer.Option(envvar="ANTAEUS_STRIPE_API_BASE", help="Stripe's API, or the fake's"),
    ] = "https://api.stripe.com",
    stripe_api_key: Annotated[
        str | None,
        typer.Option(
            envvar="ANTAEUS_STRIPE_API_KEY",
            help="a TEST-mode Stripe key (sk_test_... or rk_test_...)",
            show_default=False,
        ),
    ] = None,
    customer: Annotated[
        list[int] | None,
        typer.Option("--customer", min=1, help="only this customer (repeatable)"),
    ] = None,
    all_succeed: Annotated[
        bool, typer.Option(help="give every customer Stripe's succeeding test card (visa)")
    ] = False,
    relink: Annotated[
        bool, typer.Option(help="also customers that already have provider references")
    ] = False,
) -> None:
    """Give Antaeus customers Stripe test references: a Stripe customer and a saved test card.

    For each customer of --url (all, or each --customer) it creates a Stripe
    customer (metadata antaeus_customer), attaches one of Stripe's test payment
    methods, and sets the customer's providerCustomerId and
    providerPaymentMethodId with PATCH /rest/v1/customers/{id}. Test mode only
    (it refuses a live key). Which card a customer gets follows its id through
    a cycle of 15 (stripe_fake.LINK_CYCLE), so billing the sample data shows
    every outcome: mostly charged, then insufficient funds, card_declined
    (generic and expired_card), authentication_required, customer not found (a
    Stripe customer that does not exist), provider_rejected (another
    customer's card), and payment_method_missing (left unlinked).
    --all-succeed gives everyone the succeeding card. Works against the fake
    (`antaeus provider serve --stripe`) and against Stripe's test mode.
    Connection errors, timeouts, 5xx, 429 and 409 are repeated (Stripe's POSTs
    with an idempotency key each, so nothing is made twice); a customer that
    still fails is reported and counted, and the run ends with one line of
    counts (exit 1 if any failed).
    """
    if not token:
        fail("--url needs a token: --token or ANTAEUS_API_TOKEN")
    if not stripe_api_key:
        fail("give --stripe-api-key or ANTAEUS_STRIPE_API_KEY (for the fake: any sk_test_ key)")
    from antaeus.cli.stripe_fake import link_customers

    link_customers(
        url=url,
        token=token,
        stripe_api_base=stripe_api_base,
        stripe_api_key=stripe_api_key,
        customers=customer,
        all_succeed=all_succeed,
        relink=relink,
    )
