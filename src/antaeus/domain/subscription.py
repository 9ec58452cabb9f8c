"""Subscriptions as pure terms, and the one function that builds their invoices' lines.

Nothing here reads a clock or a database: a subscription is a `SubscriptionTerms`
value (what its row holds), "now" is an argument, and the result is plain data.
The preview (`upcoming_invoice`) and the generator (`due_invoices`) both call
`_invoices`, so that an invoice previewed is, line for line, the invoice
generated later if nothing changes in between.

The rules (issue 21), as built here:

- Billing starts at `start_date`, or at `trial_end_date` with a trial. No
  period is billed during a trial.
- The periods of the current plan are those of `Schedule(plan interval,
  billing_anchor, origin=periods_from)`; `periods_from` is the billing start,
  or the date an interval change took effect.
- Each period is billed in advance: it is due at the first instant of its
  start date in the customer's zone. A period is billed if it starts before
  `cancel_at` (nothing from `cancel_at` on).
- A pending change applies to every period starting on or after its
  `effective_date`: the new plan and quantity, and, if the interval changes,
  the new plan's periods counted from `effective_date` by the subscription's
  anchoring rule. `effective_date` is a period boundary (a `period_end`
  change); anything else is refused with `ValueError`.
- A period shorter than the whole interval period it is part of (the first
  calendar period, a first period after an interval change) costs
  `amount x quantity x days / days of the whole period`, rounded on its own.
- Lines of all subscriptions whose periods start on the same local date go on
  one invoice (consolidated), in subscription id order; if their sum would
  pass the currency's maximum, one invoice per subscription instead. Invoices
  come oldest first; the customer's credit is used by each in turn, as much
  as its total allows (one `balance` line), never below zero.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum

from antaeus.domain.money import Currency, CurrencyMismatchError, Money
from antaeus.domain.periods import (
    BillingAnchor,
    Interval,
    Period,
    PeriodRuleError,
    Schedule,
    first_instant,
    local_date,
)
from antaeus.domain.proration import prorate

#: Days before `trialEndDate` at whose first instant `subscription.trial_will_end` is due.
TRIAL_WILL_END_DAYS = 3


class SubscriptionStatus(StrEnum):
    SCHEDULED = "scheduled"
    TRIALING = "trialing"
    ACTIVE = "active"
    CANCELED = "canceled"


class LineKind(StrEnum):
    """An invoice line's kind; an open set (taxes, coupons, usage will add kinds)."""

    SUBSCRIPTION = "subscription"  # one billing period of one subscription, once ever
    PRORATION = "proration"  # a change `now`: the rest of the period at the new price
    CREDIT = "credit"  # unused days given back (negative)
    BALANCE = "balance"  # the customer's credit used (negative), no subscription or period
    MANUAL = "manual"  # the one line of an invoice made with POST /rest/v1/invoices


@dataclass(frozen=True, slots=True)
class PlanTerms:
    """What billing needs of a plan: its price for one unit and one period, and its interval."""

    id: int
    name: str
    amount: Money
    interval: Interval
    interval_count: int = 1

    @property
    def currency(self) -> Currency:
        return self.amount.currency

    def same_interval(self, other: PlanTerms) -> bool:
        return (self.interval, self.interval_count) == (other.interval, other.interval_count)


@dataclass(frozen=True, slots=True)
class PendingChange:
    """A `period_end` change: `plan` and `quantity` for periods from `effective_date` on."""

    plan: PlanTerms
    quantity: int
    effective_date: date


@dataclass(frozen=True, slots=True)
class SubscriptionTerms:
    """A subscription as its row holds it (every date local to the customer).

    `periods_from`: where the current plan's periods are counted from (None: the
    billing start). `next_period_start`: the start of the first period not yet
    billed (None: nothing billed yet, the first period is next).
    """

    id: int
    plan: PlanTerms
    quantity: int
    billing_anchor: BillingAnchor
    start_date: date
    trial_end_date: date | None = None
    cancel_at: date | None = None
    pending_change: PendingChange | None = None
    periods_from: date | None = None
    next_period_start: date | None = None

    @property
    def billing_start(self) -> date:
        """The first billed date: `trial_end_date` with a trial, else `start_date`."""
        return self.trial_end_date or self.start_date

    @property
    def schedule(self) -> Schedule:
        """The current plan's periods (before any pending change)."""
        origin = self.periods_from or self.billing_start
        plan = self.plan
        return Schedule(plan.interval, plan.interval_count, self.billing_anchor, origin)

    def terms_on(self, day: date) -> tuple[Schedule, PlanTerms, int]:
        """The schedule, plan and quantity that bill a period starting on `day`."""
        change = self.pending_change
        if change is None or day < change.effective_date:
            return self.schedule, self.plan, self.quantity
        if change.plan.same_interval(self.plan):
            schedule = self.schedule
        else:
            schedule = Schedule(
                change.plan.interval,
                change.plan.interval_count,
                self.billing_anchor,
                change.effective_date,
            )
        return schedule, change.plan, change.quantity


@dataclass(frozen=True, slots=True)
class BillingPeriod:
    """One period of one subscription, with the plan and quantity that bill it."""

    subscription_id: int
    period: Period
    whole: Period  # the full interval period containing it, which proration divides by
    plan: PlanTerms
    quantity: int

    @property
    def prorated(self) -> bool:
        return self.period != self.whole

    @property
    def amount(self) -> Money:
        """`amount x quantity`, prorated by days when the period is shorter than a whole one."""
        return prorate(self.plan.amount, self.quantity, self.period.days, self.whole.days)


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    """One line of an invoice (`kind` is a `LineKind` value; the set is open)."""

    kind: str
    description: str
    amount: Money
    subscription_id: int | None = None
    plan_id: int | None = None
    period_start: date | None = None
    period_end: date | None = None
    quantity: int | None = None


@dataclass(frozen=True, slots=True)
class DraftInvoice:
    """An invoice to create: due at the first instant of `period_start` in the customer's zone."""

    currency: Currency
    period_start: date
    due_at: datetime
    lines: tuple[InvoiceLine, ...]

    @property
    def amount(self) -> Money:
        """The sum of the (each already rounded) lines, never rounded again."""
        total = Money.zero(self.currency)
        for line in self.lines:
            total = total + line.amount
        return total


@dataclass(frozen=True, slots=True)
class GeneratedInvoices:
    invoices: tuple[DraftInvoice, ...]
    credit_left: Money | None  # the customer's credit after these invoices used theirs
    billed: tuple[BillingPeriod, ...] = field(default=())  # every period billed, in order


# --- periods --------------------------------------------------------------------------


def billing_periods(subscription: SubscriptionTerms) -> Iterator[BillingPeriod]:
    """The subscription's periods not yet billed, oldest first, up to `cancel_at`.

    Without `cancel_at` the sequence never ends: take what you need.
    """
    day = subscription.next_period_start or subscription.billing_start
    change = subscription.pending_change
    cancel_at = subscription.cancel_at
    while cancel_at is None or day < cancel_at:
        schedule, plan, quantity = subscription.terms_on(day)
        k = schedule.index_of(day)
        # Period k, k + 1, ... of this schedule until the change (each from the origin).
        while cancel_at is None or day < cancel_at:
            period = schedule.period(k)
            if period.start != day:
                raise ValueError(
                    f"subscription {subscription.id}: {day} is no period start "
                    f"(the period containing it is {period.start} - {period.end})"
                )
            if change is not None and period.start < change.effective_date < period.end:
                raise ValueError(
                    f"subscription {subscription.id}: a change effective "
                    f"{change.effective_date} falls inside the period {period.start} - {period.end}"
                )
            whole = period if k > 0 else schedule.whole_period_containing(day)
            yield BillingPeriod(subscription.id, period, whole, plan, quantity)
            day, k = period.end, k + 1
            if change is not None and day == change.effective_date:
                break  # the next period is billed by the change's terms


def after_billing(subscription: SubscriptionTerms, billed: BillingPeriod) -> SubscriptionTerms:
    """The subscription's terms once `billed` is billed: what the generator writes back.

    `next_period_start` moves to the period's end; a pending change that billed
    this period becomes the subscription's plan and quantity (and its schedule's
    origin, if the interval changed).
    """
    updated = replace(subscription, next_period_start=billed.period.end)
    change = subscription.pending_change
    if change is None or billed.period.start < change.effective_date:
        return updated
    periods_from = subscription.periods_from
    if not change.plan.same_interval(subscription.plan):
        periods_from = change.effective_date
    return replace(
        updated,
        plan=change.plan,
        quantity=change.quantity,
        pending_change=None,
        periods_from=periods_from,
    )


def next_due_at(subscription: SubscriptionTerms, timezone: str) -> datetime | None:
    """When the subscription's next unbilled period falls due (the first instant of its
    start date in `timezone`), or None when no period is left before `cancel_at`.

    What the generator can keep on the subscription's row, so that finding the due
    subscriptions is one indexed query (`next_due_at <= now`).
    """
    following = next(billing_periods(subscription), None)
    return None if following is None else first_instant(following.period.start, timezone)


def status_on(subscription: SubscriptionTerms, today: date) -> SubscriptionStatus:
    """The status on the customer's local date `today`."""
    if subscription.cancel_at is not None and today >= subscription.cancel_at:
        return SubscriptionStatus.CANCELED
    if today < subscription.start_date:
        return SubscriptionStatus.SCHEDULED
    if today < subscription.billing_start:
        return SubscriptionStatus.TRIALING
    return SubscriptionStatus.ACTIVE


def current_period(subscription: SubscriptionTerms, today: date) -> Period | None:
    """`currentPeriodStart`/`End` on `today`: the trial's during a trial, None before the
    start and once canceled."""
    status = status_on(subscription, today)
    if status in (SubscriptionStatus.SCHEDULED, SubscriptionStatus.CANCELED):
        return None
    if status is SubscriptionStatus.TRIALING:
        return Period(subscription.start_date, subscription.billing_start)
    schedule, _, _ = subscription.terms_on(today)
    return schedule.period_containing(today)


def trial_will_end_date(subscription: SubscriptionTerms) -> date | None:
    """The local date at whose first instant `subscription.trial_will_end` is due."""
    if subscription.trial_end_date is None:
        return None
    return subscription.trial_end_date - timedelta(days=TRIAL_WILL_END_DAYS)


# --- lines and invoices ---------------------------------------------------------------


def _span(start: date, end: date) -> str:
    return f"{start.isoformat()} – {end.isoformat()}"


def subscription_line(billed: BillingPeriod) -> InvoiceLine:
    """The `subscription` line of one billing period."""
    plan, period = billed.plan, billed.period
    description = f"{plan.name} × {billed.quantity}, {_span(period.start, period.end)}"
    if billed.prorated:
        description += f" ({period.days} of {billed.whole.days} days)"
    return InvoiceLine(
        kind=LineKind.SUBSCRIPTION,
        description=description,
        amount=billed.amount,
        subscription_id=billed.subscription_id,
        plan_id=plan.id,
        period_start=period.start,
        period_end=period.end,
        quantity=billed.quantity,
    )


def balance_line(used: Money) -> InvoiceLine:
    """The `balance` line: `used` of the customer's credit, as a negative amount."""
    return InvoiceLine(kind=LineKind.BALANCE, description="Customer credit applied", amount=-used)


def _use_credit(
    currency: Currency, lines: Sequence[InvoiceLine], credit: Money | None
) -> tuple[tuple[InvoiceLine, ...], Money | None]:
    total = Money.zero(currency)
    for line in lines:
        total = total + line.amount
    if credit is None or not credit.is_positive or not total.is_positive:
        return tuple(lines), credit
    used = min(credit, total)
    return (*lines, balance_line(used)), credit - used


def _check_currency(subscriptions: Sequence[SubscriptionTerms], credit: Money | None) -> Currency:
    currencies = {s.plan.currency for s in subscriptions}
    currencies |= {s.pending_change.plan.currency for s in subscriptions if s.pending_change}
    if credit is not None:
        currencies.add(credit.currency)
    if len(currencies) > 1:
        raise CurrencyMismatchError(
            "a customer's subscriptions and credit are in one currency; got "
            + ", ".join(sorted(currencies))
        )
    return currencies.pop()


def _invoices(
    subscriptions: Sequence[SubscriptionTerms],
    timezone: str,
    due_by: datetime | None,
    credit: Money | None,
    limit: int | None,
) -> GeneratedInvoices:
    """The heart shared by preview and generation (see the module docstring)."""
    if not subscriptions:
        return GeneratedInvoices((), credit)
    currency = _check_currency(subscriptions, credit)

    def unbilled(subscription: SubscriptionTerms) -> Iterator[BillingPeriod]:
        periods = billing_periods(subscription)
        if due_by is None:
            return periods
        return itertools.takewhile(
            lambda b: first_instant(b.period.start, timezone) <= due_by, periods
        )

    ordered = sorted(subscriptions, key=lambda s: s.id)
    merged = heapq.merge(
        *(unbilled(s) for s in ordered), key=lambda b: (b.period.start, b.subscription_id)
    )
    invoices: list[DraftInvoice] = []
    billed: list[BillingPeriod] = []
    groups = itertools.groupby(merged, key=lambda b: b.period.start)
    for start, group in itertools.islice(groups, limit):
        periods = list(group)
        billed.extend(periods)
        lines = [subscription_line(b) for b in periods]
        total = sum((line.amount.value for line in lines), start=Money.zero(currency).value)
        batches = [[line] for line in lines] if total > currency.max_amount else [lines]
        due_at = first_instant(start, timezone)
        for batch in batches:
            with_credit, credit = _use_credit(currency, batch, credit)
            invoices.append(DraftInvoice(currency, start, due_at, with_credit))
    return GeneratedInvoices(tuple(invoices), credit, tuple(billed))


def due_invoices(
    subscriptions: Iterable[SubscriptionTerms],
    *,
    now: datetime,
    timezone: str,
    credit: Money | None = None,
    limit: int | None = None,
) -> GeneratedInvoices:
    """Every invoice of one customer due by the aware instant `now`, oldest first.

    `subscriptions`: all of the customer's subscriptions (canceled ones bill
    nothing); `timezone`: the customer's; `credit`: the customer's credit
    balance, used by each invoice in turn; `limit`: at most this many due dates
    (oldest first; the rest come in a later call once these are written). A
    period is due when the first instant of its start date is <= `now`.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return _invoices(list(subscriptions), timezone, now, credit, limit)


def upcoming_invoice(
    subscriptions: Iterable[SubscriptionTerms], *, timezone: str, credit: Money | None = None
) -> DraftInvoice | None:
    """The customer's next invoice as generation will make it (already due or not); None
    when no period is left to bill. Of a split invoice, the first part."""
    generated = _invoices(list(subscriptions), timezone, None, credit, 1)
    return generated.invoices[0] if generated.invoices else None


# --- changes and cancels `now` --------------------------------------------------------


def _rest_of_period(
    subscription: SubscriptionTerms, today: date
) -> tuple[Period, Period, PlanTerms, int] | None:
    """Today through the end of the billed period containing it, the whole period it is
    part of, and the plan and quantity billing it; None before billing starts."""
    if today < subscription.billing_start:
        return None
    schedule, plan, quantity = subscription.terms_on(today)
    period = schedule.period_containing(today)
    return Period(today, period.end), schedule.whole_period_containing(today), plan, quantity


def change_now_lines(
    subscription: SubscriptionTerms, plan: PlanTerms, quantity: int, today: date
) -> tuple[InvoiceLine, ...]:
    """A change `now` on the local date `today`: a `credit` line for today through the
    period's end at the old price and quantity (negative), and a `proration` line for the
    same days at the new ones, each rounded on its own. Empty before billing starts
    (scheduled, trialing): nothing was billed, nothing is prorated.

    Another interval is refused (`PeriodRuleError`, field `effective`): an interval
    changes only at `period_end`.
    """
    if not plan.same_interval(subscription.plan):
        raise PeriodRuleError(
            "effective", "a plan of another interval takes effect only at period_end"
        )
    if plan.currency is not subscription.plan.currency:
        raise CurrencyMismatchError(
            f"cannot change from {subscription.plan.currency} to {plan.currency}"
        )
    rest = _rest_of_period(subscription, today)
    if rest is None:
        return ()
    days, whole, old_plan, old_quantity = rest
    span = _span(days.start, days.end)
    share = f"{days.days} of {whole.days} days"
    credit = InvoiceLine(
        kind=LineKind.CREDIT,
        description=f"Unused time on {old_plan.name} × {old_quantity}, {span} ({share})",
        amount=-prorate(old_plan.amount, old_quantity, days.days, whole.days),
        subscription_id=subscription.id,
        plan_id=old_plan.id,
        period_start=days.start,
        period_end=days.end,
        quantity=old_quantity,
    )
    proration = InvoiceLine(
        kind=LineKind.PRORATION,
        description=f"Remaining time on {plan.name} × {quantity}, {span} ({share})",
        amount=prorate(plan.amount, quantity, days.days, whole.days),
        subscription_id=subscription.id,
        plan_id=plan.id,
        period_start=days.start,
        period_end=days.end,
        quantity=quantity,
    )
    return credit, proration


def cancel_now_credit(subscription: SubscriptionTerms, today: date) -> InvoiceLine | None:
    """A cancel `now` with `prorate`: the `credit` line (negative) for today through the
    period's end at the current price; None before billing starts (nothing was billed)."""
    rest = _rest_of_period(subscription, today)
    if rest is None:
        return None
    days, whole, plan, quantity = rest
    return InvoiceLine(
        kind=LineKind.CREDIT,
        description=(
            f"Unused time on {plan.name} × {quantity}, {_span(days.start, days.end)} "
            f"({days.days} of {whole.days} days)"
        ),
        amount=-prorate(plan.amount, quantity, days.days, whole.days),
        subscription_id=subscription.id,
        plan_id=plan.id,
        period_start=days.start,
        period_end=days.end,
        quantity=quantity,
    )


@dataclass(frozen=True, slots=True)
class ChangeOutcome:
    """What a change `now` makes: an invoice (net positive) or a credit (net <= 0).

    `invoice`: both lines (and a `balance` line if the customer's credit pays part
    of it), due at the moment of the request; None when the net is not positive.
    `credit_added`: what goes to the customer's credit (>= 0; zero when there is
    nothing to add, which the caller need not record). `credit_left`: the
    customer's credit afterwards.
    """

    lines: tuple[InvoiceLine, ...]
    invoice: DraftInvoice | None
    credit_added: Money
    credit_left: Money


def change_now_outcome(
    subscription: SubscriptionTerms,
    plan: PlanTerms,
    quantity: int,
    *,
    now: datetime,
    timezone: str,
    credit: Money,
) -> ChangeOutcome:
    """A change `now` at the aware instant `now`: its lines (`change_now_lines` on the
    customer's local date), then either an invoice due at `now` using the customer's
    credit first, or the (non-positive) net added to the credit."""
    today = local_date(now, timezone)
    lines = change_now_lines(subscription, plan, quantity, today)
    currency = subscription.plan.currency
    net = Money.zero(currency)
    for line in lines:
        net = net + line.amount
    if not net.is_positive:
        return ChangeOutcome(lines, None, -net, credit - net)
    with_credit, left = _use_credit(currency, lines, credit)
    assert left is not None  # `credit` was given
    invoice = DraftInvoice(currency, today, now, with_credit)
    return ChangeOutcome(lines, invoice, Money.zero(currency), left)
