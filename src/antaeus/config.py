"""Settings, read from the environment with the `ANTAEUS_` prefix (and a `.env` file)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from functools import lru_cache
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

from antaeus.domain.policy import PolicySettings
from antaeus.payments.stripe_rules import stripe_key_problem
from antaeus.security import mask_url

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_durations(text: str) -> tuple[timedelta, ...]:
    """ "1d,3d,7d" -> (1 day, 3 days, 7 days); units s, m, h, d (seconds when none)."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        match = _DURATION.fullmatch(part)
        if match is None:
            raise ValueError(f"{part!r} is not a duration such as 30s, 15m, 12h or 3d")
        out.append(timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]]))
    return tuple(out)


def normalize_database_url(url: str) -> str:
    """Accept URLs as users write them; pick the async driver Antaeus uses.

    `postgresql://`, `postgres://` and `postgresql+psycopg://` become asyncpg;
    `sqlite:///file.db` becomes aiosqlite.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(
            f"database URL {mask_url(url)!r} has no scheme (e.g. sqlite:///antaeus.db)"
        )
    base = scheme.split("+", 1)[0].lower()
    if base in ("postgresql", "postgres"):
        return f"postgresql+asyncpg://{rest}"
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    raise ValueError(f"unsupported database {scheme!r}: use sqlite:/// or postgresql://")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ANTAEUS_",
        env_file=".env",
        extra="ignore",
        case_sensitive=False,
        hide_input_in_errors=True,  # a refused URL or token is never repeated in the error
    )

    DATABASE_URL: str = Field(
        default="sqlite:///antaeus.db",
        description="`sqlite:///path.db` (a file here by default), or "
        "`postgresql://user:password@host:5432/db` as you would write it for psql",
    )
    API_TOKEN: SecretStr | None = Field(
        default=None,
        description="one more valid API token (named `env`, scope `write`); changing it ends "
        "the dashboard sessions opened with the old value. Unset or empty: `serve` creates "
        "and prints a first token when the database has none",
    )
    HOST: str = Field(
        default="127.0.0.1", description="address `serve` listens on (`serve --host`)"
    )
    PORT: int = Field(
        default=7000, ge=1, le=65535, description="port `serve` listens on (`serve --port`)"
    )
    MAX_BODY_BYTES: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="largest request body the API reads, in bytes; a larger one is 400 "
        "`body_too_large`",
    )
    LOG_LEVEL: Literal["debug", "info", "warning", "error"] = Field(
        default="info",
        description="lowest level of the log lines written (`debug` adds the HTTP access log)",
    )
    LOG_FORMAT: Literal["console", "json"] = Field(
        default="console",
        description="`console`: lines for people; `json`: one JSON object per line",
    )
    DB_POOL_SIZE: int = Field(
        default=10, ge=1, le=200, description="database connections kept open per process"
    )
    SQLITE_SYNCHRONOUS: Literal["NORMAL", "FULL"] = Field(
        default="FULL",
        description="SQLite's `synchronous`: `FULL` survives power loss; `NORMAL` survives "
        "process crashes and is faster",
    )
    METRICS_PUBLIC: bool = Field(
        default=False,
        description="`true` serves `/metrics` on the API port without a token; otherwise it "
        "needs `Authorization: Bearer <token>` like `/rest/v1` (401 without one)",
    )
    TOKEN_CACHE_SECONDS: float = Field(
        default=5.0,
        ge=0,
        description="seconds a token read from the database is trusted: how soon a token "
        "created or revoked by another process starts or stops working (its dashboard "
        "sessions too)",
    )

    # -- payment provider ----------------------------------------------------
    PAYMENT_PROVIDER: Literal["simulated", "http", "stripe"] | None = Field(
        default=None,
        description="which provider charges: `simulated` (in process), `http` (a provider "
        "speaking the HTTP protocol at `ANTAEUS_PAYMENT_PROVIDER_URL`) or `stripe`. Unset: "
        "`http` when `ANTAEUS_PAYMENT_PROVIDER_URL` is set, else `simulated`",
    )
    PAYMENT_PROVIDER_URL: str | None = Field(
        default=None,
        description="base URL of a provider speaking the HTTP protocol; setting it selects "
        "the HTTP adapter",
    )
    PAYMENT_PROVIDER_API_KEY: SecretStr | None = Field(
        default=None,
        description="sent to the HTTP provider as `Authorization: Bearer <key>`; not together "
        "with credentials in `ANTAEUS_PAYMENT_PROVIDER_URL`",
    )
    PAYMENT_PROVIDER_CONNECT_TIMEOUT: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="seconds to connect to the provider; no connection means nothing was "
        "sent (the invoice is given back)",
    )
    PAYMENT_PROVIDER_READ_TIMEOUT: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="seconds of silence while reading an answer; then the outcome is unknown "
        "and repeated with the same key",
    )
    PAYMENT_PROVIDER_TIMEOUT: float = Field(
        default=60.0,
        gt=0,
        le=3_600,
        description="seconds a whole call may take (a provider trickling bytes is cut off "
        "here); then the outcome is unknown and repeated with the same key",
    )
    PAYMENT_PROVIDER_MAX_CONNECTIONS: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="kept-alive connections to the provider per process; unset: the worker's "
        "concurrency. Fewer makes calls queue for a connection, which counts against "
        "`ANTAEUS_PAYMENT_PROVIDER_TIMEOUT`",
    )
    PAYMENT_PROVIDER_HTTP_CLIENT: Literal["aiohttp", "httpx"] = Field(
        default="aiohttp",
        description="the HTTP adapter's client library (aiohttp costs a fraction of the CPU "
        "per call)",
    )
    STRIPE_API_KEY: SecretStr | None = Field(
        default=None,
        description="`ANTAEUS_PAYMENT_PROVIDER=stripe`: a secret (`sk_...`) or restricted "
        "(`rk_...`) key, masked wherever shown",
    )
    STRIPE_API_BASE: str = Field(
        default="https://api.stripe.com",
        description="Stripe's API; tests and the demo point it at the fake Stripe "
        "(`antaeus provider serve --stripe`)",
    )
    STRIPE_HTTP_CLIENT: Literal["aiohttp", "httpx"] = Field(
        default="aiohttp",
        description="the stripe library's transport (benchmarks/stripe_provider.py measures both)",
    )
    BREAKER_WINDOW: int = Field(
        default=100,
        ge=10,
        le=100_000,
        description="a worker's recent calls the unknown-outcome rate is counted over",
    )
    BREAKER_THRESHOLD: float = Field(
        default=0.6,
        gt=0,
        le=1,
        description="share of unknown outcomes in the window (of at least half a window of "
        "calls) that stops a worker claiming new invoices",
    )
    BREAKER_PROBE_SECONDS: float = Field(
        default=5.0,
        gt=0,
        description="seconds between the single new invoices a worker stopped by the breaker tries",
    )
    SIMULATED_FAILURE_RATE: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="about the share of simulated charges that do not succeed at first: the "
        "share of the simulator's customers not simply funded (seeded profiles: too little "
        "money, no account, another currency, lost answers), plus network errors (0.2 x this "
        "per send) and lost answers (0.1 x this); 0 makes every charge succeed",
    )
    SIMULATED_STATE: str = Field(
        default="antaeus-simulator.db",
        description="the simulated provider's own store of accounts, keys and charges (a "
        "SQLite file, or `:memory:` for none); `antaeus provider account`, `fund` and "
        "`ledger` read and change it",
    )
    SIMULATED_SEED: int = Field(
        default=0,
        description="seed of the simulated provider: which customer has which profile, and "
        "every fault",
    )
    SIMULATED_LATENCY_MS: float = Field(
        default=0, ge=0, le=60_000, description="milliseconds each simulated charge takes"
    )
    SIMULATED_JITTER_MS: float = Field(
        default=0,
        ge=0,
        le=60_000,
        description="milliseconds by which the simulated latency varies, up or down",
    )

    # -- billing policy ---------------------------------------------------------
    SCHEDULE: Literal["automatic", "external"] = Field(
        default="automatic",
        description="`automatic`: a run opens as soon as invoices are due; `external`: only "
        "`POST /rest/v1/billing` or `antaeus bill` open runs for new charges",
    )
    DUNNING_SCHEDULE: Annotated[tuple[timedelta, ...], NoDecode] = Field(
        default=(timedelta(days=1), timedelta(days=3), timedelta(days=7)),
        description="waits between the tries of a declined charge, comma-separated (units s, "
        "m, h, d; seconds when none); after the last, the invoice is `FAILED`",
    )
    UNKNOWN_REPEAT_WINDOW: int = Field(
        default=300,
        ge=1,
        description="seconds a run keeps repeating an unknown outcome with its key before "
        "rescheduling it",
    )
    PROVIDER_KEY_RETENTION: int = Field(
        default=86_400,
        ge=60,
        description="seconds the provider remembers an idempotency key (its documentation "
        "says; the protocol's minimum and Stripe's retention are 24 h)",
    )
    KEY_RETENTION_MARGIN: int = Field(
        default=3_600,
        gt=0,
        description="seconds before its key's retention ends that an open attempt goes to "
        "`REVIEW`; shorter than `ANTAEUS_PROVIDER_KEY_RETENTION` and at least "
        "`ANTAEUS_PAYMENT_PROVIDER_TIMEOUT + ANTAEUS_RETRY_AFTER_MAX_SECONDS + "
        "ANTAEUS_LEASE_SECONDS`",
    )
    UNKNOWN_RESCHEDULE_SECONDS: int = Field(
        default=900,
        ge=1,
        description="seconds after which a rescheduled unknown outcome is repeated (with its key)",
    )
    BACKOFF_BASE_SECONDS: float = Field(
        default=0.5,
        gt=0,
        description="first wait of the exponential backoff (with jitter) between repeats of "
        "an unknown outcome",
    )
    BACKOFF_MAX_SECONDS: float = Field(
        default=30,
        gt=0,
        description="longest wait of the backoff between repeats of an unknown outcome",
    )
    LEASE_SECONDS: int = Field(
        default=60,
        ge=5,
        le=3_600,
        description="a claimed invoice's lease, renewed while its call is in flight; a "
        "crashed worker's invoices are claimable again when it ends",
    )
    BATCH_SIZE: int = Field(
        default=1000, ge=1, le=10_000, description="invoices a worker claims per transaction"
    )
    WORKER_CONCURRENCY: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="provider calls in flight per worker process (`worker --concurrency`)",
    )
    WORKER_POLL_INTERVAL: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="seconds an idle worker waits before looking for due invoices again",
    )
    SCHEDULER_INTERVAL: float = Field(
        default=1.0, gt=0, le=3_600, description="seconds between the scheduler's passes"
    )
    RECONCILE_INTERVAL: float = Field(
        default=300,
        ge=0,
        le=86_400,
        description="seconds between the scheduler's reconciliations of REVIEW invoices "
        "(0: the scheduler does not reconcile; `antaeus reconcile` still does)",
    )
    IDEMPOTENCY_KEY_RETENTION: int = Field(
        default=7 * 86_400,
        ge=3_600,
        description="seconds an API Idempotency-Key and its answer are remembered",
    )
    RETRY_AFTER_MAX_SECONDS: float = Field(
        default=60,
        ge=0,
        le=3_600,
        description="longest a worker waits on a 429 or 409 `Retry-After` before giving the "
        "invoice back to its run; a provider's longer `Retry-After` is read as this",
    )
    PAUSE_PROBE_SECONDS: float = Field(
        default=30,
        gt=0,
        description="seconds between probe charges while charging is paused (the provider "
        "refused the credential)",
    )

    # -- telling other systems (notify/) ---------------------------------------
    EVENT_RETENTION: int = Field(
        default=30 * 86_400,
        ge=3_600,
        description="seconds an event is kept once delivered everywhere (then pruned)",
    )
    AMQP_URL: SecretStr | None = Field(
        default=None,
        description="RabbitMQ to publish every event to (exchange antaeus.events); unset: none",
    )
    RELAY_CONCURRENCY: int = Field(
        default=64,
        ge=1,
        le=1_000,
        description="event deliveries in flight per process (at most 8 to one webhook endpoint)",
    )
    RELAY_POLL_INTERVAL: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="seconds a relay waits when nothing is to be delivered",
    )
    WEBHOOK_ALLOW_PRIVATE: bool = Field(
        default=False,
        description="let webhooks point at local and private addresses (localhost, RFC 1918, "
        "link-local, ...): for development and compose networks, never on a shared host",
    )

    @field_validator("DUNNING_SCHEDULE", mode="before")
    @classmethod
    def _parse_dunning(cls, value: object) -> object:
        return parse_durations(value) if isinstance(value, str) else value

    @field_validator("API_TOKEN", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: object) -> object:
        """`ANTAEUS_API_TOKEN=` (set, but empty; compose's `${VAR:-}`) means no such token:
        `serve` then creates and prints the first one, as when it is unset."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _check_margin(self) -> Settings:
        """The margin keeps an open attempt from being sent after the provider forgot its key.

        An attempt claimed just before the cut (retention - margin) may still be
        sent for a whole call, wait a Retry-After, and be sent again under a
        lease that ends at most LEASE_SECONDS later: all of it must fit in the margin.
        """
        margin, retention = self.KEY_RETENTION_MARGIN, self.PROVIDER_KEY_RETENTION
        if margin >= retention:
            raise ValueError(
                f"ANTAEUS_KEY_RETENTION_MARGIN ({margin} s) must be shorter than "
                f"ANTAEUS_PROVIDER_KEY_RETENTION ({retention} s)"
            )
        parts = (self.PAYMENT_PROVIDER_TIMEOUT, self.RETRY_AFTER_MAX_SECONDS, self.LEASE_SECONDS)
        if margin < sum(parts):
            raise ValueError(
                f"ANTAEUS_KEY_RETENTION_MARGIN ({margin} s) must be at least "
                "ANTAEUS_PAYMENT_PROVIDER_TIMEOUT + ANTAEUS_RETRY_AFTER_MAX_SECONDS + "
                f"ANTAEUS_LEASE_SECONDS ({' + '.join(f'{p:g}' for p in parts)} = {sum(parts):g} s)"
                ": a claim made just before the cut could otherwise send after the provider "
                "forgot the key"
            )
        return self

    @field_validator("STRIPE_API_KEY", mode="before")
    @classmethod
    def _empty_stripe_key_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("STRIPE_API_KEY")
    @classmethod
    def _check_stripe_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and (problem := stripe_key_problem(value.get_secret_value())):
            raise ValueError(problem)  # never the key itself
        return value

    @field_validator("STRIPE_API_BASE")
    @classmethod
    def _check_stripe_base(cls, value: str) -> str:
        parsed = urlsplit(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"must be an http:// or https:// URL with a host, not {value!r}")
        if parsed.username is not None or parsed.password is not None:
            raise ValueError("must not carry credentials (the key is ANTAEUS_STRIPE_API_KEY)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_stripe(self) -> Settings:
        if self.PAYMENT_PROVIDER != "stripe":
            return self
        if self.STRIPE_API_KEY is None:
            raise ValueError(
                "ANTAEUS_PAYMENT_PROVIDER=stripe needs ANTAEUS_STRIPE_API_KEY "
                "(a secret key sk_... or a restricted key rk_...)"
            )
        if self.PROVIDER_KEY_RETENTION > 86_400:
            raise ValueError(
                f"ANTAEUS_PROVIDER_KEY_RETENTION ({self.PROVIDER_KEY_RETENTION} s) is longer than "
                "Stripe keeps idempotency keys (24 h = 86400 s)"
            )
        return self

    @property
    def provider_kind(self) -> Literal["simulated", "http", "stripe"]:
        if self.PAYMENT_PROVIDER is not None:
            return self.PAYMENT_PROVIDER
        return "http" if self.PAYMENT_PROVIDER_URL else "simulated"

    def policy(self, provider_deduplicates: bool = True) -> PolicySettings:
        return PolicySettings(
            dunning_schedule=self.DUNNING_SCHEDULE,
            unknown_repeat_window=timedelta(seconds=self.UNKNOWN_REPEAT_WINDOW),
            key_retention=timedelta(seconds=self.PROVIDER_KEY_RETENTION),
            retention_margin=timedelta(seconds=self.KEY_RETENTION_MARGIN),
            backoff_base=timedelta(seconds=self.BACKOFF_BASE_SECONDS),
            backoff_max=timedelta(seconds=self.BACKOFF_MAX_SECONDS),
            reschedule_delay=timedelta(seconds=self.UNKNOWN_RESCHEDULE_SECONDS),
            provider_deduplicates=provider_deduplicates,
        )

    @field_validator("DATABASE_URL")
    @classmethod
    def _check_url(cls, value: str) -> str:
        normalized = normalize_database_url(value)
        try:
            make_url(normalized)
        except Exception:  # SQLAlchemy's message repeats the URL, password and all
            raise ValueError(f"{mask_url(value)!r} is not a database URL") from None
        return value

    @field_validator("PAYMENT_PROVIDER_URL")
    @classmethod
    def _check_provider_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parsed = urlsplit(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            shown = value.replace(parsed.password, "***") if parsed.password else value
            raise ValueError(f"must be an http:// or https:// URL with a host, not {shown!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_provider(self) -> Settings:
        if self.PAYMENT_PROVIDER == "http" and not self.PAYMENT_PROVIDER_URL:
            raise ValueError("PAYMENT_PROVIDER=http needs PAYMENT_PROVIDER_URL")
        url = self.PAYMENT_PROVIDER_URL
        if url and self.PAYMENT_PROVIDER_API_KEY and urlsplit(url).username is not None:
            # both would be the Authorization header: the client refuses every call
            raise ValueError(
                "ANTAEUS_PAYMENT_PROVIDER_URL carries credentials (user@ or user:password@) "
                "and ANTAEUS_PAYMENT_PROVIDER_API_KEY is set: use one of them"
            )
        return self

    @field_validator("AMQP_URL")
    @classmethod
    def _check_amqp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        url = value.get_secret_value()
        parsed = urlsplit(url)
        try:
            port = parsed.port
        except ValueError:
            port = -1
        if parsed.scheme not in ("amqp", "amqps") or not parsed.hostname or port == -1:
            raise ValueError(
                f"must be an amqp:// or amqps:// URL with a host, not {mask_url(url)!r}"
            )
        return value

    @property
    def async_database_url(self) -> str:
        return normalize_database_url(self.DATABASE_URL)


def settings_error_message(exc: ValidationError) -> str:
    """One line naming each refused setting as it is set (`ANTAEUS_...`), without the values
    given (pydantic's own message repeats them, secrets included)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        names = [str(part) for part in error.get("loc", ()) if isinstance(part, str)]
        if names and not message.startswith("ANTAEUS_"):
            message = f"ANTAEUS_{names[0].upper()}: {message}"
        problems.append(message.replace("\n", " "))
    return "; ".join(problems) or "invalid settings"


#: `ANTAEUS_*` variables the project itself sets that are not settings: the fd a
#: supervised worker talks to its parent on, and the crash tests' failpoint.
INTERNAL_VARIABLES = frozenset({"ANTAEUS_SUPERVISOR_FD", "ANTAEUS_FAILPOINT"})
#: prefixes left to the test suite (`ANTAEUS_TEST_POSTGRES_URL`, `ANTAEUS_FUZZ_MAX_EXAMPLES`)
TEST_PREFIXES = ("ANTAEUS_TEST_", "ANTAEUS_FUZZ_")
PREFIX = "ANTAEUS_"


def setting_names() -> frozenset[str]:
    """Every setting's variable (`ANTAEUS_SCHEDULE`, ...), from the model itself."""
    prefix = str(Settings.model_config.get("env_prefix", PREFIX))
    return frozenset(f"{prefix}{name}".upper() for name in Settings.model_fields)


def unknown_variables(given: Iterable[str], allowed: Iterable[str] = ()) -> list[str]:
    """One message per `ANTAEUS_*` name in `given` that nothing reads, with the closest
    real name when one is close ("did you mean ANTAEUS_SCHEDULE?").

    Known: the settings, `allowed` (the CLI options' variables), `INTERNAL_VARIABLES`,
    and the test suite's `ANTAEUS_TEST_*` and `ANTAEUS_FUZZ_*`. Names are compared
    upper-cased, as the settings are read (`case_sensitive=False`).
    """
    known = setting_names() | INTERNAL_VARIABLES | {a.upper() for a in allowed}
    problems = []
    for name in sorted({g.upper() for g in given}):
        if not name.startswith(PREFIX) or name in known or name.startswith(TEST_PREFIXES):
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else "see docs/reference/configuration.md"
        problems.append(f"{name} is not a setting ({hint})")
    return problems


def dotenv_names(path: str = ".env") -> list[str]:
    """The variables a `.env` file (read by `Settings` too) names; none without the file."""
    from dotenv import dotenv_values

    try:
        return list(dotenv_values(path))
    except OSError:
        return []


def environment_problems(environ: Mapping[str, str], allowed: Iterable[str] = ()) -> list[str]:
    """`unknown_variables` over the environment and the `.env` file `Settings` reads."""
    env_file = Settings.model_config.get("env_file")
    names = list(environ)
    if isinstance(env_file, str):
        names += dotenv_names(env_file)
    return unknown_variables(names, allowed)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
