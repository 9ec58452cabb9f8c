"""The charge flow's SQL: claims with leases, write-ahead attempts, outcomes.

Every statement here is batched: one round trip per batch of invoices, never
one per invoice. Every status change is conditional (`WHERE status = ...`,
and for a worker `AND lease_owner = <me>` and the claim's token), so a worker
that lost its lease never overwrites what another worker recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    and_,
    bindparam,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.elements import ColumnElement, UnaryExpression
from sqlalchemy.sql.operators import custom_op
from sqlalchemy.types import BigInteger

from antaeus.domain.invoice import attempt_key
from antaeus.domain.money import Currency, Money
from antaeus.storage.batch import Batch, execute_arrays, sqlite_moment
from antaeus.storage.database import Conn, WriteConnection
from antaeus.storage.repositories.runs import _CHUNK, PENDING, PROCESSING, RunsRepository
from antaeus.storage.tables import (
    charge_attempt_answers,
    charge_attempts,
    customers,
    invoices,
    run_invoices,
)


@dataclass(slots=True)  # not frozen: built by the thousand on the hot path
class Claimed:
    """An invoice claimed under this worker's lease, with its write-ahead attempt."""

    invoice_id: int
    customer_id: int
    amount: Money
    run_id: int
    attempt: int
    idempotency_key: str
    attempt_open_since: datetime
    due_at: datetime
    dunning_count: int
    unknown_repeats: int
    run_unknown_since: datetime | None
    lease_token: int  # the claim this lease belongs to
    sends: int  # sends of this attempt, this one included (1: its first send)
    # The references at the provider this send carries: for a new attempt the
    # customer's as they are at the claim (written ahead with the attempt); for a
    # repeat of an open attempt, those its first send recorded (an attempt written
    # before they were kept: the customer's, as then, and nothing recorded).
    provider_customer_id: str | None = None
    provider_payment_method_id: str | None = None


@dataclass(slots=True)  # not frozen: built by the thousand on the hot path
class OutcomeRow:
    """What to write for one invoice that got an answer (built by the worker from a Decision)."""

    invoice_id: int
    lease_token: int
    run_id: int
    attempt: int
    status: str
    last_failure: str | None
    next_attempt_at: datetime | None
    eligible_at: datetime
    attempt_open_since: datetime | None
    dunning_count: int
    unknown_repeats: int
    run_unknown_since: datetime | None
    attempt_outcome: str
    attempt_finished: bool
    charge_id: str | None
    run_outcome: str | None  # None: stays in its run (repeated soon)
    event_type: str
    event_payload: str
    decline_code: str | None = None  # the provider's, for outcome card_declined


@dataclass(slots=True)
class RefusedRow:
    """An invoice its provider refused before any call (built from a RefusalDecision)."""

    invoice_id: int
    lease_token: int
    run_id: int
    attempt: int  # the attempt the claim opened or repeated
    status: str
    last_failure: str
    takes_back_attempt: bool  # True: the attempt had no earlier send and is removed
    run_outcome: str
    event_type: str
    event_payload: str


def _attempt_upsert(insert_fn: Any) -> Batch:
    """Write an attempt ahead with the references it is sent with; a repeat of an open
    attempt only counts one more send (its references stay those of its first send)."""
    stmt = insert_fn(charge_attempts).values(
        invoice_id=bindparam("b_id"),
        number=bindparam("b_number"),
        idempotency_key=bindparam("b_key"),
        run_id=bindparam("b_run"),
        started_at=bindparam("b_now"),
        sends=1,
        provider_customer_id=bindparam("b_cus", type_=charge_attempts.c.provider_customer_id.type),
        provider_payment_method_id=bindparam(
            "b_pm", type_=charge_attempts.c.provider_payment_method_id.type
        ),
        references_recorded=true(),
    )
    return Batch(
        stmt.on_conflict_do_update(
            index_elements=[charge_attempts.c.invoice_id, charge_attempts.c.number],
            set_={"sends": charge_attempts.c.sends + 1, "run_id": stmt.excluded.run_id},
        )
    )


_UPSERT_ATTEMPTS = {
    "postgresql": _attempt_upsert(pg_insert),
    "sqlite": _attempt_upsert(sqlite_insert),
}

#: The send taken back (a release, a refusal): an attempt with earlier sends (which
#: may have charged) stays open with its key; one without is undone (number back).
_FIRST_SEND = invoices.c.attempt_sends <= 1
_TAKE_SEND_BACK: dict[str, Any] = {
    "attempt_open_since": case((_FIRST_SEND, None), else_=invoices.c.attempt_open_since),
    "attempt_count": case(
        (_FIRST_SEND, invoices.c.attempt_count - 1), else_=invoices.c.attempt_count
    ),
    "attempt_sends": case((_FIRST_SEND, 0), else_=invoices.c.attempt_sends - 1),
}

_RECORD_INVOICES = Batch(
    update(invoices)
    .where(
        invoices.c.id == bindparam("b_id"),
        invoices.c.status == PROCESSING,
        invoices.c.lease_owner == bindparam("b_owner"),
        invoices.c.lease_token == bindparam("b_token"),
    )
    .values(
        status=bindparam("b_status"),
        last_failure=bindparam("b_last_failure"),
        next_attempt_at=bindparam("b_next_attempt_at"),
        eligible_at=bindparam("b_eligible_at"),
        attempt_open_since=bindparam("b_attempt_open_since"),
        dunning_count=bindparam("b_dunning_count"),
        unknown_repeats=bindparam("b_unknown_repeats"),
        run_unknown_since=bindparam("b_run_unknown_since"),
        run_id=bindparam("b_run_id"),
        lease_owner=bindparam("b_no_owner"),
        lease_expires_at=bindparam("b_no_lease"),
        lease_token=bindparam("b_no_token"),
        updated_at=bindparam("b_now"),
    )
)

_INSERT_ANSWERS = Batch(
    insert(charge_attempt_answers).values(
        invoice_id=bindparam("b_id"),
        attempt=bindparam("b_number"),
        run_id=bindparam("b_run"),
        outcome=bindparam("b_outcome"),
        charge_id=bindparam("b_charge_id"),
        answered_at=bindparam("b_now"),
    )
)

# A send the provider proved did nothing is taken back; an attempt left with no
# send is removed, as if the invoice had never been claimed.
_UNSEND_ATTEMPTS = Batch(
    update(charge_attempts)
    .where(
        charge_attempts.c.invoice_id == bindparam("b_id"),
        charge_attempts.c.number == bindparam("b_number"),
    )
    .values(sends=charge_attempts.c.sends - 1)
)
_DROP_UNSENT_ATTEMPTS = Batch(
    charge_attempts.delete().where(
        charge_attempts.c.invoice_id == bindparam("b_id"),
        charge_attempts.c.number == bindparam("b_number"),
        charge_attempts.c.outcome.is_(None),
    )
)

_RECORD_ATTEMPTS = Batch(
    update(charge_attempts)
    .where(
        charge_attempts.c.invoice_id == bindparam("b_id"),
        charge_attempts.c.number == bindparam("b_number"),
    )
    .values(
        outcome=bindparam("b_outcome"),
        finished_at=bindparam("b_finished_at"),
        charge_id=bindparam("b_charge_id"),
        decline_code=bindparam("b_decline_code"),
    )
)

_RECORD_RUN_INVOICES = Batch(
    update(run_invoices)
    .where(
        run_invoices.c.run_id == bindparam("b_run"),
        run_invoices.c.invoice_id == bindparam("b_id"),
        run_invoices.c.outcome.is_(None),
    )
    .values(outcome=bindparam("b_outcome"), finished_at=bindparam("b_now"))
)


# -- PostgreSQL: one statement per batch ------------------------------------------
# The statements above, as PostgreSQL runs a whole batch in one: the rows' values
# as typed arrays (NULL elements allowed) joined by `unnest`, the conditions the
# same. `Batch` remains SQLite's (its executemany is one call there).

_PG_UPSERT_ATTEMPTS: Final = """\
INSERT INTO charge_attempts (invoice_id, number, idempotency_key, run_id, started_at, sends,
 provider_customer_id, provider_payment_method_id, references_recorded) \
SELECT v.invoice_id, v.number, v.idempotency_key, v.run_id, $5::timestamptz, 1,
 v.provider_customer_id, v.provider_payment_method_id, TRUE
FROM unnest($1::bigint[], $2::integer[], $3::text[], $4::bigint[], $6::text[], $7::text[])
 AS v(invoice_id, number, idempotency_key, run_id, provider_customer_id,
 provider_payment_method_id)
ON CONFLICT (invoice_id, number)
DO UPDATE SET sends = charge_attempts.sends + 1, run_id = excluded.run_id"""

# The invoices are looked up from the batch's rows, one probe each (the LATERAL
# ... LIMIT 1 cannot be turned around), the lease's conditions checked there. A
# plain `UPDATE ... FROM unnest(...) WHERE invoices.id = v.id AND lease_owner = $n`
# leaves the join's direction to the planner, which estimates a new lease owner
# at one row: it drove the join from the PROCESSING invoices and scanned the
# arrays again for each one (0.2-0.5 s a batch of 1,000, seen at 50,000). The
# rows found are locked by `still_owned` in the same transaction, so nobody
# changes them between the look-up and the update.
_PG_RECORD_INVOICES: Final = """\
UPDATE invoices SET status = v.status, last_failure = v.last_failure,
 next_attempt_at = v.next_attempt_at, eligible_at = v.eligible_at,
 attempt_open_since = v.attempt_open_since, dunning_count = v.dunning_count,
 unknown_repeats = v.unknown_repeats, run_unknown_since = v.run_unknown_since,
 run_id = v.run_id, lease_owner = NULL, lease_expires_at = NULL, lease_token = NULL,
 updated_at = $12::timestamptz
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[],
 $6::timestamptz[], $7::timestamptz[], $8::integer[], $9::integer[], $10::timestamptz[],
 $11::bigint[])
 AS v(id, token, status, last_failure, next_attempt_at, eligible_at, attempt_open_since,
 dunning_count, unknown_repeats, run_unknown_since, run_id),
 LATERAL (
  SELECT mine.id FROM invoices AS mine
  WHERE mine.id = v.id AND mine.status = $13::text AND mine.lease_owner = $14::text
   AND mine.lease_token = v.token
  LIMIT 1
 ) AS owned
WHERE invoices.id = owned.id"""

_PG_RECORD_ATTEMPTS: Final = """\
UPDATE charge_attempts SET outcome = v.outcome, finished_at = v.finished_at,
 charge_id = v.charge_id, decline_code = v.decline_code
FROM unnest($1::bigint[], $2::integer[], $3::text[], $4::timestamptz[], $5::text[], $6::text[])
 AS v(invoice_id, number, outcome, finished_at, charge_id, decline_code)
WHERE charge_attempts.invoice_id = v.invoice_id AND charge_attempts.number = v.number"""

# (in the batch's order, as executemany inserted them: ids follow it)
_PG_INSERT_ANSWERS: Final = """\
INSERT INTO charge_attempt_answers (invoice_id, attempt, run_id, outcome, charge_id, answered_at) \
SELECT v.invoice_id, v.attempt, v.run_id, v.outcome, v.charge_id, $6::timestamptz
FROM unnest($1::bigint[], $2::integer[], $3::bigint[], $4::text[], $5::text[])
 WITH ORDINALITY AS v(invoice_id, attempt, run_id, outcome, charge_id, n)
ORDER BY v.n"""

_PG_RECORD_RUN_INVOICES: Final = """\
UPDATE run_invoices SET outcome = v.outcome, finished_at = $4::timestamptz
FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS v(run_id, invoice_id, outcome)
WHERE run_invoices.run_id = v.run_id AND run_invoices.invoice_id = v.invoice_id
 AND run_invoices.outcome IS NULL"""

_SQLITE_STILL_OWNED: Final = """\
SELECT invoices.id, invoices.lease_token FROM invoices
WHERE invoices.id IN ({}) AND invoices.status = ? AND invoices.lease_owner = ?"""

_PG_STILL_OWNED: Final = """\
SELECT invoices.id, invoices.lease_token FROM invoices
WHERE invoices.id = ANY($1::bigint[]) AND invoices.status = $2::text
 AND invoices.lease_owner = $3::text
FOR UPDATE"""


def _customer_column(column: Any) -> Any:
    """A customer's column for the claimed invoice: a correlated lookup by primary key."""
    return select(column).where(customers.c.id == invoices.c.customer_id).scalar_subquery()


_CUSTOMER_REF = _customer_column(customers.c.provider_customer_id)
_PAYMENT_METHOD_REF = _customer_column(customers.c.provider_payment_method_id)


def _open_attempt_column(column: Any) -> Any:
    """A column of the attempt a claim repeats (sends > 1 after the claim: it was open),
    by primary key; NULL for a new attempt, without a lookup (CASE is lazy on both
    engines, so the hot path of first sends pays nothing for it)."""
    found = (
        select(column)
        .where(
            charge_attempts.c.invoice_id == invoices.c.id,
            charge_attempts.c.number == invoices.c.attempt_count,
        )
        .scalar_subquery()
    )
    return case((invoices.c.attempt_sends > 1, found), else_=None)


_SENT_RECORDED = _open_attempt_column(charge_attempts.c.references_recorded)
_SENT_CUSTOMER_REF = _open_attempt_column(charge_attempts.c.provider_customer_id)
_SENT_PAYMENT_METHOD_REF = _open_attempt_column(charge_attempts.c.provider_payment_method_id)

# A refusal (no call made) fails a new attempt and takes it back, as a release does:
# attempt number back, no open attempt; an open attempt with an earlier send keeps
# its key and goes to REVIEW (decided by `domain/policy.py` `decide_refusal`).
_REFUSE_INVOICES = Batch(
    update(invoices)
    .where(
        invoices.c.id == bindparam("b_id"),
        invoices.c.status == PROCESSING,
        invoices.c.lease_owner == bindparam("b_owner"),
        invoices.c.lease_token == bindparam("b_token"),
    )
    .values(
        status=bindparam("b_status"),
        last_failure=bindparam("b_last_failure"),
        next_attempt_at=None,
        eligible_at=bindparam("b_now"),
        **_TAKE_SEND_BACK,
        unknown_repeats=0,
        run_unknown_since=None,
        run_id=None,
        lease_owner=None,
        lease_expires_at=None,
        lease_token=None,
        updated_at=bindparam("b_now"),
    )
)


def _unindexed(column: ColumnElement[str]) -> ColumnElement[str]:
    """`+column`: the same value, which SQLite's planner will not look up by an index."""
    return UnaryExpression(column, operator=custom_op("+"), type_=column.type)


def _claim_statement(pg: bool, open_attempts_only: bool, exclude: Sequence[int]) -> Batch:
    """The claim's UPDATE ... RETURNING, its values bound by name (`c_now`, ...).

    Compiled once per engine and option (`_CLAIMS`), but for an `exclude` list: its
    ids are the statement's own values.
    """
    now = bindparam("c_now", type_=invoices.c.updated_at.type)
    # SQLite: the status terms must not pick an index (`+status`), or the planner
    # takes ix_invoices_status_id and sorts every PENDING invoice for each claim
    # (a claim's cost grew with the invoices waiting); it walks ix_invoices_in_run
    # in eligible_at order instead, and stops at `limit`.
    status = invoices.c.status if pg else _unindexed(invoices.c.status)
    claimable = and_(
        invoices.c.run_id.is_not(None),
        or_(
            and_(status == PENDING, invoices.c.eligible_at <= now),
            and_(status == PROCESSING, invoices.c.lease_expires_at <= now),
        ),
        or_(
            invoices.c.attempt_open_since.is_(None),
            invoices.c.attempt_open_since > bindparam("c_cut", type_=invoices.c.updated_at.type),
        ),
    )
    if open_attempts_only:
        claimable = and_(claimable, invoices.c.attempt_open_since.is_not(None))
    if exclude:
        claimable = and_(
            claimable, invoices.c.id.not_in([literal(int(i), BigInteger()) for i in exclude])
        )
    pick = (
        select(invoices.c.id)
        .where(claimable)
        .order_by(invoices.c.eligible_at)
        .limit(bindparam("c_limit", type_=BigInteger()))
    )
    if pg:
        pick = pick.with_for_update(skip_locked=True)
    return Batch(
        update(invoices)
        .where(invoices.c.id.in_(pick.scalar_subquery()))
        .values(
            status=PROCESSING,
            lease_owner=bindparam("c_owner", type_=invoices.c.lease_owner.type),
            lease_expires_at=bindparam("c_lease_until", type_=invoices.c.updated_at.type),
            lease_token=bindparam("c_token", type_=invoices.c.lease_token.type),
            # a new attempt (and key) only when none is open
            attempt_count=case(
                (invoices.c.attempt_open_since.is_(None), invoices.c.attempt_count + 1),
                else_=invoices.c.attempt_count,
            ),
            attempt_sends=case(
                (invoices.c.attempt_open_since.is_(None), 1),
                else_=invoices.c.attempt_sends + 1,
            ),
            attempt_open_since=func.coalesce(invoices.c.attempt_open_since, now),
            updated_at=now,
        )
        .returning(
            invoices.c.id,
            invoices.c.customer_id,
            invoices.c.currency,
            invoices.c.amount_minor,
            invoices.c.run_id,
            invoices.c.attempt_count,
            invoices.c.attempt_open_since,
            invoices.c.due_at,
            invoices.c.dunning_count,
            invoices.c.unknown_repeats,
            invoices.c.run_unknown_since,
            invoices.c.attempt_sends,
            # the customer's provider references, in the same statement (the hot path)
            _CUSTOMER_REF.label("provider_customer_id"),
            _PAYMENT_METHOD_REF.label("provider_payment_method_id"),
            # a repeat's: those its attempt recorded at its first send
            _SENT_RECORDED.label("sent_recorded"),
            _SENT_CUSTOMER_REF.label("sent_customer_id"),
            _SENT_PAYMENT_METHOD_REF.label("sent_payment_method_id"),
        )
    )


#: The claim statements without an `exclude` list: (PostgreSQL?, open attempts only?)
_CLAIMS: dict[tuple[bool, bool], Batch] = {}


def _same(value: Any) -> Any:
    return value


class ChargesRepository(RunsRepository[Conn]):
    # -- claims and write-ahead ---------------------------------------------

    async def claim(
        self: ChargesRepository[WriteConnection],
        owner: str,
        now: datetime,
        lease_until: datetime,
        cut: datetime,
        limit: int,
        installation_id: str,
        *,
        token: int = 0,
        exclude: Sequence[int] = (),
        open_attempts_only: bool = False,
    ) -> list[Claimed]:
        """Claim up to `limit` invoices of open runs, and write their attempts ahead.

        Claimable: PENDING and eligible, or PROCESSING under an expired lease (a
        crashed worker). An invoice whose attempt is still open keeps that
        attempt and its key; any other gets attempt number + 1 and a new key.
        `open_attempts_only` claims only invoices whose attempt is open (repeats
        with their keys, while new charges are held back). `token` names this
        claim (answers are recorded only for it); `exclude`: invoices the caller
        still has calls out for, whose leases it could not renew in time.
        """
        if exclude:  # rare (the database was away): a statement of its own
            statement = _claim_statement(self.is_pg, open_attempts_only, exclude)
        else:
            key = (self.is_pg, open_attempts_only)
            statement = _CLAIMS.get(key) or _CLAIMS.setdefault(key, _claim_statement(*key, exclude))
        result = await statement.execute(
            self.conn,
            {
                "c_owner": owner,
                "c_now": now,
                "c_lease_until": lease_until,
                "c_cut": cut,
                "c_limit": limit,
                "c_token": token,
            },
        )
        # The driver's rows (no column type processes them): asyncpg's datetimes are
        # aware UTC already; SQLite's are its stored text, each distinct one parsed once.
        if self.is_pg:
            moment: Any = _same
        else:
            moments: dict[str, datetime | None] = {}

            def moment(text: str | None) -> datetime | None:
                if text is None:
                    return None
                found = moments.get(text)
                if found is None:
                    found = moments[text] = sqlite_moment(text)
                return found

        currencies: dict[str, Currency] = {}  # one lookup per currency, not per invoice
        claimed = [
            Claimed(
                invoice_id,
                customer_id,
                Money.from_minor(
                    amount_minor,
                    currencies.get(currency) or currencies.setdefault(currency, Currency(currency)),
                ),
                run_id,
                attempt,
                attempt_key(installation_id, invoice_id, attempt),
                moment(open_since),
                moment(due_at),
                dunning_count,
                unknown_repeats,
                moment(run_unknown_since),
                token,
                sends,
                sent_customer_ref if sent_recorded else customer_ref,
                sent_payment_method_ref if sent_recorded else payment_method_ref,
            )
            # (positional: a tuple unpacked costs a fraction of a Row's attributes)
            for (
                invoice_id,
                customer_id,
                currency,
                amount_minor,
                run_id,
                attempt,
                open_since,
                due_at,
                dunning_count,
                unknown_repeats,
                run_unknown_since,
                sends,
                customer_ref,
                payment_method_ref,
                sent_recorded,
                sent_customer_ref,
                sent_payment_method_ref,
            ) in result
        ]
        if not claimed:
            return claimed
        if self.is_pg:
            await execute_arrays(
                self.conn,
                _PG_UPSERT_ATTEMPTS,
                (
                    [c.invoice_id for c in claimed],
                    [c.attempt for c in claimed],
                    [c.idempotency_key for c in claimed],
                    [c.run_id for c in claimed],
                    now,
                    [c.provider_customer_id for c in claimed],
                    [c.provider_payment_method_id for c in claimed],
                ),
            )
            return claimed
        await _UPSERT_ATTEMPTS["sqlite"].executemany(
            self.conn,
            [
                {
                    "b_id": c.invoice_id,
                    "b_number": c.attempt,
                    "b_key": c.idempotency_key,
                    "b_run": c.run_id,
                    "b_cus": c.provider_customer_id,
                    "b_pm": c.provider_payment_method_id,
                }
                for c in claimed
            ],
            {"b_now": now},
        )
        return claimed

    async def renew_leases(
        self: ChargesRepository[WriteConnection], owner: str, ids: Sequence[int], until: datetime
    ) -> set[int]:
        """Extend the leases of `ids` still held by `owner`; answers those extended.

        Only what the caller names: a row the caller no longer has a call out for
        (an answer it could not record) must be left to expire and be claimed again.
        """
        renewed: set[int] = set()
        ids = list(ids)
        for start in range(0, len(ids), _CHUNK):
            result = await self.conn.execute(
                update(invoices)
                .where(
                    invoices.c.id.in_(ids[start : start + _CHUNK]),
                    invoices.c.lease_owner == owner,
                    invoices.c.status == PROCESSING,
                )
                .values(lease_expires_at=until)
                .returning(invoices.c.id)
            )
            renewed.update(r.id for r in result)
        return renewed

    async def release(
        self: ChargesRepository[WriteConnection],
        owner: str,
        sent: Sequence[tuple[int, int]],
        eligible_at: datetime,
        now: datetime,
    ) -> int:
        """Give invoices back to their run: the send of each proved nothing happened.

        `sent`: (invoice id, attempt number) of a send that never reached the
        provider, or that it refused without doing anything (401, 429, 409 in
        use), or that was never made (claimed ahead, then a graceful stop). The
        send is taken back: an attempt with earlier sends (which may have
        charged) stays open with its key; one without any is removed, so that
        the invoice is as if it had never been claimed (no open attempt:
        `void` allowed, no REVIEW when key retention ends).
        """
        if not sent:
            return 0
        numbers = dict(sent)
        result = await self.conn.execute(
            update(invoices)
            .where(
                invoices.c.id.in_(list(numbers)),
                invoices.c.status == PROCESSING,
                invoices.c.lease_owner == owner,
            )
            .values(
                status=PENDING,
                lease_owner=None,
                lease_expires_at=None,
                lease_token=None,
                eligible_at=eligible_at,
                **_TAKE_SEND_BACK,
                updated_at=now,
            )
            .returning(invoices.c.id, invoices.c.attempt_open_since)
        )
        released = [(r.id, r.attempt_open_since is None) for r in result]
        rows = [{"b_id": i, "b_number": numbers[i]} for i, _ in released]
        await _UNSEND_ATTEMPTS.executemany(self.conn, rows)
        await _DROP_UNSENT_ATTEMPTS.executemany(
            self.conn, [{"b_id": i, "b_number": numbers[i]} for i, gone in released if gone]
        )
        return len(released)

    # -- outcomes -----------------------------------------------------------

    async def still_owned(
        self: ChargesRepository[WriteConnection], owner: str, ids: Sequence[int]
    ) -> dict[int, int | None]:
        """Of `ids`, those still PROCESSING under `owner`'s lease, with the claim's token.

        Locked on PostgreSQL (SQLite's writers take turns), so the updates that
        follow in the same transaction find them as they are now.
        """
        if not ids:
            return {}
        if self.is_pg:
            result = await self.conn.exec_driver_sql(
                _PG_STILL_OWNED, (list(ids), PROCESSING, owner)
            )
        else:
            result = await self.conn.exec_driver_sql(
                _SQLITE_STILL_OWNED.format(",".join("?" * len(ids))),
                (*ids, PROCESSING, owner),
            )
        owned: Any = result.all()  # (id, token) rows
        return dict(owned)

    async def record(
        self: ChargesRepository[WriteConnection],
        owner: str,
        rows: Sequence[OutcomeRow],
        now: datetime,
    ) -> list[int]:
        """Write outcomes for invoices this worker still owns; answers the runs completed.

        The caller passes only rows `still_owned` found under their claim's token,
        at most one per invoice, in the same transaction: every invoice update
        then happens, and the writes that depend on it (attempt, answer history,
        run membership, event) are made for exactly those rows.
        """
        if not rows:
            return []
        if len({r.invoice_id for r in rows}) != len(rows):
            raise ValueError("two answers for one invoice in one batch")
        if self.is_pg:
            await self._pg_record(owner, rows, now)
        else:
            await self._sqlite_record(owner, rows, now)
        leaving = [r for r in rows if r.run_outcome]
        await self._record_run_invoices(
            [(r.run_id, r.invoice_id, r.run_outcome) for r in leaving], now
        )
        await self.add_events(
            [(r.event_type, r.invoice_id, r.run_id, r.event_payload) for r in rows], now
        )
        return await self.complete_runs(sorted({r.run_id for r in leaving}), now)

    async def _pg_record(
        self: ChargesRepository[WriteConnection],
        owner: str,
        rows: Sequence[OutcomeRow],
        now: datetime,
    ) -> None:
        """`record`'s invoices, attempts and answers on PostgreSQL: a statement each."""
        ids = [r.invoice_id for r in rows]
        attempts = [r.attempt for r in rows]
        outcomes = [r.attempt_outcome for r in rows]
        charge_ids = [r.charge_id for r in rows]
        run_ids = [r.run_id for r in rows]
        changed = await execute_arrays(
            self.conn,
            _PG_RECORD_INVOICES,
            (
                ids,
                [r.lease_token for r in rows],
                [r.status for r in rows],
                [r.last_failure for r in rows],
                [r.next_attempt_at for r in rows],
                [r.eligible_at for r in rows],
                [r.attempt_open_since for r in rows],
                [r.dunning_count for r in rows],
                [r.unknown_repeats for r in rows],
                [r.run_unknown_since for r in rows],
                [None if r.run_outcome else r.run_id for r in rows],
                now,
                PROCESSING,
                owner,
            ),
        )
        if changed != len(rows):
            # callers pass only invoices `still_owned` locked for them: this is a bug
            raise LeaseLostError(f"{len(rows) - changed} of {len(rows)} invoices changed hands")
        await execute_arrays(
            self.conn,
            _PG_RECORD_ATTEMPTS,
            (
                ids,
                attempts,
                outcomes,
                [now if r.attempt_finished else None for r in rows],
                charge_ids,
                [r.decline_code for r in rows],
            ),
        )
        await execute_arrays(
            self.conn, _PG_INSERT_ANSWERS, (ids, attempts, run_ids, outcomes, charge_ids, now)
        )

    async def _sqlite_record(
        self: ChargesRepository[WriteConnection],
        owner: str,
        rows: Sequence[OutcomeRow],
        now: datetime,
    ) -> None:
        """`record`'s invoices, attempts and answers on SQLite: an executemany each."""
        changed = await _RECORD_INVOICES.executemany(
            self.conn,
            [
                {
                    "b_id": r.invoice_id,
                    "b_token": r.lease_token,
                    "b_status": r.status,
                    "b_last_failure": r.last_failure,
                    "b_next_attempt_at": r.next_attempt_at,
                    "b_eligible_at": r.eligible_at,
                    "b_attempt_open_since": r.attempt_open_since,
                    "b_dunning_count": r.dunning_count,
                    "b_unknown_repeats": r.unknown_repeats,
                    "b_run_unknown_since": r.run_unknown_since,
                    "b_run_id": None if r.run_outcome else r.run_id,
                }
                for r in rows
            ],
            {
                "b_owner": owner,
                "b_no_owner": None,
                "b_no_lease": None,
                "b_no_token": None,
                "b_now": now,
            },
        )
        if changed not in (-1, len(rows)):
            # callers pass only invoices `still_owned` locked for them: this is a bug
            raise LeaseLostError(f"{len(rows) - changed} of {len(rows)} invoices changed hands")
        await _RECORD_ATTEMPTS.executemany(
            self.conn,
            [
                {
                    "b_id": r.invoice_id,
                    "b_number": r.attempt,
                    "b_outcome": r.attempt_outcome,
                    "b_finished_at": now if r.attempt_finished else None,
                    "b_charge_id": r.charge_id,
                    "b_decline_code": r.decline_code,
                }
                for r in rows
            ],
        )
        await _INSERT_ANSWERS.executemany(
            self.conn,
            [
                {
                    "b_id": r.invoice_id,
                    "b_number": r.attempt,
                    "b_run": r.run_id,
                    "b_outcome": r.attempt_outcome,
                    "b_charge_id": r.charge_id,
                }
                for r in rows
            ],
            {"b_now": now},
        )

    async def _record_run_invoices(
        self: ChargesRepository[WriteConnection],
        items: Sequence[tuple[int, int, str | None]],
        now: datetime,
    ) -> None:
        """Each (run, invoice, outcome) leaves its run, if it had not already."""
        if not items:
            return
        if self.is_pg:
            runs, ids, outcomes = zip(*items, strict=True)
            await execute_arrays(
                self.conn, _PG_RECORD_RUN_INVOICES, (list(runs), list(ids), list(outcomes), now)
            )
            return
        await _RECORD_RUN_INVOICES.executemany(
            self.conn,
            [{"b_run": run, "b_id": i, "b_outcome": outcome} for run, i, outcome in items],
            {"b_now": now},
        )

    async def refuse(
        self: ChargesRepository[WriteConnection],
        owner: str,
        rows: Sequence[RefusedRow],
        now: datetime,
    ) -> list[int]:
        """Write what the provider refused before any call; answers the runs completed.

        As `record`, for rows `still_owned` under their claim's token, in the same
        transaction. The send the claim counted is taken back (no call was made);
        an attempt left with no send is removed, so no key is consumed.
        """
        if not rows:
            return []
        changed = await _REFUSE_INVOICES.executemany(
            self.conn,
            [
                {
                    "b_id": r.invoice_id,
                    "b_owner": owner,
                    "b_token": r.lease_token,
                    "b_status": r.status,
                    "b_last_failure": r.last_failure,
                    "b_now": now,
                }
                for r in rows
            ],
        )
        if changed not in (-1, len(rows)):
            raise LeaseLostError(f"{len(rows) - changed} of {len(rows)} invoices changed hands")
        numbers = [{"b_id": r.invoice_id, "b_number": r.attempt} for r in rows]
        await _UNSEND_ATTEMPTS.executemany(self.conn, numbers)
        await _DROP_UNSENT_ATTEMPTS.executemany(
            self.conn,
            [{"b_id": r.invoice_id, "b_number": r.attempt} for r in rows if r.takes_back_attempt],
        )
        await self._record_run_invoices(
            [(r.run_id, r.invoice_id, r.run_outcome) for r in rows], now
        )
        await self.add_events(
            [(r.event_type, r.invoice_id, r.run_id, r.event_payload) for r in rows], now
        )
        return await self.complete_runs(sorted({r.run_id for r in rows}), now)


class LeaseLostError(Exception):
    """An outcome could not be written because the invoice changed hands meanwhile."""
