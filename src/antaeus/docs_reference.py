"""The reference pages under `docs/reference/`, generated from the code so that they
cannot drift from it.

    python -m antaeus.docs_reference            # (re)write docs/reference/*.md
    python -m antaeus.docs_reference --check    # exit 1 naming each page that differs

Each page is built from what the code itself declares: the HTTP API from the
app's OpenAPI document (and the error codes of `antaeus.api.errors`), the
command line from the typer application, the configuration from `Settings`,
the events from `antaeus.domain.events` (every example payload is written by the
code that writes the real ones), the metrics from
`antaeus.observability.metrics`. The output is deterministic: sorted, no
timestamps, no machine-specific value (a default that depends on the machine
is said in words). `index.md` and `payment-provider-protocol.md` are written
by hand. tests/test_docs_reference.py fails when a checked-in page differs from
what this module generates now, or when something lacks a description.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import simplejson

#: the command that regenerates the pages, as every generated page says
REGENERATE = "python -m antaeus.docs_reference"
#: where the pages live, from the repository's root
REFERENCE_DIR = Path("docs") / "reference"
#: pages written by hand, beside the generated ones
HAND_WRITTEN = ("index.md", "payment-provider-protocol.md")


def _banner(source: str) -> str:
    return (
        f"<!-- Generated from {source} by `{REGENERATE}`: do not edit by hand;\n"
        "     change the code and run the command again. -->\n"
    )


# -- Markdown helpers ---------------------------------------------------------------

_CODE_SPAN = re.compile(r"(`+[^`]*`+)")


def inline(text: str) -> str:
    """Text for Markdown: one line, `<` and `>` outside code spans escaped (so that
    `<token>` is shown, not read as HTML)."""
    text = " ".join(text.split())
    parts = _CODE_SPAN.split(text)
    for i in range(0, len(parts), 2):  # the parts outside code spans
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "".join(parts)


def cell(text: str) -> str:
    """Text for a table cell: `inline`, and no `|` that would end the cell."""
    return inline(text).replace("|", "&#124;") or " "


def paragraphs(text: str) -> str:
    """A docstring or help text as Markdown paragraphs (blank lines separate them)."""
    blocks = [b for b in re.split(r"\n\s*\n", text.strip()) if b.strip()]
    return "\n\n".join(inline(b) for b in blocks)


def sentence(text: str) -> str:
    """A description as a sentence: its first letter capitalised, a full stop at its end."""
    text = inline(text)
    if text and text[0].isalpha():
        text = text[0].upper() + text[1:]
    if text and text[-1] not in ".!?:":
        text += "."
    return text


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
    ]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def code(text: object) -> str:
    value = str(text)
    fence = "``" if "`" in value else "`"
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def _number(value: object) -> str:
    """A bound as people read it (the largest id as such, 5.0 as 5)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float | int) and value >= 2**63 - 1:
        return "2^63-1"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _range(low: tuple[str, object] | None, high: tuple[str, object] | None) -> str:
    """ "1 ≤ x ≤ 10", "x > 0", ... from (operator, bound) pairs."""
    parts = []
    if low is not None:
        parts.append(f"{_number(low[1])} {low[0]} ")
    parts.append("x")
    if high is not None:
        parts.append(f" {high[0]} {_number(high[1])}")
    return "".join(parts) if low is not None or high is not None else ""


# -- configuration -----------------------------------------------------------------


def _type_name(annotation: object) -> str:
    """A settings field's type in words."""
    from pydantic import SecretStr

    args = get_args(annotation)
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(code(a) for a in args)
    if args and type(None) in args:  # X | None
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_type_name(a) for a in inner)
    if origin is not None and str(origin).endswith("Annotated"):
        return _type_name(args[0])
    if origin is tuple and args and args[0] is timedelta:
        return "comma-separated durations (30s, 15m, 12h, 3d)"
    names: dict[object, str] = {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean (`true`, `false`)",
        SecretStr: "secret string (masked wherever shown)",
    }
    return names.get(annotation, str(annotation))


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{value.total_seconds():g}s"


def _setting_default(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return code(str(value).lower())
    if isinstance(value, tuple) and all(isinstance(v, timedelta) for v in value):
        return code(",".join(_duration(v) for v in value))
    if isinstance(value, float):
        return code(_number(value))
    return code(value)


def _field_range(metadata: Iterable[object]) -> str:
    low: tuple[str, object] | None = None
    high: tuple[str, object] | None = None
    for item in metadata:
        for attr, op in (("ge", "≤"), ("gt", "<")):
            if getattr(item, attr, None) is not None:
                low = (op, getattr(item, attr))
        for attr, op in (("le", "≤"), ("lt", "<")):
            if getattr(item, attr, None) is not None:
                high = (op, getattr(item, attr))
    return _range(low, high)


@dataclass(frozen=True)
class SettingDoc:
    variable: str
    type: str
    default: str
    range: str
    description: str


def settings_docs() -> list[SettingDoc]:
    """Every setting, sorted by its variable's name."""
    from antaeus.config import PREFIX, Settings

    prefix = str(Settings.model_config.get("env_prefix", PREFIX))
    out = []
    for name, field in Settings.model_fields.items():
        out.append(
            SettingDoc(
                variable=f"{prefix}{name}".upper(),
                type=_type_name(field.annotation),
                default=_setting_default(field.get_default(call_default_factory=True)),
                range=_field_range(field.metadata),
                description=field.description or "",
            )
        )
    return sorted(out, key=lambda s: s.variable)


def configuration_page() -> str:
    settings = settings_docs()
    parts = [
        _banner("the settings class, `antaeus.config.Settings`"),
        "# Configuration\n",
        "Antaeus reads its settings from the environment, or from a `.env` file in the "
        "directory it runs in; every variable has the prefix `ANTAEUS_` (names are not "
        "case-sensitive). A variable with that prefix that is not a setting stops every "
        "command before it does anything, naming the closest setting. Allowed besides the "
        "settings: the variables of command options (see the [command line](cli.md)), the "
        "project's internal `ANTAEUS_SUPERVISOR_FD` and `ANTAEUS_FAILPOINT`, and "
        "`ANTAEUS_TEST_*` and `ANTAEUS_FUZZ_*` for the test suite.\n",
        "A value outside its range, or settings that together could break the "
        "no-double-charge promise, stop every command at start with one line naming them "
        "(never repeating the values given).\n",
        "## Summary\n",
        table(
            ("variable", "default"),
            ((f"[{code(s.variable)}](#{s.variable.lower()})", s.default) for s in settings),
        )
        + "\n",
    ]
    for s in settings:
        rows = [f"- **Type**: {inline(s.type)}", f"- **Default**: {inline(s.default)}"]
        if s.range:
            rows.append(f"- **Range**: {inline(s.range)}")
        parts.append(f"## {s.variable}\n\n{sentence(s.description)}\n\n" + "\n".join(rows) + "\n")
    return "\n".join(parts)


# -- command line ------------------------------------------------------------------


@dataclass(frozen=True)
class OptionDoc:
    names: str  # "--port", "--append / --no-append", or an argument's NAME
    kind: str  # option, argument
    type: str
    default: str
    envvar: str
    range: str
    required: bool
    help: str


@dataclass(frozen=True)
class CommandDoc:
    path: str  # "antaeus token create"
    help: str
    group: bool
    subcommands: tuple[str, ...]
    options: tuple[OptionDoc, ...]


#: typer's names of values, as the reference says them
_CLI_TYPES = {"str": "text", "int": "integer", "float": "number", "path": "path"}


def _option_doc(param: Any, ctx: Any) -> OptionDoc:
    record = param.get_help_record(ctx)
    shown = record[0] if record else param.name
    decls = [*param.opts, *param.secondary_opts]
    is_argument = param.param_type_name == "argument"
    names = param.name.upper() if is_argument else " / ".join(d for d in decls if d)
    # what typer shows after the names: "<int range>", "DATABASE_URL", nothing for a flag
    words = shown.split(" ")
    if not is_argument:
        words = [w for w in words if not w.startswith("-") and w != "/"]
    else:
        words = words[1:]
    metavar = " ".join(words).strip("<>").removesuffix(" range")
    if getattr(param, "is_flag", False):
        type_ = "flag"
    elif metavar.startswith("list[") and metavar.endswith("]"):
        type_ = f"{_CLI_TYPES.get(metavar[5:-1], metavar[5:-1])}, repeatable"
    elif "|" in metavar:
        type_ = "one of " + ", ".join(code(c) for c in metavar.split("|"))
    else:
        type_ = _CLI_TYPES.get(metavar, metavar)
    default = ""
    value = param.default
    if param.show_default is not False and value is not None and not param.required:
        if getattr(param, "is_flag", False):
            if param.secondary_opts:
                default = code(param.opts[0] if value else param.secondary_opts[0])
            else:
                default = "off" if not value else "on"
        elif isinstance(value, Enum):
            default = code(value.value)
        elif isinstance(value, list | tuple):
            default = ", ".join(code(v) for v in value) if value else ""
        else:
            default = code(value)
    low = (("≤", param.min) if param.min is not None else None) if hasattr(param, "min") else None
    high = (("≤", param.max) if param.max is not None else None) if hasattr(param, "max") else None
    envvar = param.envvar if isinstance(param.envvar, str) else ""
    return OptionDoc(
        names=names,
        kind="argument" if is_argument else "option",
        type=type_,
        default=default,
        envvar=envvar,
        range=_range(low, high),
        required=bool(param.required),
        help=param.help or "",
    )


def cli_docs() -> list[CommandDoc]:
    """Every command and group of `antaeus`, sorted by path (the root first)."""
    import typer

    from antaeus.cli.main import app

    root = typer.main.get_command(app)
    out: list[CommandDoc] = []

    def walk(command: Any, path: str, parent: Any) -> None:
        ctx = typer.Context(command, info_name=path.rsplit(" ", 1)[-1], parent=parent)
        subs: dict[str, Any] | None = getattr(command, "commands", None)
        out.append(
            CommandDoc(
                path=path,
                help=command.help or "",
                group=subs is not None,
                subcommands=tuple(sorted(subs)) if subs else (),
                options=tuple(_option_doc(p, ctx) for p in command.params if not p.hidden),
            )
        )
        for name, sub in sorted((subs or {}).items()):
            if not sub.hidden:
                walk(sub, f"{path} {name}", ctx)

    walk(root, "antaeus", None)
    return out


def _usage(c: CommandDoc) -> str:
    if c.group:
        return f"{c.path} [OPTIONS] COMMAND [ARGS]..."
    args = [o.names for o in c.options if o.kind == "argument"]
    return " ".join([c.path, "[OPTIONS]", *args])


def cli_page() -> str:
    commands = cli_docs()
    parts = [
        _banner("the `antaeus` command itself (`antaeus.cli.main.app`)"),
        "# Command line\n",
        "`antaeus` is installed with the package. Every command takes `--help`. Options "
        "that name an environment variable read it when they are not given; the settings "
        "every command reads are in [Configuration](configuration.md).\n",
        table(
            ("command", "what it does"),
            (
                (code(c.path), c.help.strip().split("\n\n")[0])
                for c in commands
                if c.path != "antaeus" and not c.group
            ),
        )
        + "\n",
    ]
    for c in commands:
        level = "#" * min(2 + c.path.count(" ") - 1, 4) if c.path != "antaeus" else "##"
        title = c.path if c.path != "antaeus" else "antaeus"
        block = [f"{level} {title}\n", f"```\n{_usage(c)}\n```\n", paragraphs(c.help) + "\n"]
        if c.subcommands:
            block.append(
                "Commands: " + ", ".join(code(f"{c.path} {s}") for s in c.subcommands) + ".\n"
            )
        if c.options:
            rows = []
            for o in c.options:
                notes = []
                if o.required:
                    notes.append("required")
                if o.range:
                    notes.append(o.range)
                if o.envvar:
                    notes.append(f"env {code(o.envvar)}")
                rows.append(
                    (
                        code(o.names),
                        o.type,
                        o.default,
                        "; ".join(notes),
                        o.help,
                    )
                )
            block.append(table(("name", "type", "default", "notes", "description"), rows) + "\n")
        parts.append("\n".join(block))
    return "\n".join(parts)


# -- metrics -----------------------------------------------------------------------


@dataclass(frozen=True)
class MetricDoc:
    name: str  # as defined (a counter's without _total)
    type: str
    series: tuple[str, ...]
    labels: tuple[str, ...]
    help: str
    buckets: tuple[str, ...]
    multiprocess: str


def metrics_docs() -> list[MetricDoc]:
    """Every `antaeus_*` metric of `antaeus.observability.metrics`, sorted by name."""
    from prometheus_client import Counter, Gauge, Histogram

    from antaeus.observability import metrics

    out = []
    for value in vars(metrics).values():
        if not isinstance(value, Counter | Gauge | Histogram):
            continue
        described = next(iter(value.describe()))
        name = described.name
        kind = described.type
        if kind == "counter":
            series: tuple[str, ...] = (f"{name}_total",)
        elif kind == "histogram":
            series = (f"{name}_bucket", f"{name}_sum", f"{name}_count")
        else:
            series = (name,)
        bounds = getattr(value, "_upper_bounds", ()) if kind == "histogram" else ()
        out.append(
            MetricDoc(
                name=name,
                type=kind,
                series=series,
                labels=tuple(getattr(value, "_labelnames", ())),
                help=described.documentation,
                buckets=tuple(_number(b) for b in bounds if b != float("inf")),
                multiprocess=str(getattr(value, "_multiprocess_mode", ""))
                if kind == "gauge"
                else "",
            )
        )
    return sorted(out, key=lambda m: m.name)


def metrics_page() -> str:
    docs = metrics_docs()
    parts = [
        _banner("`antaeus.observability.metrics`"),
        "# Metrics\n",
        "Prometheus metrics, served at `/metrics` on the API port (with a token, unless "
        "`ANTAEUS_METRICS_PUBLIC=true`) and, without a token, on the port of "
        "`--metrics-port` (`antaeus serve`, `antaeus worker`). With several processes "
        "under one parent (`serve --workers N`, `worker --processes N`) the parent serves "
        "their sum: counters and histograms added up over every process, each gauge as its "
        "multiprocess mode says (`livemax`: the largest value of a live process; "
        "`livemostrecent`: the newest reading of a live process). The Prometheus client's "
        "own `process_*`, `python_*` series are served too; the OpenAPI document lists "
        "none of these.\n",
        table(
            ("series", "type", "labels", "help"),
            (
                (
                    ", ".join(code(s) for s in m.series),
                    m.type,
                    ", ".join(code(label) for label in m.labels),
                    m.help,
                )
                for m in docs
            ),
        )
        + "\n",
    ]
    for m in docs:
        rows = [f"- **Type**: {m.type}"]
        rows.append("- **Series**: " + ", ".join(code(s) for s in m.series))
        if m.labels:
            rows.append("- **Labels**: " + ", ".join(code(label) for label in m.labels))
        if m.buckets:
            rows.append("- **Buckets** (upper bounds): " + ", ".join(m.buckets))
        if m.multiprocess:
            rows.append(f"- **Across processes**: {code(m.multiprocess)}")
        parts.append(
            f"## {m.series[0] if m.type == 'counter' else m.name}\n\n"
            f"{sentence(m.help)}\n\n" + "\n".join(rows) + "\n"
        )
    return "\n".join(parts)


# -- events ------------------------------------------------------------------------

#: the moment every example is written at, and the ids it uses
_EXAMPLE_NOW = datetime(2026, 12, 1, 0, 0, 3, 120511, tzinfo=UTC)
_EXAMPLE_DUE = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
_EXAMPLE_KEY = "8470bd182f96f8df:42:1"


def _example_events() -> dict[str, Any]:
    """One event of every type the code writes, built by the classes that write them."""
    from antaeus.domain import events as ev
    from antaeus.domain.invoice import FailureReason, Invoice, InvoiceStatus
    from antaeus.domain.money import Money

    amount = Money.of("89.52", "DKK")
    t = ev.EventType

    def answered(
        kind: ev.EventType,
        status: str,
        outcome: str,
        charge_id: str | None,
        reason: str | None,
        next_at: datetime | None,
        decline_code: str | None = None,
    ) -> ev.ChargeAnswered:
        return ev.ChargeAnswered(
            type=kind,
            invoice_id=42,
            customer_id=7,
            amount=amount,
            due_at=_EXAMPLE_DUE,
            status=status,
            outcome=outcome,
            attempt=1,
            idempotency_key=_EXAMPLE_KEY,
            charge_id=charge_id,
            reason=reason,
            run_id=12,
            next_attempt_at=next_at,
            decline_code=decline_code,
        )

    def invoice(status: InvoiceStatus, failure: FailureReason | None = None) -> Invoice:
        return Invoice(42, 7, amount, status, _EXAMPLE_DUE, 1, failure, None)

    def action(kind: str, before: InvoiceStatus, after: Invoice, **kw: Any) -> ev.ActionTaken:
        return ev.ActionTaken(
            invoice=after,
            action=kind,
            actor=kw.get("actor", "ops-alice"),
            note=kw.get("note"),
            charge_id=kw.get("charge_id"),
            from_status=before.value,
            to_status=after.status.value,
        )

    later = _EXAMPLE_NOW + timedelta(days=1)
    examples: dict[str, Any] = {
        t.INVOICE_PAID: answered(t.INVOICE_PAID, "PAID", "charged", "ch_3f9a", None, None),
        t.INVOICE_PAYMENT_DECLINED: answered(
            t.INVOICE_PAYMENT_DECLINED,
            "PENDING",
            "insufficient_funds",
            None,
            "insufficient_funds",
            later,
        ),
        t.INVOICE_FAILED: answered(
            t.INVOICE_FAILED, "FAILED", "card_declined", None, "card_declined", None, "expired_card"
        ),
        t.INVOICE_REVIEW: ev.SentToReview(
            invoice=invoice(InvoiceStatus.REVIEW, FailureReason.UNKNOWN_OUTCOME),
            run_id=12,
            attempt=1,
            idempotency_key=_EXAMPLE_KEY,
            reason="unknown_outcome",
        ),
        t.INVOICE_PAYMENT_UNKNOWN: answered(
            t.INVOICE_PAYMENT_UNKNOWN,
            "PENDING",
            "unknown_outcome",
            None,
            "unknown_outcome",
            _EXAMPLE_NOW + timedelta(seconds=1),
        ),
        t.INVOICE_RESCHEDULED: answered(
            t.INVOICE_RESCHEDULED,
            "PENDING",
            "unknown_outcome",
            None,
            "unknown_outcome",
            _EXAMPLE_NOW + timedelta(minutes=15),
        ),
        t.INVOICE_RETRIED: action(
            "retried",
            InvoiceStatus.FAILED,
            Invoice(42, 7, amount, InvoiceStatus.PENDING, _EXAMPLE_DUE, 1, None, _EXAMPLE_NOW),
            note="card replaced",
        ),
        t.INVOICE_RESOLVED: action(
            "resolved_charged",
            InvoiceStatus.REVIEW,
            invoice(InvoiceStatus.PAID),
            actor="reconciler",
            charge_id="ch_3f9a",
        ),
        t.INVOICE_VOIDED: action(
            "voided",
            InvoiceStatus.FAILED,
            invoice(InvoiceStatus.VOID, FailureReason.CUSTOMER_NOT_FOUND),
            note="customer left",
        ),
        t.RUN_OPENED: ev.RunOpened(run_id=12, trigger="schedule", invoices=100),
        t.RUN_COMPLETED: ev.RunCompleted(run_id=12),
        t.CHARGING_PAUSED: ev.ChargingPaused(
            reason="provider_unauthorized", detail="the provider answered 401 unauthorized"
        ),
        t.CHARGING_RESUMED: ev.ChargingResumed(),
    }
    examples[t.SUBSCRIPTION_CREATED] = ev.SubscriptionEvent(
        t.SUBSCRIPTION_CREATED, _example_subscription()
    )
    examples[t.SUBSCRIPTION_UPDATED] = ev.SubscriptionEvent(
        t.SUBSCRIPTION_UPDATED, _example_subscription(cancel_at=date(2027, 1, 1))
    )
    examples[t.SUBSCRIPTION_CANCELED] = ev.SubscriptionEvent(
        t.SUBSCRIPTION_CANCELED,
        _example_subscription(cancel_at=date(2026, 12, 1), canceled_at=_EXAMPLE_NOW),
    )
    examples[t.SUBSCRIPTION_TRIAL_WILL_END] = ev.SubscriptionEvent(
        t.SUBSCRIPTION_TRIAL_WILL_END, _example_subscription()
    )
    examples[t.INVOICE_CREATED] = ev.InvoiceCreated(
        Invoice(43, 7, Money.of("30.00", "EUR"), InvoiceStatus.PENDING, _EXAMPLE_DUE),
        (
            ev.line_data(
                91,
                "subscription",
                "Pro × 1, 2026-12-01 – 2027-01-01",
                Money.of("30.00", "EUR"),
                5,
                3,
                date(2026, 12, 1),
                date(2027, 1, 1),
                1,
            ),
        ),
    )
    return {str(k): v for k, v in examples.items()}


def _example_subscription(
    cancel_at: date | None = None, canceled_at: datetime | None = None
) -> dict[str, Any]:
    """A subscription as the API shows it, by the API's own function."""
    from antaeus.billing.subscription_view import subscription_json
    from antaeus.domain.money import Money
    from antaeus.domain.periods import BillingAnchor, Interval
    from antaeus.storage.repositories.plans import Plan
    from antaeus.storage.repositories.subscriptions import SubscriptionRow

    plan = Plan(
        id=3,
        code="pro-monthly",
        name="Pro",
        amount=Money.of("49.00", "DKK"),
        interval=Interval.MONTH,
        interval_count=1,
        trial_days=0,
        created_at=_EXAMPLE_NOW - timedelta(days=30),
        archived_at=None,
    )
    row = SubscriptionRow(
        id=5,
        customer_id=7,
        timezone="Europe/Copenhagen",
        plan_id=3,
        quantity=2,
        billing_anchor=BillingAnchor.CALENDAR,
        start_date=date(2026, 12, 1),
        trial_end_date=None,
        cancel_at=cancel_at,
        canceled_at=canceled_at,
        pending_plan_id=None,
        pending_quantity=None,
        pending_effective_date=None,
        periods_from=None,
        next_period_start=None,
        next_due_at=None,
        created_at=_EXAMPLE_NOW,
    )
    return subscription_json(row, {3: plan}, _EXAMPLE_NOW)


@dataclass(frozen=True)
class EventDoc:
    type: str
    description: str
    in_enum: bool
    example: str | None  # the whole event as delivered, pretty-printed JSON


def events_docs() -> list[EventDoc]:
    """Every event type (the enum's and those described ahead of it), sorted."""
    from antaeus.domain.events import DESCRIPTIONS, EventType, payload
    from antaeus.exactjson import loads
    from antaeus.notify.envelope import StoredEvent

    examples = _example_events()
    types = sorted({t.value for t in EventType} | set(DESCRIPTIONS))
    out = []
    for kind in types:
        event = examples.get(kind)
        example = None
        if event is not None:
            stored = StoredEvent(1042, kind, None, None, payload(event), _EXAMPLE_NOW)
            envelope = stored.envelope()
            envelope["data"] = loads(payload(event))
            example = simplejson.dumps(envelope, indent=2, use_decimal=True, ensure_ascii=False)
        out.append(
            EventDoc(
                type=kind,
                description=DESCRIPTIONS.get(kind, ""),
                in_enum=kind in {t.value for t in EventType},
                example=example,
            )
        )
    return out


def events_page() -> str:
    docs = events_docs()
    parts = [
        _banner("`antaeus.domain.events` (`EventType`, `DESCRIPTIONS` and the event classes)"),
        "# Events\n",
        "Everything Antaeus decides is written as an event to its outbox in the same "
        "transaction as the change itself. Every event is the same JSON object wherever it "
        "is read: polled with `GET /rest/v1/events` (see the [HTTP API](http-api.md)), "
        "posted to webhooks (signed per Standard Webhooks), published to RabbitMQ "
        "(exchange `antaeus.events`, routing key = the type). `id` is the same on every "
        "delivery to every destination: delivery is at least once, so deduplicate by it. "
        "Amounts are exact JSON numbers (read them as decimals, never floats); moments are "
        "RFC 3339 in UTC.\n",
        '```json\n{"id": "evt_…", "type": "invoice.paid", "createdAt": "…Z", "data": {…}}\n```\n',
        table(
            ("type", "when"),
            ((f"[{code(d.type)}](#{_slug(d.type)})", d.description) for d in docs),
        )
        + "\n",
    ]
    for d in docs:
        block = [f"## {d.type}\n", inline(d.description or "(no description)") + "\n"]
        if not d.in_enum:
            block.append("Not written by this version yet.\n")
        if d.example is not None:
            block.append(f"```json\n{d.example}\n```\n")
        parts.append("\n".join(block))
    return "\n".join(parts)


def _slug(heading: str) -> str:
    """The anchor Python-Markdown's toc gives a heading (the default slugify)."""
    text = re.sub(r"[^\w\s-]", "", heading).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


# -- HTTP API ----------------------------------------------------------------------


def openapi_document() -> dict[str, Any]:
    """The app's OpenAPI document, built with the settings' defaults (not this machine's
    environment)."""
    from antaeus.api.app import create_app
    from antaeus.config import Settings

    return create_app(Settings.model_construct()).openapi()


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _schema_type(schema: Mapping[str, Any]) -> str:
    """A JSON schema's type in words, with links to the named schemas."""
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema or "oneOf" in schema:
        options = schema.get("anyOf") or schema.get("oneOf") or []
        names = [_schema_type(s) for s in options if s.get("type") != "null"]
        nullable = any(s.get("type") == "null" for s in options)
        text = " or ".join(dict.fromkeys(names))
        return f"{text} or null" if nullable else text
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return _schema_type(schema["allOf"][0])
    if "enum" in schema:
        return "one of " + ", ".join(code(v) for v in schema["enum"])
    if "const" in schema:
        return code(schema["const"])
    kind = schema.get("type")
    if kind == "array":
        return "list of " + _schema_type(schema.get("items", {}))
    if kind == "string" and "format" in schema:
        return f"string ({schema['format']})"
    if kind == "object" and "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        if isinstance(extra, dict) and extra:
            return "object of " + _schema_type(extra)
        return "object"
    return str(kind) if kind else "any"


def _schema_limits(schema: Mapping[str, Any]) -> str:
    """Bounds, lengths and patterns of a schema (and of its non-null options)."""
    options = schema.get("anyOf") or [schema]
    notes = []
    for s in options:
        if s.get("type") == "null":
            continue
        low = high = None
        for key, op in (("minimum", "≤"), ("ge", "≤"), ("exclusiveMinimum", "<"), ("gt", "<")):
            if key in s:
                low = (op, s[key])
        for key, op in (("maximum", "≤"), ("le", "≤"), ("exclusiveMaximum", "<"), ("lt", "<")):
            if key in s:
                high = (op, s[key])
        if low or high:
            notes.append(_range(low, high))
        if "minLength" in s or "maxLength" in s:
            notes.append(f"length {s.get('minLength', 0)} to {s.get('maxLength', '∞')}")
        if "minItems" in s or "maxItems" in s:
            notes.append(f"{s.get('minItems', 0)} to {s.get('maxItems', '∞')} items")
        if "pattern" in s:
            notes.append(f"pattern {code(s['pattern'])}")
    return "; ".join(dict.fromkeys(notes))


def _default(schema: Mapping[str, Any]) -> str:
    if "default" not in schema:
        return ""
    value = schema["default"]
    if value is None:
        return "null"
    if isinstance(value, bool):
        return code(str(value).lower())
    return code(simplejson.dumps(value) if isinstance(value, list | dict) else value)


def _description(schema: Mapping[str, Any]) -> str:
    if schema.get("description"):
        return str(schema["description"])
    for option in schema.get("anyOf", ()):
        if option.get("description"):
            return str(option["description"])
    return ""


def _fields_table(schema: Mapping[str, Any]) -> str:
    properties = schema.get("properties", {})
    required = set(schema.get("required", ()))
    rows = []
    for name in sorted(properties):
        prop = properties[name]
        notes = [n for n in (_schema_limits(prop),) if n]
        if prop.get("default") is not None or "default" in prop:
            notes.append(f"default {_default(prop)}")
        rows.append(
            (
                code(name),
                _schema_type(prop),
                "yes" if name in required else "no",
                "; ".join(notes),
                _description(prop),
            )
        )
    return table(("field", "type", "required", "limits", "description"), rows)


_METHOD_ORDER = {"get": 0, "post": 1, "put": 2, "patch": 3, "delete": 4}


@dataclass(frozen=True)
class RouteDoc:
    method: str
    path: str
    tag: str
    summary: str
    description: str
    operation: Mapping[str, Any]


def routes_docs(document: Mapping[str, Any] | None = None) -> list[RouteDoc]:
    """Every route of the OpenAPI document, sorted by tag, path and method."""
    doc = document if document is not None else openapi_document()
    out = []
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            out.append(
                RouteDoc(
                    method=method.upper(),
                    path=path,
                    tag=(op.get("tags") or ["other"])[0],
                    summary=op.get("summary", ""),
                    description=op.get("description", ""),
                    operation=op,
                )
            )
    return sorted(out, key=lambda r: (r.tag, r.path, _METHOD_ORDER.get(r.method.lower(), 9)))


def _route_block(route: RouteDoc, schemas: Mapping[str, Any]) -> str:
    op = route.operation
    block = [f"### {route.method} {route.path}\n", f"**{inline(route.summary)}**\n"]
    if route.description:
        block.append(paragraphs(route.description) + "\n")
    params = op.get("parameters", [])
    if params:
        rows = []
        for p in params:
            schema = p.get("schema", {})
            notes = [n for n in (_schema_limits(schema),) if n]
            if "default" in schema:
                notes.append(f"default {_default(schema)}")
            rows.append(
                (
                    code(p["name"]),
                    p["in"],
                    _schema_type(schema),
                    "yes" if p.get("required") else "no",
                    "; ".join(notes),
                    p.get("description") or _description(schema),
                )
            )
        block.append(
            "Parameters:\n\n"
            + table(("name", "in", "type", "required", "limits", "description"), rows)
            + "\n"
        )
    body = op.get("requestBody")
    if body:
        schema = body.get("content", {}).get("application/json", {}).get("schema", {})
        required = "required" if body.get("required") else "optional"
        block.append(f"Request body ({required}): {_schema_type(schema)}\n")
        refs = [o["$ref"] for o in (schema, *schema.get("anyOf", ())) if "$ref" in o]
        if refs:
            named = schemas.get(_ref_name(refs[0]), {})
            if named.get("properties"):
                block.append(_fields_table(named) + "\n")
    answers: list[tuple[str, str, str]] = []
    for status in sorted(op.get("responses", {})):
        answer = op["responses"][status]
        content = answer.get("content", {}).get("application/json", {}).get("schema")
        answers.append(
            (code(status), answer.get("description", ""), _schema_type(content) if content else "")
        )
    block.append("Answers:\n\n" + table(("status", "meaning", "body"), answers) + "\n")
    return "\n".join(block)


def http_api_page() -> str:
    from antaeus.api.errors import error_codes

    doc = openapi_document()
    routes = routes_docs(doc)
    parts = [
        _banner(
            "the app's OpenAPI document (`antaeus.api.app.create_app`) and `antaeus.api.errors`"
        ),
        "# HTTP API\n",
        paragraphs(doc.get("info", {}).get("description", "")) + "\n",
        "A running server also serves this document as `/openapi.json`, with Swagger UI "
        "at `/docs` and ReDoc at `/redoc`.\n",
        "## Routes\n",
        table(
            ("method", "path", "summary"),
            ((r.method, code(r.path), r.summary) for r in routes),
        )
        + "\n",
        "## Error codes\n",
        'Every error is `{"error": code, "message": for people, "field": where}` (`field` '
        "when one is at fault). A program tests `error`; the status agrees with it.\n",
        table(
            ("code", "status", "meaning"),
            ((code(c), str(status), text) for c, (status, text) in error_codes().items()),
        )
        + "\n",
    ]
    tag = None
    for r in routes:
        if r.tag != tag:
            tag = r.tag
            parts.append(f"## {tag.capitalize()}\n")
        parts.append(_route_block(r, doc.get("components", {}).get("schemas", {})))
    parts.append("## Schemas\n")
    parts.append("The bodies the routes take and answer, as the OpenAPI document names them.\n")
    schemas = doc.get("components", {}).get("schemas", {})
    for name in sorted(schemas):
        schema = schemas[name]
        block = [f"### {name}\n"]
        if schema.get("description"):
            block.append(paragraphs(schema["description"]) + "\n")
        if "enum" in schema:
            block.append("One of " + ", ".join(code(v) for v in schema["enum"]) + ".\n")
        elif schema.get("properties"):
            block.append(_fields_table(schema) + "\n")
        parts.append("\n".join(block))
    return "\n".join(parts)


# -- the pages ---------------------------------------------------------------------

PAGES: dict[str, Callable[[], str]] = {
    "cli.md": cli_page,
    "configuration.md": configuration_page,
    "events.md": events_page,
    "http-api.md": http_api_page,
    "metrics.md": metrics_page,
}


def generate() -> dict[str, str]:
    """Every generated page: file name -> text (ending in one newline)."""
    return {name: build().rstrip("\n") + "\n" for name, build in sorted(PAGES.items())}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m antaeus.docs_reference", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument(
        "--out", type=Path, default=REFERENCE_DIR, help="directory of the pages (docs/reference)"
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a page differs"
    )
    args = parser.parse_args(argv)
    pages = generate()
    if args.check:
        stale = [
            name
            for name, text in pages.items()
            if not (args.out / name).is_file()
            or (args.out / name).read_text(encoding="utf-8") != text
        ]
        for name in stale:
            print(f"{args.out / name} differs from the code; run: {REGENERATE}", file=sys.stderr)
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in pages.items():
        (args.out / name).write_text(text, encoding="utf-8")
        print(args.out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
