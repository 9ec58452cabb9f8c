"""The dashboard's pages, mounted at `/` next to the API (none is in the OpenAPI schema).

Every page but the sign-in page needs a session (`sessions.require`); every POST
checks the session's CSRF token before it reads anything else of the form. A
person's action goes through `billing.service`, the same functions the API
routes call, so its log line, metric, audit row and event are the same.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any, Final, cast

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from antaeus.api.context import AppContext, Ctx
from antaeus.api.errors import validation_message
from antaeus.api.jsonio import JSONResponse  # exact decimals, as the API writes them
from antaeus.api.outbox_status import outbox_json, relay_json
from antaeus.api.schemas import (
    MAX_ID,
    ActionBody,
    ResolveBody,
    action_json,
    attempt_json,
    reconciliation_json,
)
from antaeus.billing import service
from antaeus.billing.reconcile import NotReconcilableError, Reconciler
from antaeus.billing.runs_view import runs_json
from antaeus.billing.subscription_view import recurring_revenue
from antaeus.dashboard import sessions
from antaeus.dashboard.events_view import describe as describe_event
from antaeus.dashboard.rendering import DashboardError, render
from antaeus.domain.errors import ActionRefusedError, InvoiceNotFoundError
from antaeus.domain.invoice import FailureReason, Invoice, InvoiceStatus
from antaeus.domain.money import Money
from antaeus.notify.envelope import event_id
from antaeus.payments.factory import ProviderConfigError
from antaeus.payments.provider import PaymentProvider
from antaeus.storage.repositories.actions import ActionRepository
from antaeus.storage.repositories.billing import BillingRepository
from antaeus.storage.repositories.customers import CustomerRepository
from antaeus.storage.repositories.dashboard import (
    DashboardRepository,
    SubscriptionPagesRepository,
)
from antaeus.storage.repositories.invoices import BulkAction, InvoiceFilter, InvoiceRepository
from antaeus.storage.repositories.outbox import DestinationRepository, EventRepository
from antaeus.storage.repositories.reconciliations import RECONCILABLE, ReconciliationRepository

log = structlog.get_logger("antaeus.dashboard")

router = APIRouter(include_in_schema=False)

SessionDep = Annotated[sessions.Session, Depends(sessions.require)]

PAGE_SIZE: Final = 50
OUTCOMES: Final = ("paid", "rescheduled", "failed", "review", "void")
MAX_NOTE: Final = 2000

#: the actions a person can take on an invoice: (title, what happens, statuses it applies to)
ACTIONS: Final[dict[str, tuple[str, str, tuple[InvoiceStatus, ...]]]] = {
    "retry": (
        "Retry",
        "The invoice becomes PENDING and due now; its next charge is a new attempt "
        "with a new idempotency key. Fix the cause first.",
        (InvoiceStatus.FAILED,),
    ),
    "resolve-charged": (
        "Resolve as charged",
        "The provider did charge it: the invoice becomes PAID with the charge id you give.",
        (InvoiceStatus.REVIEW,),
    ),
    "resolve-not-charged": (
        "Resolve as not charged",
        "Nothing moved at the provider: the invoice becomes PENDING, due now, and its next "
        "charge is a new attempt.",
        (InvoiceStatus.REVIEW,),
    ),
    "void": (
        "Void",
        "The invoice is never charged again.",
        (InvoiceStatus.FAILED, InvoiceStatus.PENDING),
    ),
}


#: the actions on every invoice of the list's filter: (title, what happens)
BULK_ACTIONS: Final[dict[str, tuple[str, str]]] = {
    "retry": (
        "Retry all matching",
        "Each matching FAILED invoice becomes PENDING and due now; its next charge is a new "
        "attempt. Matching invoices in another status are skipped. Fix the cause first.",
    ),
    "void": (
        "Void all matching",
        "Each matching FAILED invoice, and each PENDING one with no attempt of unknown "
        "outcome open, becomes VOID and is never charged again. The others are skipped.",
    ),
}


# -- parsing what the browser sent ------------------------------------------------------


def parse_id(value: str | None, what: str, *, status: int = 404) -> int:
    if (
        value is None
        or not value.isascii()
        or not value.isdigit()
        or len(value) > 19
        or not 1 <= int(value) <= MAX_ID
    ):
        shown = "" if value is None else value[:40]
        raise DashboardError(status, f"Not a {what} id", f"{shown!r} is not a {what} id.")
    return int(value)


def _status_filter(value: str | None) -> InvoiceStatus | None:
    if not value:
        return None
    try:
        return InvoiceStatus(value)
    except ValueError:
        known = ", ".join(s.value for s in InvoiceStatus)
        raise DashboardError(
            400, "Unknown status", f"{value[:40]!r} is not a status; one of {known}."
        ) from None


def _failure_filter(value: str | None) -> FailureReason | None:
    if not value:
        return None
    try:
        return FailureReason(value)
    except ValueError:
        known = ", ".join(r.value for r in FailureReason)
        raise DashboardError(
            400, "Unknown failure", f"{value[:40]!r} is not a failure reason; one of {known}."
        ) from None


def _optional_id(value: str | None, what: str) -> int | None:
    return parse_id(value, what, status=400) if value else None


def _note(form: Any) -> str | None:
    value = form.get("note")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise DashboardError(400, "Bad note", "The note must be text.")
    if len(value) > MAX_NOTE:
        raise DashboardError(
            400, "Note too long", f"The note has {len(value)} characters; at most {MAX_NOTE}."
        )
    try:
        ActionBody(note=value)
    except ValidationError as exc:
        raise DashboardError(400, "Bad note", _first_error(exc)) from None
    return value


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    return validation_message(errors[0]) if errors else "invalid value"


# -- formatting -------------------------------------------------------------------------


def money(m: Money) -> str:
    return f"{m.value:,} {m.currency.value}"


def duration(started: datetime, ended: datetime) -> str:
    seconds = max(0.0, (ended - started).total_seconds())
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _run_view(run: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A run as `runs_json` writes it, with what the pages and the live JSON add."""
    counts: dict[str, int] = run["counts"]
    due = counts.get("due", 0)
    done = sum(counts.get(o, 0) for o in OUTCOMES)
    started = datetime.fromisoformat(run["startedAt"])
    ended = datetime.fromisoformat(run["completedAt"]) if run["completedAt"] else now
    return {
        **run,
        "due": due,
        "done": done,
        "pending": max(0, due - done),
        "percent": 100 if due == 0 else int(done * 100 / due),
        "duration": duration(started, ended),
        "collectedText": [f"{c['value']:,} {c['currency']}" for c in run["collected"]],
        "bars": [{"outcome": o, "count": counts.get(o, 0)} for o in (*OUTCOMES, "pending")],
    }


def _with_pending(view: dict[str, Any]) -> dict[str, Any]:
    for bar in view["bars"]:
        if bar["outcome"] == "pending":
            bar["count"] = view["pending"]
    return view


async def _runs(ctx: AppContext, ids: list[int]) -> list[dict[str, Any]]:
    async with ctx.db.read() as conn:
        found = {r["id"]: r for r in await runs_json(conn, ids)}
    now = ctx.clock.now()
    return [_with_pending(_run_view(found[i], now)) for i in ids if i in found]


def _month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _actions_for(invoice: Invoice) -> list[tuple[str, str]]:
    return [
        (name, title)
        for name, (title, _what, allowed) in ACTIONS.items()
        if invoice.status in allowed
    ]


# -- sign-in ----------------------------------------------------------------------------


def _signin_page(
    request: Request, next_path: str, error: str | None = None, status: int = 200
) -> Response:
    csrf = sessions.new_secret()
    response = render(
        request,
        "signin.html",
        {"csrf_token": csrf, "next": next_path, "error": error},
        status_code=status,
    )
    sessions.set_cookie(response, sessions.SIGNIN_COOKIE, csrf, sessions.SIGNIN_LIFETIME, "/signin")
    return response


@router.get("/signin")
async def signin_form(request: Request, next: str | None = None) -> Response:
    if await sessions.current(request) is not None:
        return RedirectResponse(sessions.safe_next(next), status_code=303)
    return _signin_page(request, sessions.safe_next(next))


@router.post("/signin")
async def signin(request: Request, ctx: Ctx) -> Response:
    form = await request.form()
    expected = request.cookies.get(sessions.SIGNIN_COOKIE)
    if not expected or not sessions.same_secret(form.get(sessions.CSRF_FIELD), expected):
        raise sessions.CsrfRefusedError
    next_path = sessions.safe_next(form.get("next"))
    token = form.get("token")
    grant = None
    if isinstance(token, str) and 0 < len(token.strip()) <= 512:
        grant = await ctx.tokens.identify(token.strip())
    if grant is None:
        return _signin_page(request, next_path, "Unknown or revoked token.", status=401)
    response = RedirectResponse(next_path, status_code=303)
    await sessions.start(ctx, grant, response)
    sessions.clear_cookie(response, sessions.SIGNIN_COOKIE, "/signin")
    return response


@router.post("/signout")
async def signout(request: Request, ctx: Ctx, session: SessionDep) -> Response:
    await sessions.checked_form(request, session)
    response = RedirectResponse("/signin", status_code=303)
    await sessions.end(ctx, session, response)
    return response


# -- overview ---------------------------------------------------------------------------


async def _charging(ctx: AppContext) -> dict[str, Any]:
    async with ctx.db.read() as conn:
        repo = BillingRepository(conn)
        reason, since = await repo.pause_state()
        open_runs = await repo.running_run_ids()
        backlog = await repo.due_backlog(ctx.clock.now())
    return {
        "charging": "paused" if reason else "running",
        "pausedReason": reason,
        "pausedSince": since.isoformat() if since else None,
        "schedule": ctx.settings.SCHEDULE,
        "dueBacklog": backlog,
        "openRuns": open_runs,
    }


@router.get("/")
async def overview(request: Request, ctx: Ctx, session: SessionDep) -> Response:
    state = await _charging(ctx)
    runs = await _runs(ctx, state["openRuns"])
    month = _month_start(ctx.clock.now())
    async with ctx.db.read() as conn:
        repo = DashboardRepository(conn)
        collected = await repo.collected_since(month)
        waiting_counts = await repo.waiting_counts()
        waiting = await repo.waiting(20)
        outbox = await outbox_json(conn)
        mrr, active, trialing = await recurring_revenue(conn, ctx.clock.now())
    return render(
        request,
        "overview.html",
        {
            "outbox": outbox,
            "relay": relay_json(getattr(request.app.state, "relay", None)),
            "session": session,
            "state": state,
            "runs": runs,
            "month": month,
            "collected": [money(m) for m in collected],
            "waiting_counts": waiting_counts,
            "waiting": waiting,
            "mrr": [money(mrr[c]) for c in sorted(mrr)],
            "active": active,
            "trialing": trialing,
        },
    )


@router.get("/live/overview")
async def overview_live(ctx: Ctx, _session: SessionDep) -> JSONResponse:
    state = await _charging(ctx)
    runs = await _runs(ctx, state["openRuns"])
    return JSONResponse({**state, "runs": runs}, headers={"Cache-Control": "no-store"})


# -- runs -------------------------------------------------------------------------------


@router.get("/runs")
async def runs_page(
    request: Request, ctx: Ctx, session: SessionDep, before: str | None = None
) -> Response:
    start = _optional_id(before, "run")
    async with ctx.db.read() as conn:
        ids = await DashboardRepository(conn).recent_run_ids(before=start, limit=PAGE_SIZE + 1)
    more = len(ids) > PAGE_SIZE
    ids = ids[:PAGE_SIZE]
    runs = await _runs(ctx, ids)
    return render(
        request,
        "runs.html",
        {"session": session, "runs": runs, "older": ids[-1] if more and ids else None},
    )


@router.get("/runs/{run_id}")
async def run_page(request: Request, run_id: str, ctx: Ctx, session: SessionDep) -> Response:
    found = await _runs(ctx, [parse_id(run_id, "run")])
    if not found:
        raise DashboardError(404, "No such run", f"Billing run {run_id} does not exist.")
    return render(request, "run.html", {"session": session, "run": found[0]})


@router.get("/live/runs/{run_id}")
async def run_live(run_id: str, ctx: Ctx, _session: SessionDep) -> JSONResponse:
    found = await _runs(ctx, [parse_id(run_id, "run")])
    if not found:
        return JSONResponse({"error": "not_found"}, status_code=404)
    return JSONResponse(found[0], headers={"Cache-Control": "no-store"})


# -- invoices ---------------------------------------------------------------------------


@router.get("/invoices")
async def invoices_page(
    request: Request,
    ctx: Ctx,
    session: SessionDep,
    status: str | None = None,
    customer: str | None = None,
    failure: str | None = None,
    id: str | None = None,
    after: str | None = None,
) -> Response:
    if id:
        one = parse_id(id.strip(), "invoice", status=400)
        return RedirectResponse(f"/invoices/{one}", status_code=303)
    wanted = _list_filter(status, customer, failure)
    start = _optional_id(after, "invoice") or 0
    async with ctx.db.read() as conn:
        rows = await InvoiceRepository(conn).page(
            after=start,
            limit=PAGE_SIZE + 1,
            status=wanted.status,
            customer_id=wanted.customer_id,
            last_failure=wanted.last_failure,
        )
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    filter_query = _filter_query(wanted)
    next_query = {**filter_query, "after": str(rows[-1].id)} if more and rows else None
    return render(
        request,
        "invoices.html",
        {
            "session": session,
            "invoices": rows,
            "statuses": [s.value for s in InvoiceStatus],
            "failures": [r.value for r in FailureReason],
            "status": wanted.status.value if wanted.status else "",
            "customer": str(wanted.customer_id) if wanted.customer_id else "",
            "failure": wanted.last_failure.value if wanted.last_failure else "",
            "next_query": next_query,
            "filter_query": filter_query if not wanted.empty() else None,
            "bulk": [(name, title) for name, (title, _what) in BULK_ACTIONS.items()],
        },
    )


def _list_filter(status: Any, customer: Any, failure: Any) -> InvoiceFilter:
    """The invoice list's filter from its query (or a bulk form's fields)."""
    for value in (status, customer, failure):
        if value is not None and not isinstance(value, str):
            raise DashboardError(400, "Bad filter", "The filter's fields must be text.")
    return InvoiceFilter(
        status=_status_filter(status),
        last_failure=_failure_filter(failure),
        customer_id=_optional_id(customer, "customer"),
    )


def _filter_query(wanted: InvoiceFilter) -> dict[str, str]:
    query: dict[str, str] = {}
    if wanted.status:
        query["status"] = wanted.status.value
    if wanted.customer_id:
        query["customer"] = str(wanted.customer_id)
    if wanted.last_failure:
        query["failure"] = wanted.last_failure.value
    return query


def _filter_words(wanted: InvoiceFilter) -> str:
    words = []
    if wanted.status:
        words.append(f"status {wanted.status.value}")
    if wanted.last_failure:
        words.append(f"last failure {wanted.last_failure.value}")
    if wanted.customer_id:
        words.append(f"customer {wanted.customer_id}")
    return ", ".join(words)


# The bulk actions' routes come before the per-invoice `/invoices/{invoice_id}/{action}`
# ones, which would otherwise take "bulk" for an invoice id.


def _bulk_action(name: str) -> tuple[str, str]:
    found = BULK_ACTIONS.get(name)
    if found is None:
        raise DashboardError(404, "No such action", f"{name[:40]!r} is not a bulk action.")
    return found


def _bulk_filter(wanted: InvoiceFilter) -> InvoiceFilter:
    if wanted.empty():
        raise DashboardError(
            400,
            "Choose a filter first",
            "A bulk action needs a filter (status, last failure or customer): there is no "
            "action on every invoice.",
            back="/invoices",
        )
    return wanted


@router.get("/invoices/bulk/{action}")
async def bulk_confirm_page(
    request: Request,
    action: str,
    ctx: Ctx,
    session: SessionDep,
    status: str | None = None,
    customer: str | None = None,
    failure: str | None = None,
) -> Response:
    title, what = _bulk_action(action)
    wanted = _bulk_filter(_list_filter(status, customer, failure))
    async with ctx.db.read() as conn:
        count = await InvoiceRepository(conn).count_matching(wanted, cast(BulkAction, action))
    return render(
        request,
        "bulk_confirm.html",
        {
            "session": session,
            "action": action,
            "title": title,
            "what": what,
            "filter_words": _filter_words(wanted),
            "filter_query": _filter_query(wanted),
            "count": count,
            "max_note": MAX_NOTE,
        },
    )


@router.post("/invoices/bulk/{action}")
async def do_bulk_action(request: Request, action: str, ctx: Ctx, session: SessionDep) -> Response:
    form = await sessions.checked_form(request, session)
    title, _what = _bulk_action(action)
    wanted = _bulk_filter(
        _list_filter(form.get("status"), form.get("customer"), form.get("failure"))
    )
    up_to = form.get("up_to")
    # only invoices that existed when the confirmation showed its count
    last_id = parse_id(up_to if isinstance(up_to, str) else None, "invoice", status=400)
    note = _note(form)
    done = await service.bulk_action(
        ctx.db,
        ctx.clock,
        cast(BulkAction, action),
        replace(wanted, up_to_id=last_id),
        actor=session.token_name,
        note=note,
    )
    return render(
        request,
        "bulk_done.html",
        {
            "session": session,
            "title": title,
            "filter_words": _filter_words(wanted),
            "filter_query": _filter_query(wanted),
            "done": done,
        },
    )


async def _invoice_or_404(ctx: AppContext, raw_id: str) -> Invoice:
    invoice_id = parse_id(raw_id, "invoice")
    async with ctx.db.read() as conn:
        invoice = await InvoiceRepository(conn).get(invoice_id)
    if invoice is None:
        raise DashboardError(404, "No such invoice", f"Invoice {invoice_id} does not exist.")
    return invoice


@router.get("/invoices/{invoice_id}")
async def invoice_page(
    request: Request, invoice_id: str, ctx: Ctx, session: SessionDep
) -> Response:
    invoice = await _invoice_or_404(ctx, invoice_id)
    async with ctx.db.read() as conn:
        actions = ActionRepository(conn)
        attempts = await actions.attempts(invoice.id)
        answers = await actions.answers(invoice.id) if attempts else []
        asked = await ReconciliationRepository(conn).of_invoice(invoice.id) if attempts else []
        history = await actions.history(invoice.id, after=0, limit=500)
        events = await EventRepository(conn).page(
            after=0, limit=500, invoice_id=invoice.id, settled=False
        )
        customer = await CustomerRepository(conn).get(invoice.customer_id)
        pages = SubscriptionPagesRepository(conn)
        lines = await pages.lines_of_invoices([invoice.id])
        subscriptions = await pages.subscriptions_of_invoice(invoice.id)
    return render(
        request,
        "invoice.html",
        {
            "session": session,
            "invoice": invoice,
            "customer": customer,
            "amount": money(invoice.amount),
            "attempts": [attempt_json(a, answers, asked) for a in attempts],
            "reconciliations": [{"attempt": r.attempt, **reconciliation_json(r)} for r in asked],
            "history": [action_json(h) for h in history],
            "events": [describe_event(e.envelope()) for e in events],
            "actions": _actions_for(invoice),
            "can_ask": _askable(invoice),
            "lines": [
                {
                    "kind": x.kind,
                    "description": x.description,
                    "amount": money(x.amount),
                    "subscription_id": x.subscription_id,
                    "period": f"{x.period_start} – {x.period_end}" if x.period_start else "",
                    "quantity": x.quantity,
                }
                for x in lines
            ],
            "subscriptions": subscriptions,
        },
    )


# -- asking the provider about a REVIEW invoice (the reconciler, for one invoice) ------------


def _askable(invoice: Invoice) -> bool:
    return invoice.status is InvoiceStatus.REVIEW and invoice.last_failure in RECONCILABLE


def _reconciler(request: Request, ctx: AppContext) -> Reconciler:
    provider_of = getattr(request.app.state, "provider", None)
    try:
        if provider_of is None:
            raise ProviderConfigError("this process has no payment provider")
        provider: PaymentProvider = provider_of()
    except ProviderConfigError as exc:
        raise DashboardError(
            503, "Cannot ask the provider", f"No payment provider to ask: {exc}."
        ) from None
    return Reconciler.from_settings(ctx.db, provider, ctx.clock, ctx.settings)


def _not_askable(invoice: Invoice) -> DashboardError:
    reason = invoice.last_failure.value if invoice.last_failure else "no reason"
    why = (
        f"it is {invoice.status.value}"
        if invoice.status is not InvoiceStatus.REVIEW
        else f"it is in REVIEW for {reason}, which a lookup of its key cannot settle: "
        "check with the provider yourself and resolve it"
    )
    return DashboardError(
        409,
        "Cannot ask the provider",
        f"Invoice {invoice.id} cannot be asked about: {why}. Nothing was changed.",
        back=f"/invoices/{invoice.id}",
    )


@router.get("/invoices/{invoice_id}/ask-provider")
async def ask_provider_page(
    request: Request, invoice_id: str, ctx: Ctx, session: SessionDep
) -> Response:
    invoice = await _invoice_or_404(ctx, invoice_id)
    if not _askable(invoice):
        raise _not_askable(invoice)
    async with ctx.db.read() as conn:
        attempts = await ActionRepository(conn).attempts(invoice.id)
    attempt = attempts[-1] if attempts else None
    return render(
        request,
        "ask_provider.html",
        {
            "session": session,
            "invoice": invoice,
            "amount": money(invoice.amount),
            "attempt": attempt,
        },
    )


@router.post("/invoices/{invoice_id}/ask-provider")
async def ask_provider(
    request: Request, invoice_id: str, ctx: Ctx, session: SessionDep
) -> Response:
    form = await sessions.checked_form(request, session)
    invoice = await _invoice_or_404(ctx, invoice_id)
    if not _askable(invoice):
        raise _not_askable(invoice)
    seen = form.get("attempt")
    if isinstance(seen, str) and seen and seen != str(invoice.attempt_count):
        raise DashboardError(
            409,
            "The invoice moved on",
            f"The confirmation was about attempt {seen[:20]}; invoice {invoice.id} is at "
            f"attempt {invoice.attempt_count} now. Nothing was asked; look again.",
            back=f"/invoices/{invoice.id}",
        )
    reconciler = _reconciler(request, ctx)
    try:
        done = await reconciler.reconcile_invoice(invoice.id)
    except InvoiceNotFoundError:
        raise DashboardError(
            404, "No such invoice", f"Invoice {invoice.id} does not exist."
        ) from None
    except NotReconcilableError as exc:
        raise DashboardError(
            409,
            "Cannot ask the provider",
            f"{exc}. Nothing was changed.",
            back=f"/invoices/{invoice.id}",
        ) from None
    log.info(
        "provider_asked_from_dashboard",
        invoice_id=invoice.id,
        actor=session.token_name,
        result=done.result,
        outcome=done.outcome,
    )
    return render(
        request,
        "ask_provider_done.html",
        {"session": session, "invoice": invoice, "done": done},
    )


def _action(name: str) -> tuple[str, str, tuple[InvoiceStatus, ...]]:
    found = ACTIONS.get(name)
    if found is None:
        raise DashboardError(404, "No such action", f"{name[:40]!r} is not an invoice action.")
    return found


@router.get("/invoices/{invoice_id}/{action}")
async def confirm_page(
    request: Request, invoice_id: str, action: str, ctx: Ctx, session: SessionDep
) -> Response:
    title, what, _allowed = _action(action)
    invoice = await _invoice_or_404(ctx, invoice_id)
    attempt = None
    if action.startswith("resolve-") and invoice.attempt_count:
        # the attempt the person decides about: the form sends its number back, so that
        # a newer attempt reaching REVIEW meanwhile is never settled by this page
        async with ctx.db.read() as conn:
            attempts = await ActionRepository(conn).attempts(invoice.id)
        attempt = next((a for a in attempts if a.number == invoice.attempt_count), None)
    return render(
        request,
        "confirm.html",
        {
            "session": session,
            "invoice": invoice,
            "amount": money(invoice.amount),
            "action": action,
            "title": title,
            "what": what,
            "max_note": MAX_NOTE,
            "attempt": attempt,
        },
    )


def _attempt_number(form: Any) -> int | None:
    """The resolve form's `attempt` (the confirm page always sends it); None when absent."""
    value = form.get("attempt")
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value.isascii()
        or not value.isdigit()
        or len(value) > 10
        or not 1 <= int(value) <= 2**31 - 1
    ):
        shown = value[:40] if isinstance(value, str) else "not text"
        raise DashboardError(
            400, "Bad attempt", f"{shown!r} is not an attempt number. Nothing was changed."
        )
    return int(value)


@router.post("/invoices/{invoice_id}/{action}")
async def do_action(
    request: Request, invoice_id: str, action: str, ctx: Ctx, session: SessionDep
) -> Response:
    form = await sessions.checked_form(request, session)
    _action(action)
    the_id = parse_id(invoice_id, "invoice")
    note = _note(form)
    who = session.token_name
    try:
        if action == "retry":
            await service.retry(ctx.db, ctx.clock, the_id, actor=who, note=note)
        elif action == "void":
            await service.void(ctx.db, ctx.clock, the_id, actor=who, note=note)
        else:
            charged = action == "resolve-charged"
            raw_charge = form.get("charge_id")
            charge_id = raw_charge.strip() if isinstance(raw_charge, str) and charged else None
            attempt = _attempt_number(form)
            try:
                body = ResolveBody(
                    charged=charged, chargeId=charge_id or None, note=note, attempt=attempt
                )
            except ValidationError as exc:
                raise DashboardError(400, "Bad charge id", _first_error(exc)) from None
            await service.resolve(
                ctx.db,
                ctx.clock,
                the_id,
                charged=body.charged,
                charge_id=body.chargeId,
                actor=who,
                note=body.note,
                attempt=body.attempt,
            )
    except InvoiceNotFoundError:
        raise DashboardError(404, "No such invoice", f"Invoice {the_id} does not exist.") from None
    except ActionRefusedError as exc:
        raise DashboardError(
            409,
            "Not allowed now",
            f"{ACTIONS[action][0]} is not possible: {exc}. Nothing was changed.",
            back=f"/invoices/{the_id}",
        ) from None
    return RedirectResponse(f"/invoices/{the_id}", status_code=303)


# -- webhooks ---------------------------------------------------------------------------


@router.get("/webhooks")
async def webhooks_page(request: Request, ctx: Ctx, session: SessionDep) -> Response:
    async with ctx.db.read() as conn:
        repo = DestinationRepository(conn)
        endpoints = await repo.page("webhook", after=0, limit=500)
        tries = {d.id: await repo.tries(d.id, after=0, limit=10) for d in endpoints}
    return render(
        request,
        "webhooks.html",
        {
            "session": session,
            "endpoints": endpoints,
            "tries": tries,
            "event_id": event_id,
        },
    )


@router.post("/webhooks/{webhook_id}/enable")
async def enable_webhook(
    request: Request, webhook_id: str, ctx: Ctx, session: SessionDep
) -> Response:
    await sessions.checked_form(request, session)
    the_id = parse_id(webhook_id, "webhook")
    async with ctx.db.write() as conn:
        found = await DestinationRepository(conn).enable(the_id, "webhook", ctx.clock.now())
    if found is None:
        raise DashboardError(404, "No such webhook", f"Webhook {the_id} does not exist.")
    return RedirectResponse("/webhooks", status_code=303)
