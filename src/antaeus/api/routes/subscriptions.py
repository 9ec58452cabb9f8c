"""Subscriptions (issue 21): create, list, read, change (`period_end`), cancel, reactivate.

Status and the current period are worked out from the customer's local date when
read (the injected clock), by the pure rules of domain/subscription.py. A change
or cancel `now` first invoices the customer's periods already due (as the
generator would have), then moves money in the same transaction: a change's
`credit` and `proration` lines on an invoice due now (`InvoiceWriter`), or its
non-positive net, and a prorated cancel's unused days, to the customer's credit
(storage/repositories/credit.py). Lock order: the customer, then the
subscription, as generation takes them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Protocol

import structlog
from fastapi import APIRouter, Path, Query, Request, Response

from antaeus.api.auth import AuthenticatedRoute, Principal
from antaeus.api.context import AppContext, Ctx
from antaeus.api.errors import (
    ApiError,
    CurrencyMismatchError,
    CustomerNotFoundError,
    FieldInvalidError,
    InvalidStateError,
    PlanNotFoundError,
    not_found,
)
from antaeus.api.idempotency import Effect, IdempotencyKey, run_idempotent
from antaeus.api.jsonio import JSONResponse
from antaeus.api.pagination import Page, paginate
from antaeus.api.schemas import (
    ERROR_RESPONSES,
    MAX_ID,
    DigitsInt,
    SubscriptionCancel,
    SubscriptionChange,
    SubscriptionCreate,
    SubscriptionRead,
)
from antaeus.billing.generation import InvoiceWriter, generate_for_customer
from antaeus.billing.subscription_view import subscription_json, subscriptions_page
from antaeus.domain.events import EventType, SubscriptionEvent, row
from antaeus.domain.money import Currency, Money
from antaeus.domain.periods import (
    BillingAnchor,
    PeriodRuleError,
    check_anchor,
    check_start_date,
    check_trial_days,
    first_instant,
    local_date,
    trial_end_date,
)
from antaeus.domain.subscription import (
    PendingChange,
    SubscriptionStatus,
    SubscriptionTerms,
    cancel_now_credit,
    change_now_lines,
    change_now_outcome,
    current_period,
    next_due_at,
    status_on,
    trial_will_end_date,
)
from antaeus.storage.database import Conn, WriteConnection
from antaeus.storage.repositories.billing import BillingRepository
from antaeus.storage.repositories.credit import ChangeKind, CreditReason, CreditRepository
from antaeus.storage.repositories.customers import CustomerRepository
from antaeus.storage.repositories.generation import GenerationRepository
from antaeus.storage.repositories.plans import Plan, PlanRepository
from antaeus.storage.repositories.subscriptions import (
    SubscriptionRepository,
    SubscriptionRow,
)

log = structlog.get_logger("antaeus.api")

router = APIRouter(
    prefix="/rest/v1/subscriptions", tags=["subscriptions"], route_class=AuthenticatedRoute
)

SubscriptionId = Annotated[DigitsInt, Path(ge=1, le=MAX_ID, description="subscription id")]


def _refused(exc: PeriodRuleError, field: str | None = None) -> ApiError:
    name = field or exc.field
    return FieldInvalidError(f"{name}: {exc}", field=name)


def _check_quantity(plan: Plan, quantity: int) -> None:
    """The amount of one period (plan amount x quantity) within the currency's maximum."""
    currency: Currency = plan.amount.currency
    if plan.amount.value * quantity > currency.max_amount:
        raise FieldInvalidError(
            f"quantity: {quantity} x {plan.amount.value} {currency.code} passes the largest "
            f"amount of {currency.code} ({currency.max_amount})",
            field="quantity",
        )


async def _plan_for(conn: WriteConnection, plan_id: int, currency: Currency) -> Plan:
    """The plan a subscription or a change takes: it exists, is not archived (409), and is
    in the customer's currency (422 `currency_mismatch`, field `planId`)."""
    plan = await PlanRepository(conn).get(plan_id, lock=True)
    if plan is None:
        raise PlanNotFoundError(f"plan {plan_id} does not exist", field="planId")
    if plan.archived_at is not None:
        raise InvalidStateError(f"plan {plan_id} is archived: no new subscription or change to it")
    if plan.amount.currency is not currency:
        raise CurrencyMismatchError(
            f"plan {plan_id} is priced in {plan.amount.currency.code}; the customer is "
            f"billed in {currency.code}",
            field="planId",
        )
    return plan


async def _shown(conn: Conn, subscription_id: int, now: datetime) -> dict[str, Any]:
    sub = await SubscriptionRepository(conn).get(subscription_id)
    assert sub is not None
    plans = await PlanRepository(conn).many(sub.plan_ids())
    return subscription_json(sub, plans, now)


async def _event(
    conn: WriteConnection, kind: EventType, shown: dict[str, Any], now: datetime
) -> None:
    """The event, written to the outbox in the request's transaction."""
    await BillingRepository(conn).add_events([row(SubscriptionEvent(kind, shown))], now)


# -- reading ---------------------------------------------------------------------------


@router.get(
    "",
    summary="List subscriptions by ascending id",
    description="Filters: `customerId`, `planId`, `status` (as worked out on each "
    "customer's local date now).",
    response_model=list[SubscriptionRead],
    responses=ERROR_RESPONSES,
)
async def list_subscriptions(
    request: Request,
    ctx: Ctx,
    _who: Principal,
    page: Page,
    customer_id: Annotated[
        DigitsInt | None,
        Query(alias="customerId", ge=1, le=MAX_ID, description="only this customer's"),
    ] = None,
    plan_id: Annotated[
        DigitsInt | None, Query(alias="planId", ge=1, le=MAX_ID, description="only on this plan")
    ] = None,
    status: Annotated[SubscriptionStatus | None, Query(description="only this status")] = None,
) -> JSONResponse:
    now = ctx.clock.now()
    async with ctx.db.read() as conn:
        rows, plans = await subscriptions_page(
            conn,
            now,
            after=page.after,
            limit=page.limit + 1,
            customer_id=customer_id,
            plan_id=plan_id,
            status=status,
        )
    items, headers = paginate(request, rows, page)
    return JSONResponse([subscription_json(r, plans, now) for r in items], headers=headers)


@router.get(
    "/{id}",
    summary="One subscription",
    description="Its status and current period as worked out on the customer's local "
    "date now, and any pending change or cancel.",
    response_model=SubscriptionRead,
    responses=ERROR_RESPONSES,
)
async def get_subscription(id: SubscriptionId, ctx: Ctx, _who: Principal) -> JSONResponse:
    async with ctx.db.read() as conn:
        sub = await SubscriptionRepository(conn).get(id)
        plans = await PlanRepository(conn).many(sub.plan_ids()) if sub else {}
    if sub is None:
        raise not_found("subscription", id)
    return JSONResponse(subscription_json(sub, plans, ctx.clock.now()))


# -- writing ---------------------------------------------------------------------------


@router.post(
    "",
    status_code=201,
    summary="Create a subscription",
    description="Only `customerId` and `planId` are required. `quantity` 1-1,000,000 "
    "(default 1; the plan's amount times it within the currency's maximum); `startDate` a "
    "date in the customer's time zone (default: today there; at most 366 days and 24 "
    "periods back, at most 5 years ahead); `billingAnchor` (default: `calendar` when the "
    "plan's interval has a calendar, else `anniversary`); `trialDays` (default: the "
    "plan's). The plan must be in the customer's currency (422 `currency_mismatch`, field "
    "`planId`) and not archived (409 `invalid_state`). Invoice generation is not built "
    "yet: a subscription bills nothing yet.",
    response_model=SubscriptionRead,
    responses=ERROR_RESPONSES,
)
async def create_subscription(
    body: SubscriptionCreate, ctx: Ctx, _who: Principal, idempotency_key: IdempotencyKey = None
) -> Response:
    async def effect(conn: WriteConnection) -> tuple[int, Any, dict[str, str]]:
        repo = SubscriptionRepository(conn)
        await repo.hold_customer_for_update(body.customerId)  # as generation takes it
        customer = await CustomerRepository(conn).get(body.customerId)
        if customer is None:
            raise CustomerNotFoundError(
                f"customer {body.customerId} does not exist", field="customerId"
            )
        plan = await _plan_for(conn, body.planId, customer.currency)
        _check_quantity(plan, body.quantity)
        now = ctx.clock.now()
        today = local_date(now, customer.timezone)
        try:
            anchor = check_anchor(body.billingAnchor, plan.interval, plan.interval_count)
            trial_days = check_trial_days(
                plan.trial_days if body.trialDays is None else body.trialDays
            )
            start = body.startDate or today
            check_start_date(start, today, plan.interval, plan.interval_count, anchor, trial_days)
        except PeriodRuleError as exc:
            raise _refused(exc) from None
        trial_end = trial_end_date(start, trial_days)
        terms = SubscriptionTerms(
            id=0,
            plan=plan.terms,
            quantity=body.quantity,
            billing_anchor=anchor,
            start_date=start,
            trial_end_date=trial_end,
        )
        # `subscription.trial_will_end` is due at the first instant of trialEndDate - 3
        # days; if that is past already, it is told now (once), unless the trial ended
        notice_on = trial_will_end_date(terms)
        tell_now = False
        if notice_on is not None and first_instant(notice_on, customer.timezone) <= now:
            assert trial_end is not None
            tell_now = first_instant(trial_end, customer.timezone) > now
            notice_on = None
        new_id = await repo.create(
            customer_id=customer.id,
            plan_id=plan.id,
            quantity=body.quantity,
            billing_anchor=anchor,
            start_date=start,
            trial_end_date=trial_end,
            next_due_at=next_due_at(terms, customer.timezone),
            now=now,
            trial_notice_on=notice_on,
        )
        shown = await _shown(conn, new_id, now)
        await _event(conn, EventType.SUBSCRIPTION_CREATED, shown, now)
        if tell_now:
            await _event(conn, EventType.SUBSCRIPTION_TRIAL_WILL_END, shown, now)
        return 201, shown, {"Location": f"/rest/v1/subscriptions/{new_id}"}

    return await run_idempotent(
        ctx, "POST /rest/v1/subscriptions", idempotency_key, body.model_dump(mode="json"), effect
    )


class Decision(Protocol):
    """What an action sets on a locked subscription, and the event it writes."""

    async def __call__(
        self,
        conn: WriteConnection,
        sub: SubscriptionRow,
        plans: dict[int, Plan],
        terms: SubscriptionTerms,
        today: date,
        now: datetime,
    ) -> tuple[dict[str, Any], EventType]: ...


def action_effect(
    ctx: AppContext, subscription_id: int, decide: Decision, *, bill_first: bool = False
) -> Effect:
    """An action on one subscription, locked, as one transaction's work: what the API's
    `_act` runs at most once per Idempotency-Key, and what the dashboard's confirmation
    runs (and its preview, rolled back), so that both act by the same code.

    `decide(conn, sub, plans, terms, today, now)` answers the columns to set and the
    event type; a canceled subscription never changes again (409). `bill_first`: the
    customer's periods due by now are invoiced first (`generate_for_customer`), as the
    generator would have, so that what a change or cancel `now` credits was billed.
    """

    async def effect(conn: WriteConnection) -> tuple[int, Any, dict[str, str]]:
        repo = SubscriptionRepository(conn)
        now = ctx.clock.now()
        customer_id = await repo.customer_of(subscription_id)
        if customer_id is not None:  # the customer first, as generation takes them
            await repo.hold_customer_for_update(customer_id)
            if bill_first:
                await generate_for_customer(conn, now, customer_id)
        sub = await repo.get(subscription_id, lock=True)
        if sub is None:
            raise not_found("subscription", subscription_id)
        today = local_date(now, sub.timezone)
        plans = await PlanRepository(conn).many(sub.plan_ids())
        terms = sub.terms(plans)
        if status_on(terms, today) is SubscriptionStatus.CANCELED:
            raise InvalidStateError(
                f"subscription {subscription_id} is canceled: it never changes again",
                status=SubscriptionStatus.CANCELED.value,
            )
        values, kind = await decide(conn, sub, plans, terms, today, now)
        await repo.set(subscription_id, values, now)
        shown = await _shown(conn, subscription_id, now)
        await _event(conn, kind, shown, now)
        return 200, shown, {}

    return effect


async def _act(
    ctx: AppContext,
    subscription_id: int,
    action: str,
    key: str | None,
    normalized: Any,
    decide: Decision,
    *,
    bill_first: bool = False,
) -> Response:
    """Run an action on one subscription at most once per Idempotency-Key."""
    effect = action_effect(ctx, subscription_id, decide, bill_first=bill_first)
    return await run_idempotent(
        ctx, f"POST /rest/v1/subscriptions/{subscription_id}/{action}", key, normalized, effect
    )


async def _change_now(
    conn: WriteConnection,
    sub: SubscriptionRow,
    terms: SubscriptionTerms,
    plan: Plan,
    quantity: int,
    today: date,
    now: datetime,
    actor: str,
) -> None:
    """The money of a change `now` once billing has started: the change's row, then an
    invoice of its `credit` and `proration` lines due now (net positive; the customer's
    credit used first) or the net added to the customer's credit (one entry)."""
    credit_repo = CreditRepository(conn)
    currency = plan.amount.currency
    credit_minor = await credit_repo.balance(sub.customer_id)
    assert credit_minor is not None  # the subscription's customer, held
    outcome = change_now_outcome(
        terms,
        plan.terms,
        quantity,
        now=now,
        timezone=sub.timezone,
        credit=Money.from_minor(credit_minor, currency),
    )
    _, old_plan, old_quantity = terms.terms_on(today)
    change_id = await credit_repo.record_change(
        subscription_id=sub.id,
        kind=ChangeKind.CHANGE,
        from_plan_id=old_plan.id,
        from_quantity=old_quantity,
        to_plan_id=plan.id,
        to_quantity=quantity,
        effective_date=today,
        actor=actor,
        now=now,
    )
    if outcome.invoice is not None:
        writer = InvoiceWriter(GenerationRepository(conn), now, actor=actor)
        await writer.reserve([outcome.invoice])
        balance = writer.add(sub.customer_id, [outcome.invoice], credit_minor, change_id=change_id)
        if balance != credit_minor:
            writer.balances[sub.customer_id] = balance
        await writer.write()
        log.info(
            "subscription_change_invoiced",
            subscription_id=sub.id,
            change_id=change_id,
            invoice_id=writer.invoice_ids[0],
            amount=str(outcome.invoice.amount),
        )
    elif outcome.credit_added.is_positive:
        await credit_repo.add(
            customer_id=sub.customer_id,
            currency=currency,
            amount_minor=outcome.credit_added.minor,
            balance_before=credit_minor,
            reason=CreditReason.CHANGE,
            actor=actor,
            now=now,
            subscription_id=sub.id,
            change_id=change_id,
        )


async def _cancel_now(
    conn: WriteConnection,
    sub: SubscriptionRow,
    terms: SubscriptionTerms,
    today: date,
    now: datetime,
    actor: str,
    *,
    prorate: bool,
) -> None:
    """A cancel `now` of an active subscription: the change's row (kind `cancel`), and
    with `prorate` the unused days, today through the period's end, to the customer's
    credit (reason `cancel`)."""
    credit_repo = CreditRepository(conn)
    _, plan, quantity = terms.terms_on(today)
    change_id = await credit_repo.record_change(
        subscription_id=sub.id,
        kind=ChangeKind.CANCEL,
        from_plan_id=plan.id,
        from_quantity=quantity,
        to_plan_id=None,
        to_quantity=None,
        effective_date=today,
        actor=actor,
        now=now,
    )
    line = cancel_now_credit(terms, today) if prorate else None
    if line is None or not (-line.amount).is_positive:
        return
    credit_minor = await credit_repo.balance(sub.customer_id)
    assert credit_minor is not None  # the subscription's customer, held
    await credit_repo.add(
        customer_id=sub.customer_id,
        currency=line.amount.currency,
        amount_minor=(-line.amount).minor,
        balance_before=credit_minor,
        reason=CreditReason.CANCEL,
        actor=actor,
        now=now,
        subscription_id=sub.id,
        change_id=change_id,
    )


def _due_after(terms: SubscriptionTerms, timezone: str) -> dict[str, Any]:
    return {"next_due_at": next_due_at(terms, timezone)}


@router.post(
    "/{id}/change",
    summary="Change a subscription's plan or quantity",
    description="`planId` and `quantity` each optional, one required; the new plan in the "
    "customer's currency, not archived. `effective: period_end` (the default) shows the "
    "change as `pendingChange`: the next period is billed with it (a new change replaces a "
    "pending one; a change back to the current plan and quantity takes it back). "
    "`effective: now` applies at once (the pending change cleared): before billing starts "
    "(scheduled, trialing) nothing is prorated; after, today through the period's end is: "
    "a `credit` line at the old price and quantity (negative) and a `proration` line at "
    "the new ones. A positive net is an invoice of both lines due now (the customer's "
    "credit used first: a `balance` line), which the next run charges; a net of zero or "
    "less goes to the customer's credit as one entry (reason `change`). A plan of another "
    "interval changes only at `period_end` (422, field `effective`).",
    response_model=SubscriptionRead,
    responses=ERROR_RESPONSES,
)
async def change_subscription(
    id: SubscriptionId,
    body: SubscriptionChange,
    ctx: Ctx,
    who: Principal,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    return await _act(
        ctx,
        id,
        "change",
        idempotency_key,
        body.model_dump(mode="json"),
        change_decision(body, who),
        bill_first=body.effective == "now",
    )


def change_decision(body: SubscriptionChange, who: str) -> Decision:
    """What a change sets (the API's route and the dashboard's confirmation); `who`: the
    actor its money is recorded under."""

    async def decide(
        conn: WriteConnection,
        sub: SubscriptionRow,
        plans: dict[int, Plan],
        terms: SubscriptionTerms,
        today: date,
        now: datetime,
    ) -> tuple[dict[str, Any], EventType]:
        current = plans[sub.plan_id]
        plan = current
        if body.planId is not None and body.planId != current.id:
            plan = await _plan_for(conn, body.planId, current.amount.currency)
            if sub.billing_anchor is BillingAnchor.CALENDAR:
                try:
                    check_anchor(sub.billing_anchor, plan.interval, plan.interval_count)
                except PeriodRuleError as exc:
                    raise _refused(exc, "planId") from None
        quantity = sub.quantity if body.quantity is None else body.quantity
        _check_quantity(plan, quantity)
        now_lines = None
        if body.effective == "now":
            try:
                now_lines = change_now_lines(terms, plan.terms, quantity, today)
            except PeriodRuleError as exc:  # another interval: only at period_end
                raise _refused(exc) from None
        change = terms.pending_change
        if change is not None and change.effective_date <= today:
            raise InvalidStateError(
                f"subscription {sub.id}'s pending change took effect on "
                f"{change.effective_date} and is not billed yet; it cannot be replaced "
                "before its period is invoiced"
            )
        if sub.cancel_at is not None:
            raise InvalidStateError(
                f"subscription {sub.id} ends on {sub.cancel_at} (a cancel is pending): "
                "reactivate it first"
            )
        if now_lines is not None:
            # At once. Before billing starts (scheduled, trialing) nothing was billed and
            # nothing is prorated; after, the rest of the period is (`_change_now`).
            if now_lines and (plan.id, quantity) != (current.id, sub.quantity):
                await _change_now(conn, sub, terms, plan, quantity, today, now, who)
            return {
                "plan_id": plan.id,
                "quantity": quantity,
                "pending_plan_id": None,
                "pending_quantity": None,
                "pending_effective_date": None,
                **_due_after(
                    SubscriptionTerms(
                        **{
                            **_fields(terms),
                            "plan": plan.terms,
                            "quantity": quantity,
                            "pending_change": None,
                        }
                    ),
                    sub.timezone,
                ),
            }, EventType.SUBSCRIPTION_UPDATED
        if plan.id == current.id and quantity == sub.quantity:
            pending = None  # back to the current terms: nothing pending
        else:
            period = current_period(terms, today)
            effective = terms.billing_start if period is None else period.end
            pending = PendingChange(plan.terms, quantity, effective)
        changed = SubscriptionTerms(
            **{**_fields(terms), "pending_change": pending},
        )
        return {
            "pending_plan_id": pending.plan.id if pending else None,
            "pending_quantity": pending.quantity if pending else None,
            "pending_effective_date": pending.effective_date if pending else None,
            **_due_after(changed, sub.timezone),
        }, EventType.SUBSCRIPTION_UPDATED

    return decide


def _fields(terms: SubscriptionTerms) -> dict[str, Any]:
    return {name: getattr(terms, name) for name in SubscriptionTerms.__dataclass_fields__}


@router.post(
    "/{id}/cancel",
    summary="Cancel a subscription",
    description="`at: period_end` (the default) sets `cancelAt` to the current period's "
    "end (a trialing subscription: its `trialEndDate`; a scheduled one is canceled at "
    "once); `at: now` cancels today. Either clears a pending change. `prorate: true` (only "
    "with `at: now`) gives the unused days of the current period, today through its end at "
    "the current price, to the customer's credit (one entry, reason `cancel`); nothing "
    "before billing starts. A canceled subscription never changes again (409).",
    response_model=SubscriptionRead,
    responses=ERROR_RESPONSES,
)
async def cancel_subscription(
    id: SubscriptionId,
    ctx: Ctx,
    who: Principal,
    body: SubscriptionCancel | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    wanted = body or SubscriptionCancel()
    return await _act(
        ctx,
        id,
        "cancel",
        idempotency_key,
        wanted.model_dump(mode="json"),
        cancel_decision(wanted, who),
        bill_first=wanted.at == "now",
    )


def cancel_decision(wanted: SubscriptionCancel, who: str) -> Decision:
    """What a cancel sets (the API's route and the dashboard's confirmation); `who`: the
    actor its money is recorded under."""

    async def decide(
        conn: WriteConnection,
        sub: SubscriptionRow,
        plans: dict[int, Plan],
        terms: SubscriptionTerms,
        today: date,
        now: datetime,
    ) -> tuple[dict[str, Any], EventType]:
        status = status_on(terms, today)
        if wanted.prorate and wanted.at != "now":
            raise FieldInvalidError(
                "prorate: only a cancel at now is prorated",
                field="prorate",
            )
        if wanted.at == "now" or status is SubscriptionStatus.SCHEDULED:
            cancel_at = today
        elif status is SubscriptionStatus.TRIALING:
            cancel_at = terms.billing_start
        else:
            period = current_period(terms, today)
            assert period is not None  # active
            cancel_at = period.end
        if wanted.at == "now" and status is SubscriptionStatus.ACTIVE:
            await _cancel_now(conn, sub, terms, today, now, who, prorate=wanted.prorate)
        pending = terms.pending_change
        if pending is not None and pending.effective_date > today:
            pending = None  # a cancel clears a pending change (one not in effect yet)
        changed = SubscriptionTerms(
            **{**_fields(terms), "cancel_at": cancel_at, "pending_change": pending}
        )
        kind = (
            EventType.SUBSCRIPTION_CANCELED
            if status_on(changed, today) is SubscriptionStatus.CANCELED
            else EventType.SUBSCRIPTION_UPDATED
        )
        return {
            "cancel_at": cancel_at,
            "canceled_at": now,
            # `subscription.canceled` is told now, or at the first instant of cancel_at
            "cancel_notice_on": None if kind is EventType.SUBSCRIPTION_CANCELED else cancel_at,
            "pending_plan_id": pending.plan.id if pending else None,
            "pending_quantity": pending.quantity if pending else None,
            "pending_effective_date": pending.effective_date if pending else None,
            **_due_after(changed, sub.timezone),
        }, kind

    return decide


@router.post(
    "/{id}/reactivate",
    summary="Take back a pending cancel",
    description="409 `invalid_state` when no cancel is pending; a canceled subscription "
    "never changes again. A pending change cleared by the cancel does not come back.",
    response_model=SubscriptionRead,
    responses=ERROR_RESPONSES,
)
async def reactivate_subscription(
    id: SubscriptionId, ctx: Ctx, _who: Principal, idempotency_key: IdempotencyKey = None
) -> Response:
    return await _act(ctx, id, "reactivate", idempotency_key, {}, reactivate_decision())


def reactivate_decision() -> Decision:
    """What a reactivate sets (the API's route and the dashboard's confirmation)."""

    async def decide(
        conn: WriteConnection,
        sub: SubscriptionRow,
        plans: dict[int, Plan],
        terms: SubscriptionTerms,
        today: date,
        now: datetime,
    ) -> tuple[dict[str, Any], EventType]:
        if sub.cancel_at is None:
            raise InvalidStateError(f"subscription {sub.id} has no pending cancel")
        changed = SubscriptionTerms(**{**_fields(terms), "cancel_at": None})
        return {
            "cancel_at": None,
            "canceled_at": None,
            "cancel_notice_on": None,
            **_due_after(changed, sub.timezone),
        }, EventType.SUBSCRIPTION_UPDATED

    return decide
