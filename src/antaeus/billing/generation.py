"""Invoice generation (issue 21): every period due by now becomes its invoice, once.

Called by every path that opens a run (the scheduler's tick, `POST
/rest/v1/billing`, `antaeus bill`) before it opens the run, and by `antaeus
generate`. The lines come from the one pure function the preview also uses
(`domain.subscription.due_invoices`); this module only batches, caches and writes.

Per batch (one transaction): the due subscriptions of up to `batch_size`
customers (held; see storage/repositories/generation.py), each customer's due
invoices oldest first (at most `DUE_DATES_PER_BATCH` due dates; the rest come in
the next batch), written with one statement per table. A subscription alone on
its customer, with no credit, is the common case: its invoices depend only on
its terms (not its id), so one computation serves every subscription with the
same terms in the same zone (a million subscriptions created the same way cost
one computation per zone and plan).

Exactly once rests on the database (the unique index of subscription lines):
a batch that meets it (another generator was first) rolls back whole and is
read again.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import structlog
from sqlalchemy.exc import IntegrityError, OperationalError

from antaeus.billing.subscription_notices import tell_due_notices
from antaeus.clock import Clock
from antaeus.domain.events import InvoiceCreated, line_data, row
from antaeus.domain.invoice import Invoice, InvoiceStatus
from antaeus.domain.money import Currency, Money
from antaeus.domain.subscription import (
    DraftInvoice,
    LineKind,
    SubscriptionTerms,
    after_billing,
    due_invoices,
    next_due_at,
)
from antaeus.observability import metrics
from antaeus.storage.database import Database, WriteConnection
from antaeus.storage.repositories.generation import DueBatch, GenerationRepository
from antaeus.storage.repositories.plans import Plan, PlanRepository
from antaeus.storage.repositories.subscriptions import SubscriptionRow
from antaeus.storage.tables import invoice_lines, invoices

log = structlog.get_logger(__name__)

#: due dates per customer per batch (catch-up after long downtime takes several batches)
DUE_DATES_PER_BATCH: Final = 12
#: customers per batch
BATCH_SIZE: Final = 1_000
#: a batch that meets another generator's work is read again at most this many times
_TRIES: Final = 5
#: lone subscriptions' outcomes kept (by terms and zone) in one generation
_CACHE_SIZE: Final = 10_000
#: who wrote a credit entry that generation made
ACTOR: Final = "generation"


@dataclass
class GenerationSummary:
    """What one generation made: invoices, periods billed, amounts per currency."""

    invoices: int = 0
    periods: int = 0
    paid_at_once: int = 0  # invoices of total 0 (created PAID)
    amounts: dict[str, Decimal] = field(default_factory=dict)
    seconds: float = 0.0
    subscriptions: int = 0  # due subscriptions read (one read again in a later batch counts twice)
    stopped: bool = False  # `stop` was set before everything due was generated

    def add(self, other: GenerationSummary) -> None:
        self.invoices += other.invoices
        self.subscriptions += other.subscriptions
        self.periods += other.periods
        self.paid_at_once += other.paid_at_once
        for code, value in other.amounts.items():
            self.amounts[code] = self.amounts.get(code, Decimal(0)) + value

    def as_json(self) -> dict[str, Any]:
        return {
            "invoices": self.invoices,
            "periods": self.periods,
            "paidAtOnce": self.paid_at_once,
            "amounts": [
                {"value": value, "currency": code} for code, value in sorted(self.amounts.items())
            ],
        }


@dataclass(frozen=True, slots=True)
class _Outcome:
    """One customer's batch: invoices to write, and each subscription's terms after."""

    invoices: tuple[DraftInvoice, ...]
    after: dict[int, tuple[SubscriptionTerms, datetime | None]]  # id -> terms, next due
    credit_left: int | None  # minor units (None: unchanged)
    periods: int


#: placeholders of a lone subscription's event payload (see `_LoneInvoice.render`)
_INVOICE_SLOT: Final = 987_650_000_000_001
_CUSTOMER_SLOT: Final = 987_650_000_000_002
_SUBSCRIPTION_SLOT: Final = 987_650_000_000_003
_LINE_SLOT: Final = 987_650_000_000_100  # + the line's index


@dataclass(slots=True)
class _LoneInvoice:
    """One invoice of a lone subscription, without its ids: the rows it writes, and its
    `invoice.created` payload split around the ids (None: made the ordinary way)."""

    draft: DraftInvoice  # its subscription lines' subscription_id is 0
    currency: str
    amount_minor: int
    status: str
    value: Decimal
    lines: tuple[tuple[Any, ...], ...]  # LINE_COLUMNS[2:] (subscription_id 0: the one billed)
    pieces: list[str] | None
    slots: list[int]  # what goes between pieces: the _*_SLOT of each
    checked: bool = False  # rendered once against the ordinary payload

    def render(self, invoice_id: int, customer_id: int, sid: int, line_ids: list[int]) -> str:
        assert self.pieces is not None
        values = {_INVOICE_SLOT: invoice_id, _CUSTOMER_SLOT: customer_id, _SUBSCRIPTION_SLOT: sid}
        out = [self.pieces[0]]
        for slot, piece in zip(self.slots, self.pieces[1:], strict=True):
            found = values.get(slot)
            out.append(str(found if found is not None else line_ids[slot - _LINE_SLOT]))
            out.append(piece)
        return "".join(out)


@dataclass(frozen=True, slots=True)
class _Lone:
    """What a lone subscription (alone on its customer, no credit) bills by now: the same
    for every subscription with the same terms in the same zone, whatever its id."""

    invoices: tuple[_LoneInvoice, ...]
    after: tuple[Any, ...]  # SUBSCRIPTION_COLUMNS but updated_at and id
    periods: int
    lines: int


#: lone subscriptions' invoices by their row's terms and zone (`SubscriptionRow.lone_key`)
_Cache = dict[tuple[Any, ...], _Lone]


def _payload_template(draft: DraftInvoice) -> tuple[list[str] | None, list[int]]:
    """The invoice.created payload of `draft` split around its ids (None: an id's
    placeholder shows up more than once, e.g. in a plan name: no template)."""
    status = InvoiceStatus.PAID if draft.amount.minor == 0 else InvoiceStatus.PENDING
    shown = tuple(
        line_data(
            _LINE_SLOT + k,
            line.kind,
            line.description,
            line.amount,
            _SUBSCRIPTION_SLOT if line.subscription_id == 0 else line.subscription_id,
            line.plan_id,
            line.period_start,
            line.period_end,
            line.quantity,
        )
        for k, line in enumerate(draft.lines)
    )
    invoice = Invoice(_INVOICE_SLOT, _CUSTOMER_SLOT, draft.amount, status, draft.due_at)
    text = row(InvoiceCreated(invoice, shown))[3]
    wanted = [_INVOICE_SLOT, _CUSTOMER_SLOT, _SUBSCRIPTION_SLOT]
    wanted += [_LINE_SLOT + k for k in range(len(draft.lines))]
    found: list[tuple[int, int]] = []
    for slot in wanted:
        mark = str(slot)
        count = text.count(mark)
        if slot == _SUBSCRIPTION_SLOT:
            expected = sum(1 for line in draft.lines if line.subscription_id == 0)
        else:
            expected = 1
        if count != expected:
            return None, []
        at = -1
        for _ in range(count):
            at = text.index(mark, at + 1)
            found.append((at, slot))
    found.sort()
    pieces, slots, last = [], [], 0
    for at, slot in found:
        pieces.append(text[last:at])
        slots.append(slot)
        last = at + len(str(slot))
    pieces.append(text[last:])
    return pieces, slots


def _lone(terms: SubscriptionTerms, timezone: str, now: datetime) -> _Lone:
    """The `_Lone` of `terms` (its id ignored)."""
    terms = replace(terms, id=0)
    generated = due_invoices([terms], now=now, timezone=timezone, limit=DUE_DATES_PER_BATCH)
    after = terms
    for billed in generated.billed:
        after = after_billing(after, billed)
    following = next_due_at(after, timezone)
    if following is not None and following <= now and not generated.invoices:
        raise RuntimeError(f"a subscription is due ({following}) but generation billed nothing")
    pending = after.pending_change
    invoices = []
    for draft in generated.invoices:
        amount = draft.amount
        pieces, slots = _payload_template(draft)
        invoices.append(
            _LoneInvoice(
                draft,
                amount.currency.value,
                amount.minor,
                (InvoiceStatus.PAID if amount.minor == 0 else InvoiceStatus.PENDING).value,
                amount.value,
                tuple(
                    (
                        line.kind,
                        line.description,
                        line.amount.minor,
                        line.subscription_id,  # 0: the subscription's, set by add_lone
                        line.plan_id,
                        None,  # change_id
                        line.period_start,
                        line.period_end,
                        line.quantity,
                    )
                    for line in draft.lines
                ),
                pieces,
                slots,
            )
        )
    return _Lone(
        tuple(invoices),
        (
            after.plan.id,
            after.quantity,
            pending.plan.id if pending else None,
            pending.quantity if pending else None,
            pending.effective_date if pending else None,
            after.periods_from,
            after.next_period_start,
            following,
        ),
        len(generated.billed),
        sum(len(d.lines) for d in generated.invoices),
    )


def _customer(
    subs: list[SubscriptionTerms],
    timezone: str,
    currency: Currency,
    credit_minor: int,
    now: datetime,
) -> _Outcome:
    credit = Money.from_minor(credit_minor, currency) if credit_minor > 0 else None
    generated = due_invoices(
        subs, now=now, timezone=timezone, credit=credit, limit=DUE_DATES_PER_BATCH
    )
    after = {s.id: s for s in subs}
    for billed in generated.billed:
        after[billed.subscription_id] = after_billing(after[billed.subscription_id], billed)
    left = None
    if credit is not None and generated.credit_left is not None:
        left = generated.credit_left.minor
    return _Outcome(
        generated.invoices,
        {i: (t, next_due_at(t, timezone)) for i, t in after.items()},
        left,
        len(generated.billed),
    )


class _Plans:
    """Plans by id, read once per generation (a plan's price and interval never change)."""

    def __init__(self) -> None:
        self.known: dict[int, Plan] = {}

    async def cover(self, conn: WriteConnection, subs: list[SubscriptionRow]) -> None:
        missing = {i for s in subs for i in s.plan_ids() if i not in self.known}
        if missing:
            self.known.update(await PlanRepository(conn).many(missing))


async def _batch(
    conn: WriteConnection,
    now: datetime,
    batch_size: int,
    plans: _Plans,
    cache: _Cache,
    customer_id: int | None = None,
) -> GenerationSummary | None:
    repo = GenerationRepository(conn)
    due: DueBatch | None = await repo.due(now, batch_size, customer_id)
    if due is None:
        return None
    if due.waited or not due.subscriptions:
        return GenerationSummary()
    return await _bill(conn, repo, due, now, plans, cache)


async def _bill(
    conn: WriteConnection,
    repo: GenerationRepository,
    due: DueBatch,
    now: datetime,
    plans: _Plans,
    cache: _Cache,
) -> GenerationSummary:
    """Write the invoices of a batch's held customers (up to `DUE_DATES_PER_BATCH` due
    dates each) and move their subscriptions on."""
    await plans.cover(conn, due.subscriptions)
    by_customer: dict[int, list[SubscriptionRow]] = defaultdict(list)
    for sub in due.subscriptions:
        by_customer[sub.customer_id].append(sub)

    outcomes: list[tuple[int, _Outcome | tuple[int, _Lone]]] = []
    n_invoices = n_lines = 0
    for customer_id, rows in by_customer.items():
        customer = due.customers[customer_id]
        if len(rows) == 1 and customer.credit_minor <= 0:
            sub = rows[0]
            key = sub.lone_key()
            lone = cache.get(key)
            if lone is None:
                if len(cache) >= _CACHE_SIZE:  # terms seen once (anniversaries): the oldest go
                    del cache[next(iter(cache))]
                lone = cache[key] = _lone(sub.terms(plans.known), customer.timezone, now)
            outcomes.append((customer_id, (sub.id, lone)))
            n_invoices += len(lone.invoices)
            n_lines += lone.lines
            continue
        terms = [r.terms(plans.known) for r in rows]
        outcome = _customer(
            terms, customer.timezone, Currency(customer.currency), customer.credit_minor, now
        )
        for sid, (_, following) in outcome.after.items():
            if following is not None and following <= now and not outcome.invoices:
                raise RuntimeError(
                    f"subscription {sid} is due ({following}) but generation billed nothing"
                )
        outcomes.append((customer_id, outcome))
        n_invoices += len(outcome.invoices)
        n_lines += sum(len(d.lines) for d in outcome.invoices)

    writer = InvoiceWriter(repo, now)
    await writer.reserve_counts(n_invoices, n_lines)
    sub_rows: list[tuple[Any, ...]] = []
    held = {sub.id: sub for sub in due.subscriptions}
    for customer_id, made in outcomes:
        if isinstance(made, tuple):
            sid, lone = made
            writer.add_lone(customer_id, sid, lone)
            sub_rows.append((*lone.after, now, sid))
            continue
        outcome = made
        balance = writer.add(customer_id, outcome.invoices, due.customers[customer_id].credit_minor)
        if outcome.credit_left is not None:
            if outcome.credit_left != balance:
                raise RuntimeError(f"customer {customer_id}: credit entries do not add up")
            writer.balances[customer_id] = balance
        writer.summary.periods += outcome.periods
        for sid, (after, following) in outcome.after.items():
            pending = after.pending_change
            sub_rows.append(
                (
                    after.plan.id,
                    after.quantity,
                    pending.plan.id if pending else None,
                    pending.quantity if pending else None,
                    pending.effective_date if pending else None,
                    after.periods_from,
                    after.next_period_start,
                    following,
                    now,
                    sid,
                )
            )
    # Most rows only move on (the same plan, quantity and pending change): a narrower
    # UPDATE leaves the indexes of the columns it does not set alone.
    moved, changed = [], []
    for values in sub_rows:
        sub = held[values[-1]]
        if values[:5] == (
            sub.plan_id,
            sub.quantity,
            sub.pending_plan_id,
            sub.pending_quantity,
            sub.pending_effective_date,
        ):
            moved.append(values[5:])
        else:
            changed.append(values)
    await repo.update_subscriptions(changed)
    await repo.move_subscriptions_on(moved)
    await writer.write()
    writer.summary.subscriptions = len(due.subscriptions)
    return writer.summary


class InvoiceWriter:
    """Invoices, their lines, the credit they use and their `invoice.created` events,
    written with one statement per table (what generation and a change `now` write).

        writer = InvoiceWriter(GenerationRepository(conn), now)
        await writer.reserve(drafts)                 # every draft that will be added
        balance = writer.add(customer_id, drafts, credit_minor, change_id=...)
        writer.balances[customer_id] = balance       # if the credit changed
        await writer.write()

    An invoice of total 0 is created PAID (no charge attempt); any other PENDING, due
    at its `due_at`. A `balance` line writes a credit entry (reason `invoice`).
    """

    def __init__(self, repo: GenerationRepository, now: datetime, actor: str = ACTOR) -> None:
        self.repo = repo
        self.now = now
        self.actor = actor
        self.summary = GenerationSummary()
        self.balances: dict[int, int] = {}
        self.invoice_rows: list[tuple[Any, ...]] = []
        self.line_rows: list[tuple[Any, ...]] = []
        self.credit_rows: list[tuple[Any, ...]] = []
        self.event_rows: list[tuple[str, int | None, int | None, str]] = []
        self.invoice_ids: list[int] = []  # of the invoices added, in order
        self._invoice_ids: Iterator[int] = iter(())
        self._line_ids: Iterator[int] = iter(())

    async def reserve(self, drafts: Sequence[DraftInvoice]) -> None:
        await self.reserve_counts(len(drafts), sum(len(d.lines) for d in drafts))

    async def reserve_counts(self, n_invoices: int, n_lines: int) -> None:
        """Ids for `n_invoices` invoices and `n_lines` lines (what `reserve` does)."""
        self._invoice_ids = iter(await self.repo.reserve_ids(invoices, n_invoices))
        self._line_ids = iter(await self.repo.reserve_ids(invoice_lines, n_lines))

    def add_lone(self, customer_id: int, sid: int, lone: _Lone) -> None:
        """A lone subscription's invoices (`_Lone`, no credit): what `add` writes for
        them, from rows made once for every subscription with the same terms."""
        now, summary = self.now, self.summary
        for made in lone.invoices:
            invoice_id = next(self._invoice_ids)
            self.invoice_ids.append(invoice_id)
            due_at = made.draft.due_at
            self.invoice_rows.append(
                (
                    invoice_id,
                    customer_id,
                    made.currency,
                    made.amount_minor,
                    made.status,
                    due_at,
                    due_at,
                    0,
                    now,
                    now,
                )
            )
            line_ids = []
            for line in made.lines:
                line_id = next(self._line_ids)
                line_ids.append(line_id)
                if line[3] == 0:
                    line = (*line[:3], sid, *line[4:])
                self.line_rows.append((line_id, invoice_id, *line))
            if made.pieces is not None and made.checked:
                payload = made.render(invoice_id, customer_id, sid, line_ids)
                self.event_rows.append((InvoiceCreated.type.value, invoice_id, None, payload))
            else:
                event = self._event(made, invoice_id, customer_id, sid, line_ids)
                if made.pieces is not None:
                    # the template must give what the ordinary way gives, or is dropped
                    if made.render(invoice_id, customer_id, sid, line_ids) != event[3]:
                        made.pieces = None
                    made.checked = True
                self.event_rows.append(event)
            summary.invoices += 1
            if made.amount_minor == 0:
                summary.paid_at_once += 1
            summary.amounts[made.currency] = (
                summary.amounts.get(made.currency, Decimal(0)) + made.value
            )
        summary.periods += lone.periods

    @staticmethod
    def _event(
        made: _LoneInvoice, invoice_id: int, customer_id: int, sid: int, line_ids: list[int]
    ) -> tuple[str, int | None, int | None, str]:
        draft = made.draft
        shown = tuple(
            line_data(
                line_id,
                line.kind,
                line.description,
                line.amount,
                sid if line.subscription_id == 0 else line.subscription_id,
                line.plan_id,
                line.period_start,
                line.period_end,
                line.quantity,
            )
            for line_id, line in zip(line_ids, draft.lines, strict=True)
        )
        status = InvoiceStatus(made.status)
        invoice = Invoice(invoice_id, customer_id, draft.amount, status, draft.due_at)
        return row(InvoiceCreated(invoice, tuple(shown)))

    def add(
        self,
        customer_id: int,
        drafts: Sequence[DraftInvoice],
        credit_minor: int,
        *,
        change_id: int | None = None,
    ) -> int:
        """Add one customer's invoices; answers the customer's credit after them."""
        now, balance = self.now, credit_minor
        for draft in drafts:
            invoice_id = next(self._invoice_ids)
            self.invoice_ids.append(invoice_id)
            amount = draft.amount
            status = InvoiceStatus.PAID if amount.minor == 0 else InvoiceStatus.PENDING
            self.invoice_rows.append(
                (
                    invoice_id,
                    customer_id,
                    amount.currency.value,
                    amount.minor,
                    status.value,
                    draft.due_at,
                    draft.due_at,
                    0,
                    now,
                    now,
                )
            )
            shown = []
            for line in draft.lines:
                line_id = next(self._line_ids)
                self.line_rows.append(
                    (
                        line_id,
                        invoice_id,
                        line.kind,
                        line.description,
                        line.amount.minor,
                        line.subscription_id,
                        line.plan_id,
                        change_id if line.kind != LineKind.BALANCE else None,
                        line.period_start,
                        line.period_end,
                        line.quantity,
                    )
                )
                shown.append(
                    line_data(
                        line_id,
                        line.kind,
                        line.description,
                        line.amount,
                        line.subscription_id,
                        line.plan_id,
                        line.period_start,
                        line.period_end,
                        line.quantity,
                    )
                )
                if line.kind == LineKind.BALANCE:
                    balance += line.amount.minor
                    self.credit_rows.append(
                        (
                            customer_id,
                            amount.currency.value,
                            line.amount.minor,
                            balance,
                            "invoice",
                            None,
                            invoice_id,
                            change_id,
                            None,
                            self.actor,
                            now,
                        )
                    )
            invoice = Invoice(invoice_id, customer_id, amount, status, draft.due_at)
            self.event_rows.append(row(InvoiceCreated(invoice, tuple(shown))))
            summary = self.summary
            summary.invoices += 1
            if status is InvoiceStatus.PAID:
                summary.paid_at_once += 1
            code = amount.currency.value
            summary.amounts[code] = summary.amounts.get(code, Decimal(0)) + amount.value
        return balance

    async def write(self) -> None:
        repo = self.repo
        await repo.insert_invoices(self.invoice_rows)
        await repo.insert_lines(self.line_rows)
        await repo.insert_credit_entries(self.credit_rows)
        await repo.set_credit(self.balances)
        await repo.add_events(self.event_rows, self.now)


async def generate_due(
    db: Database,
    clock: Clock,
    *,
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[GenerationSummary], None] | None = None,
    stop: asyncio.Event | None = None,
) -> GenerationSummary:
    """Generate every invoice due by now (the clock's, read once), oldest first per
    subscription; answers what was made. Run again at once, it makes nothing.

    `on_batch` is told what each batch made once it is committed; `stop`, when set,
    ends generation between two batches (what was committed stays; the summary says
    `stopped`, and the next generation goes on from there)."""
    started = time.perf_counter()
    now = clock.now()
    total = GenerationSummary()
    plans = _Plans()
    cache: _Cache = {}
    while True:
        if stop is not None and stop.is_set():
            total.stopped = True
            break
        for attempt in range(1, _TRIES + 1):
            try:
                async with db.write() as conn:
                    made = await _batch(conn, now, batch_size, plans, cache)
                break
            except (IntegrityError, OperationalError) as exc:
                # another generator billed one of these periods first (the unique
                # index), or PostgreSQL broke a lock wait: read the batch again
                if attempt == _TRIES:
                    raise
                log.warning("generation_batch_retried", attempt=attempt, error=type(exc).__name__)
        if made is None:
            break
        total.add(made)
        if on_batch is not None:
            on_batch(made)
    if not total.stopped:
        await tell_due_notices(db, now)
    total.seconds = time.perf_counter() - started
    if total.invoices:
        metrics.INVOICES_GENERATED.inc(total.invoices)
        log.info(
            "invoices_generated",
            invoices=total.invoices,
            periods=total.periods,
            paid_at_once=total.paid_at_once,
            seconds=round(total.seconds, 3),
        )
    return total


async def generate_for_customer(
    conn: WriteConnection, now: datetime, customer_id: int
) -> GenerationSummary:
    """Every invoice of one customer due by `now`, in the caller's transaction, exactly as
    `generate_due` would (the same lines, consolidation and credit use).

    For a request that holds the customer (`hold_customer_for_update`): a change or
    cancel `now` first bills the periods already due by the terms they were due under,
    so that it never depends on whether the generator has run since the period began.
    (Creating a subscription generates nothing: its due periods are generated with the
    customer's others, consolidated, by the next tick, trigger or `antaeus generate`.)
    """
    total = GenerationSummary()
    plans = _Plans()
    cache: _Cache = {}
    while (made := await _batch(conn, now, 1, plans, cache, customer_id)) is not None:
        if not made.invoices:
            break
        total.add(made)
    if total.invoices:
        metrics.INVOICES_GENERATED.inc(total.invoices)
    return total
