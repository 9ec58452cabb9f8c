"""The dashboard's plans, subscriptions and customers (issue 21).

Pages: plans (`?archived=`), subscriptions (`?status=&plan=&customer=`,
paginated), one subscription (its periods and their invoices, its pending change
or cancel, its actions), one customer (subscriptions, invoices, credit and its
entries).

An action (change, cancel, reactivate) runs the API's own work
(`api.routes.subscriptions.action_effect` with the API's decide functions), so
both act by one code. Its confirmation page runs that work in a transaction that
is rolled back, and names what it did: the subscription before and after, every
invoice and line it made, every credit entry. The form carries a digest of the
subscription's row (`version`) and of that outcome (`outcome`); the POST runs the
work again, in one transaction, and writes nothing (a 409 page) when the row
changed since the page was shown or the outcome is not the one confirmed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from antaeus.api.context import AppContext, Ctx
from antaeus.api.errors import ApiError
from antaeus.api.routes.subscriptions import (
    Decision,
    action_effect,
    cancel_decision,
    change_decision,
    reactivate_decision,
)
from antaeus.api.schemas import SubscriptionCancel, SubscriptionChange
from antaeus.billing.subscription_view import subscription_json, subscriptions_page
from antaeus.dashboard import sessions
from antaeus.dashboard.rendering import DashboardError, render
from antaeus.dashboard.routes import (
    PAGE_SIZE,
    SessionDep,
    _first_error,
    _optional_id,
    money,
    parse_id,
)
from antaeus.domain.invoice import Invoice
from antaeus.domain.money import Money
from antaeus.domain.subscription import SubscriptionStatus
from antaeus.storage.database import WriteConnection
from antaeus.storage.repositories.customers import CustomerRepository
from antaeus.storage.repositories.dashboard import (
    CreditEntryRow,
    LineRow,
    SubscriptionPagesRepository,
)
from antaeus.storage.repositories.plans import Plan, PlanRepository
from antaeus.storage.repositories.subscriptions import SubscriptionRepository

log = structlog.get_logger("antaeus.dashboard")

router = APIRouter(include_in_schema=False)

#: the actions on a subscription: (title, what it does in general)
ACTIONS: Final[dict[str, str]] = {
    "change": "Change the plan or quantity",
    "cancel": "Cancel",
    "reactivate": "Reactivate (take back the pending cancel)",
}
#: plans offered in a change's list (the same currency, not archived)
MAX_PLANS_OFFERED: Final = 500


# -- formatting -------------------------------------------------------------------------


def interval_words(plan: Plan) -> str:
    unit = plan.interval.value
    if plan.interval_count == 1:
        return f"every {unit}"
    return f"every {plan.interval_count} {unit}s"


def plan_words(plan: Plan | None, plan_id: int) -> str:
    if plan is None:
        return f"plan {plan_id}"
    return f"{plan.name} ({plan.code}, {money(plan.amount)} {interval_words(plan)})"


def _line_view(line: LineRow) -> dict[str, Any]:
    return {
        "id": line.id,
        "invoice_id": line.invoice_id,
        "kind": line.kind,
        "description": line.description,
        "amount": money(line.amount),
        "subscription_id": line.subscription_id,
        "plan_id": line.plan_id,
        "period": (
            f"{line.period_start} – {line.period_end}"
            if line.period_start and line.period_end
            else ""
        ),
        "quantity": line.quantity,
        "status": line.invoice_status,
        "due_at": line.due_at,
    }


def _entry_view(entry: CreditEntryRow) -> dict[str, Any]:
    sign = "+" if entry.amount.is_positive else ""
    return {
        "id": entry.id,
        "amount": f"{sign}{money(entry.amount)}",
        "balance": money(entry.balance),
        "reason": entry.reason,
        "subscription_id": entry.subscription_id,
        "invoice_id": entry.invoice_id,
        "change_id": entry.change_id,
        "note": entry.note,
        "actor": entry.actor,
        "created_at": entry.created_at,
    }


def _sub_view(shown: dict[str, Any], plans: Mapping[int, Plan]) -> dict[str, Any]:
    """A subscription as the API shows it, with its plans' names for the pages."""
    pending = shown["pendingChange"]
    return {
        **shown,
        "planText": plan_words(plans.get(shown["planId"]), shown["planId"]),
        "pendingText": None
        if pending is None
        else (
            f"from {pending['effectiveDate']}: "
            f"{plan_words(plans.get(pending['planId']), pending['planId'])} "
            f"× {pending['quantity']}"
        ),
    }


# -- parsing ----------------------------------------------------------------------------


def _subscription_status(value: str | None) -> SubscriptionStatus | None:
    if not value:
        return None
    try:
        return SubscriptionStatus(value)
    except ValueError:
        known = ", ".join(s.value for s in SubscriptionStatus)
        raise DashboardError(
            400, "Unknown status", f"{value[:40]!r} is not a status; one of {known}."
        ) from None


def _archived(value: str | None) -> bool | None:
    if not value:
        return None
    if value in ("true", "false"):
        return value == "true"
    raise DashboardError(400, "Bad filter", f"archived must be true or false; got {value[:40]!r}.")


def _before_date(value: str | None) -> date | None:
    if not value:
        return None
    try:
        if len(value) != 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise DashboardError(400, "Bad date", f"{value[:40]!r} is not a date.") from None


def _text(values: Mapping[str, Any], name: str) -> str:
    value = values.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DashboardError(400, f"Bad {name}", f"{name} must be text. Nothing was changed.")
    return value.strip()


def _small_int(values: Mapping[str, Any], name: str) -> int | None:
    value = _text(values, name)
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        raise DashboardError(
            400, f"Bad {name}", f"{value[:40]!r} is not a whole number. Nothing was changed."
        )
    return int(value)


@dataclass(frozen=True, slots=True)
class _Wanted:
    """An action as the person asked for it: what the API's decide function takes, and
    the form fields that say it again."""

    action: str
    decide: Decision
    fields: dict[str, str]
    words: str
    bill_first: bool = False  # as the API's route: a change or cancel `now` bills due periods


def _wanted(action: str, values: Mapping[str, Any], who: str) -> _Wanted:
    """The action's request from a query or a form, checked as the API checks its body."""
    if action not in ACTIONS:
        raise DashboardError(
            404, "No such action", f"{action[:40]!r} is not a subscription action."
        )
    try:
        if action == "change":
            change = SubscriptionChange(
                planId=_small_int(values, "plan"),
                quantity=_small_int(values, "quantity"),
                effective=_text(values, "effective") or "period_end",
            )
            fields: dict[str, str] = {"effective": change.effective}
            if change.planId is not None:
                fields["plan"] = str(change.planId)
            if change.quantity is not None:
                fields["quantity"] = str(change.quantity)
            when = "now" if change.effective == "now" else "at the end of the current period"
            return _Wanted(
                action,
                change_decision(change, who),
                fields,
                f"Change, effective {when}",
                bill_first=change.effective == "now",
            )
        if action == "cancel":
            prorate = _text(values, "prorate")
            if prorate not in ("", "true", "false"):
                raise DashboardError(
                    400, "Bad prorate", "prorate must be true or false. Nothing was changed."
                )
            cancel = SubscriptionCancel(
                at=_text(values, "at") or "period_end",
                prorate=prorate == "true",
            )
            fields = {"at": str(cancel.at), "prorate": "true" if cancel.prorate else "false"}
            when = "now (today)" if cancel.at == "now" else "at the end of the current period"
            credit = ", the unused days credited" if cancel.prorate else ""
            return _Wanted(
                action,
                cancel_decision(cancel, who),
                fields,
                f"Cancel {when}{credit}",
                bill_first=cancel.at == "now",
            )
    except ValidationError as exc:
        raise DashboardError(400, "Refused", f"{_first_error(exc)}. Nothing was changed.") from None
    return _Wanted(action, reactivate_decision(), {}, "Reactivate: take back the pending cancel")


# -- running an action: the preview (rolled back) and the real one ------------------------


@dataclass
class Outcome:
    """What an action did, as its confirmation names it."""

    before: dict[str, Any]
    after: dict[str, Any]
    sentences: list[str]
    invoices: list[dict[str, Any]] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    version: str = ""

    @property
    def digest(self) -> str:
        """What a confirmation promised: the sentences, lines and entries (no ids, no
        instants, which differ between the preview and the real thing)."""
        promised = {
            "sentences": self.sentences,
            "invoices": [
                {
                    "amount": i["amount"],
                    "status": i["status"],
                    "lines": [
                        [x["kind"], x["description"], x["amount"], x["period"]] for x in i["lines"]
                    ],
                }
                for i in self.invoices
            ],
            "entries": [[e["amount"], e["balance"], e["reason"]] for e in self.entries],
        }
        text = json.dumps(promised, sort_keys=True, ensure_ascii=True)
        return hashlib.sha256(text.encode("ascii")).hexdigest()[:32]


class _PreviewDoneError(Exception):
    """Raised inside the preview's transaction, so that it rolls back."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__("preview")
        self.outcome = outcome


def _stale(subscription_id: int, what: str) -> DashboardError:
    return DashboardError(
        409,
        "The subscription changed",
        f"Subscription {subscription_id} {what} since this confirmation was shown. Nothing "
        "was changed: look at it again and confirm what would happen now.",
        back=f"/subscriptions/{subscription_id}",
    )


def _sentences(
    before: dict[str, Any], after: dict[str, Any], plans: Mapping[int, Plan]
) -> list[str]:
    said: list[str] = []
    if before["status"] != after["status"]:
        said.append(f"Its status becomes {after['status']} (it is {before['status']}).")
    else:
        said.append(f"Its status stays {after['status']}.")
    if (before["planId"], before["quantity"]) != (after["planId"], after["quantity"]):
        said.append(
            f"From today it is billed for {plan_words(plans.get(after['planId']), after['planId'])}"
            f" × {after['quantity']} (instead of "
            f"{plan_words(plans.get(before['planId']), before['planId'])} × {before['quantity']})."
        )
    old, new = before["pendingChange"], after["pendingChange"]
    if old != new:
        if new is not None:
            said.append(
                f"From {new['effectiveDate']} on, every period is billed for "
                f"{plan_words(plans.get(new['planId']), new['planId'])} × {new['quantity']}"
                + (" (this replaces the change pending before)." if old else ".")
            )
        elif old is not None:
            said.append(
                f"The change pending for {old['effectiveDate']} "
                f"({plan_words(plans.get(old['planId']), old['planId'])} × {old['quantity']}) "
                "is cleared."
            )
    if before["cancelAt"] != after["cancelAt"]:
        if after["cancelAt"] is not None:
            said.append(f"It ends on {after['cancelAt']}: no period from that date on is billed.")
        else:
            said.append(
                f"The cancel pending for {before['cancelAt']} is taken back: it goes on "
                "billing every period."
            )
    if (before["currentPeriodStart"], before["currentPeriodEnd"]) != (
        after["currentPeriodStart"],
        after["currentPeriodEnd"],
    ):
        if after["currentPeriodStart"] is None:
            said.append("It has no current period any more.")
        else:
            said.append(
                f"Its current period becomes {after['currentPeriodStart']} – "
                f"{after['currentPeriodEnd']}."
            )
    return said


async def _run(
    ctx: AppContext,
    subscription_id: int,
    wanted: _Wanted,
    *,
    promised: tuple[str, str] | None,
) -> Outcome:
    """Run the action in one transaction: a preview (`promised` None) rolls back and
    answers what it did; the real one (`promised`: the version and outcome digest the
    person confirmed) commits only if both are still what was confirmed."""
    effect = action_effect(ctx, subscription_id, wanted.decide, bill_first=wanted.bill_first)
    back = f"/subscriptions/{subscription_id}"
    try:
        async with ctx.db.write() as conn:
            outcome = await _outcome(conn, ctx, subscription_id, effect, promised)
            if promised is None:
                raise _PreviewDoneError(outcome)
            if outcome.digest != promised[1]:
                raise _stale(subscription_id, "would now change otherwise than confirmed")
    except _PreviewDoneError as preview:
        return preview.outcome
    except ApiError as exc:
        raise DashboardError(
            exc.status_code,
            "Refused",
            f"{wanted.words} is not possible: {exc.message}. Nothing was changed.",
            back=back,
        ) from None
    return outcome


async def _outcome(
    conn: WriteConnection,
    ctx: AppContext,
    subscription_id: int,
    effect: Any,
    promised: tuple[str, str] | None,
) -> Outcome:
    subs = SubscriptionRepository(conn)
    pages = SubscriptionPagesRepository(conn)
    customer_id = await subs.customer_of(subscription_id)
    if customer_id is not None:  # the customer first, as the action and generation do
        await subs.hold_customer_for_update(customer_id)
    sub = await subs.get(subscription_id, lock=True)
    if sub is None or customer_id is None:
        raise DashboardError(
            404, "No such subscription", f"Subscription {subscription_id} does not exist."
        )
    version = await pages.subscription_version(subscription_id) or ""
    if promised is not None and version != promised[0]:
        raise _stale(subscription_id, "was changed")
    now = ctx.clock.now()
    plan_repo = PlanRepository(conn)
    before = subscription_json(sub, await plan_repo.many(sub.plan_ids()), now)
    invoice_mark, entry_mark = await pages.marks(customer_id)
    _status, after, _headers = await effect(conn)
    made = await pages.customer_invoices(
        customer_id, after=invoice_mark, limit=100, newest_first=False
    )
    lines = await pages.lines_of_invoices([i.id for i in made])
    entries = await pages.credit_entries(
        customer_id, after=entry_mark, limit=100, newest_first=False
    )
    ids = {before["planId"], after["planId"]}
    ids |= {s["pendingChange"]["planId"] for s in (before, after) if s["pendingChange"]}
    plans = await plan_repo.many(ids)
    sentences = _sentences(before, after, plans)
    if not made and not entries:
        sentences.append("No invoice is made and the customer's credit does not change.")
    return Outcome(
        before=_sub_view(before, plans),
        after=_sub_view(after, plans),
        sentences=sentences,
        invoices=[
            {
                "amount": money(i.amount),
                "status": i.status.value,
                "due_at": i.due_at,
                "lines": [_line_view(x) for x in lines if x.invoice_id == i.id],
            }
            for i in made
        ],
        entries=[_entry_view(e) for e in entries],
        version=version,
    )


# -- pages ------------------------------------------------------------------------------


@router.get("/plans")
async def plans_page(
    request: Request,
    ctx: Ctx,
    session: SessionDep,
    archived: str | None = None,
    after: str | None = None,
) -> Response:
    wanted = _archived(archived)
    start = _optional_id(after, "plan") or 0
    async with ctx.db.read() as conn:
        rows = await PlanRepository(conn).page(after=start, limit=PAGE_SIZE + 1, archived=wanted)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    query = {"archived": archived} if wanted is not None and archived else {}
    return render(
        request,
        "plans.html",
        {
            "session": session,
            "plans": [
                {"plan": p, "amount": money(p.amount), "every": interval_words(p)} for p in rows
            ],
            "archived": "" if wanted is None else str(wanted).lower(),
            "next_query": {**query, "after": str(rows[-1].id)} if more and rows else None,
        },
    )


@router.get("/subscriptions")
async def subscriptions_list(
    request: Request,
    ctx: Ctx,
    session: SessionDep,
    status: str | None = None,
    plan: str | None = None,
    customer: str | None = None,
    after: str | None = None,
) -> Response:
    wanted = _subscription_status(status)
    plan_id = _optional_id(plan, "plan")
    customer_id = _optional_id(customer, "customer")
    start = _optional_id(after, "subscription") or 0
    now = ctx.clock.now()
    async with ctx.db.read() as conn:
        rows, plans = await subscriptions_page(
            conn,
            now,
            after=start,
            limit=PAGE_SIZE + 1,
            customer_id=customer_id,
            plan_id=plan_id,
            status=wanted,
        )
        plan_row = await PlanRepository(conn).get(plan_id) if plan_id else None
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    query = {
        k: v
        for k, v in {
            "status": wanted.value if wanted else "",
            "plan": str(plan_id) if plan_id else "",
            "customer": str(customer_id) if customer_id else "",
        }.items()
        if v
    }
    return render(
        request,
        "subscriptions.html",
        {
            "session": session,
            "subscriptions": [_sub_view(subscription_json(r, plans, now), plans) for r in rows],
            "statuses": [s.value for s in SubscriptionStatus],
            "status": wanted.value if wanted else "",
            "plan": str(plan_id) if plan_id else "",
            "plan_text": plan_words(plan_row, plan_id) if plan_id else "",
            "customer": str(customer_id) if customer_id else "",
            "next_query": {**query, "after": str(rows[-1].id)} if more and rows else None,
        },
    )


@router.get("/subscriptions/{subscription_id}")
async def subscription_page(
    request: Request,
    subscription_id: str,
    ctx: Ctx,
    session: SessionDep,
    before: str | None = None,
) -> Response:
    the_id = parse_id(subscription_id, "subscription")
    older_than = _before_date(before)
    now = ctx.clock.now()
    async with ctx.db.read() as conn:
        sub = await SubscriptionRepository(conn).get(the_id)
        if sub is None:
            raise DashboardError(
                404, "No such subscription", f"Subscription {the_id} does not exist."
            )
        plan_repo = PlanRepository(conn)
        plans = await plan_repo.many(sub.plan_ids())
        pages = SubscriptionPagesRepository(conn)
        periods = await pages.periods(the_id, before=older_than, limit=PAGE_SIZE + 1)
        changes = await pages.change_lines(the_id, limit=PAGE_SIZE)
        entries = await pages.subscription_credit_entries(sub.customer_id, the_id, limit=PAGE_SIZE)
        offered = [
            p
            for p in await plan_repo.page(after=0, limit=MAX_PLANS_OFFERED, archived=False)
            if p.amount.currency is plans[sub.plan_id].amount.currency
        ]
    more = len(periods) > PAGE_SIZE
    periods = periods[:PAGE_SIZE]
    shown = _sub_view(subscription_json(sub, plans, now), plans)
    return render(
        request,
        "subscription.html",
        {
            "session": session,
            "sub": shown,
            "plan": plans[sub.plan_id],
            "timezone": sub.timezone,
            "periods": [_line_view(x) for x in periods],
            "older": periods[-1].period_start.isoformat()
            if more and periods and periods[-1].period_start
            else None,
            "offered": [(p.id, plan_words(p, p.id)) for p in offered],
            "changes": [_line_view(x) for x in changes],
            "entries": [_entry_view(e) for e in entries],
            "canceled": shown["status"] == SubscriptionStatus.CANCELED.value,
        },
    )


@router.get("/subscriptions/{subscription_id}/{action}")
async def subscription_confirm_page(
    request: Request, subscription_id: str, action: str, ctx: Ctx, session: SessionDep
) -> Response:
    the_id = parse_id(subscription_id, "subscription")
    wanted = _wanted(action, request.query_params, session.token_name)
    context: dict[str, Any] = {
        "session": session,
        "sub_id": the_id,
        "action": action,
        "title": ACTIONS[action],
        "words": wanted.words,
        "fields": wanted.fields,
        "outcome": None,
        "digest": "",
    }
    if session.can_write:  # a read session is shown no action, not even its preview
        outcome = await _run(ctx, the_id, wanted, promised=None)
        context |= {"outcome": outcome, "digest": outcome.digest}
    return render(request, "subscription_confirm.html", context)


@router.post("/subscriptions/{subscription_id}/{action}")
async def subscription_action(
    request: Request, subscription_id: str, action: str, ctx: Ctx, session: SessionDep
) -> Response:
    form = await sessions.checked_form(request, session)
    the_id = parse_id(subscription_id, "subscription")
    wanted = _wanted(action, form, session.token_name)
    version, digest = _text(form, "version"), _text(form, "outcome")
    if not version or not digest:
        raise DashboardError(
            400,
            "Confirm from its page",
            "This form lacks what its confirmation showed (version, outcome). Nothing was changed.",
            back=f"/subscriptions/{the_id}",
        )
    await _run(ctx, the_id, wanted, promised=(version, digest))
    log.info(
        "subscription_action_from_dashboard",
        subscription_id=the_id,
        action=action,
        actor=session.token_name,
        **wanted.fields,
    )
    return RedirectResponse(f"/subscriptions/{the_id}", status_code=303)


@router.get("/customers/{customer_id}")
async def customer_page(
    request: Request, customer_id: str, ctx: Ctx, session: SessionDep
) -> Response:
    the_id = parse_id(customer_id, "customer")
    now = ctx.clock.now()
    async with ctx.db.read() as conn:
        customer = await CustomerRepository(conn).get(the_id)
        if customer is None:
            raise DashboardError(404, "No such customer", f"Customer {the_id} does not exist.")
        pages = SubscriptionPagesRepository(conn)
        credit = await pages.credit_minor(the_id) or 0
        rows, plans = await subscriptions_page(
            conn, now, after=0, limit=PAGE_SIZE + 1, customer_id=the_id
        )
        invoices: list[Invoice] = await pages.customer_invoices(the_id, limit=PAGE_SIZE + 1)
        entries = await pages.credit_entries(the_id, limit=PAGE_SIZE + 1)
    return render(
        request,
        "customer.html",
        {
            "session": session,
            "customer": customer,
            "credit": money(Money.from_minor(credit, customer.currency)),
            "subscriptions": [
                _sub_view(subscription_json(r, plans, now), plans) for r in rows[:PAGE_SIZE]
            ],
            "more_subscriptions": len(rows) > PAGE_SIZE,
            "invoices": [{"invoice": i, "amount": money(i.amount)} for i in invoices[:PAGE_SIZE]],
            "more_invoices": len(invoices) > PAGE_SIZE,
            "entries": [_entry_view(e) for e in entries[:PAGE_SIZE]],
            "more_entries": len(entries) > PAGE_SIZE,
        },
    )
