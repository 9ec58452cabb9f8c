"""The outbox read and delivered: events, destinations, deliveries and their tries.

Fan-out and claims are safe with several relays: on PostgreSQL the rows are
taken with `FOR UPDATE SKIP LOCKED` (two relays never take the same event or
delivery); on SQLite every write transaction is the single writer's. A claimed
delivery's `next_try_at` is its lease's end: a relay that dies mid-delivery
leaves it due again once the lease ends (at least once).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic

from sqlalchemy import (
    BigInteger,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from antaeus.notify.envelope import StoredEvent
from antaeus.storage.database import Conn, ReadConnection, WriteConnection
from antaeus.storage.tables import delivery_tries, event_deliveries, event_destinations, events


@dataclass(frozen=True, slots=True)
class Destination:
    id: int
    kind: str
    url: str
    event_types: tuple[str, ...] | None  # None: every type
    secret: str | None
    status: str
    failing_since: datetime | None
    disabled_at: datetime | None
    created_at: datetime
    events_since: datetime | None = None  # takes events written from then (None: created_at)

    def takes(self, event_type: str) -> bool:
        return self.event_types is None or event_type in self.event_types

    def takes_written_at(self, written: datetime) -> bool:
        """An event written then goes here (not one written before it existed, or before
        it was enabled again after being retired)."""
        return (self.events_since or self.created_at) <= written


@dataclass(frozen=True, slots=True)
class DestinationBacklog:
    """What the outbox still owes one destination (`GET /rest/v1/status`, the dashboard)."""

    destination: Destination
    undelivered: int
    oldest_event_id: int | None
    oldest_written_at: datetime | None


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery taken by one relay: the event, where it goes, how many tries before."""

    delivery_id: int
    tries: int
    event: StoredEvent
    destination: Destination


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one try of a claimed delivery did."""

    claimed: Claimed
    ok: bool
    http_status: int | None
    error: str | None
    duration_ms: int
    next_try_at: datetime | None  # when not ok
    released: bool = False  # handed back untried (due again at once, no try counted)


@dataclass(frozen=True, slots=True)
class TryRecord:
    id: int
    event_id: int
    tried_at: datetime
    http_status: int | None
    error: str | None
    duration_ms: int
    ok: bool


def _destination(row: Any) -> Destination:
    types = json.loads(row.event_types) if row.event_types is not None else None
    return Destination(
        id=row.id,
        kind=row.kind,
        url=row.url,
        event_types=tuple(types) if types is not None else None,
        secret=row.secret,
        status=row.status,
        failing_since=row.failing_since,
        disabled_at=row.disabled_at,
        created_at=row.created_at,
        events_since=row.events_since,
    )


def _event(row: Any) -> StoredEvent:
    return StoredEvent(
        id=row.id,
        type=row.type,
        invoice_id=row.invoice_id,
        run_id=row.run_id,
        payload=row.payload,
        created_at=row.created_at,
    )


_EVENT_COLUMNS = (
    events.c.id,
    events.c.type,
    events.c.invoice_id,
    events.c.run_id,
    events.c.payload,
    events.c.created_at,
)


#: PostgreSQL: every transaction with a smaller id has ended (committed or not);
#: an event of such a transaction is visible now or never (the events list's horizon)
_HORIZON = cast(cast(func.pg_snapshot_xmin(func.pg_current_snapshot()), Text), BigInteger)

#: an event's place in the PostgreSQL list: the expression its indexes are on (NULL: 0)
_POSITION = func.coalesce(events.c.xact_id, literal_column("0"))

#: a delivery with its destination
_WITH_DESTINATION = event_deliveries.join(
    event_destinations, event_destinations.c.id == event_deliveries.c.destination_id
)
#: not delivered yet, to a destination that is enabled (what keeps an event waiting)
_WAITING = and_(event_deliveries.c.delivered_at.is_(None), event_destinations.c.status == "enabled")


def _due(now: datetime, kinds: Sequence[str]) -> ColumnElement[bool]:
    """Waiting and due now, to a destination of one of `kinds` (what a relay may claim)."""
    return and_(
        _WAITING,
        event_deliveries.c.next_try_at <= now,
        event_destinations.c.kind.in_(list(kinds)),
    )


class EventRepository:
    """Reading the outbox (the events API)."""

    def __init__(self, conn: ReadConnection) -> None:
        self.conn = conn

    async def page(
        self,
        *,
        after: int,
        limit: int,
        type: str | None = None,
        invoice_id: int | None = None,
        settled: bool = True,
    ) -> list[StoredEvent]:
        """Events after `after` (an event id; 0: from the first), oldest first.

        SQLite has one writer at a time, so ids commit in order: by id. On
        PostgreSQL ids are taken when a transaction writes and transactions commit
        in any order, so only events whose transaction ended before every open one
        are listed (`xact_id` below the snapshot's xmin: none can appear before them
        any more), in (xact_id, id) order, and `after` means the position of that
        event in that order. Polling with `after` = the last id seen misses nothing.
        An `after` that is no event (pruned, or never one) lists the events of
        larger ids. `settled=False` (the dashboard, which pages nothing): every
        committed event, by id.
        """
        query = select(*_EVENT_COLUMNS)
        if type is not None:
            query = query.where(events.c.type == type)
        if invoice_id is not None:
            query = query.where(events.c.invoice_id == invoice_id)
        if self.conn.dialect.name != "postgresql" or not settled:
            query = query.where(events.c.id > after).order_by(events.c.id)
        else:
            position = _POSITION
            query = query.where(position < _HORIZON).order_by(position, events.c.id)
            mark = None
            if after:
                mark = await self.conn.scalar(select(position).where(events.c.id == after))
            if mark is not None:
                query = query.where(
                    tuple_(position, events.c.id)
                    > tuple_(literal(mark, BigInteger), literal(after, BigInteger))
                )
            else:
                query = query.where(events.c.id > after)
        rows = await self.conn.execute(query.limit(limit))
        return [_event(r) for r in rows]

    async def get(self, event_id: int) -> StoredEvent | None:
        """The event, once listed (on PostgreSQL: once its transaction is below the horizon)."""
        query = select(*_EVENT_COLUMNS).where(events.c.id == event_id)
        if self.conn.dialect.name == "postgresql":
            query = query.where(_POSITION < _HORIZON)
        row = (await self.conn.execute(query)).first()
        return _event(row) if row is not None else None

    async def long_transactions(self, older_than: timedelta) -> list[Any]:
        """PostgreSQL: transactions holding a transaction id open longer than `older_than`
        (they hold the events list's horizon back): pid, xact_start, seconds, state,
        application_name. Other roles' sessions show only as far as this role may see."""
        if self.conn.dialect.name != "postgresql":
            return []
        rows = await self.conn.execute(
            text(
                "SELECT pid, xact_start, state, application_name,"
                " EXTRACT(EPOCH FROM clock_timestamp() - xact_start)::float8 AS seconds"
                " FROM pg_stat_activity"
                " WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()"
                " AND xact_start < clock_timestamp() - make_interval(secs => :limit)"
                " ORDER BY xact_start"
            ),
            {"limit": older_than.total_seconds()},
        )
        return list(rows)

    async def work_waiting(self, now: datetime, kinds: Sequence[str]) -> tuple[bool, bool]:
        """(an event waits to be fanned out, a delivery to `kinds` is due): a cheap read, so
        that an idle relay takes no write lock."""
        unfanned = await self.conn.scalar(
            select(events.c.id).where(events.c.fanned_out_at.is_(None)).limit(1)
        )
        due = None
        if kinds:
            due = await self.conn.scalar(
                select(event_deliveries.c.id)
                .select_from(_WITH_DESTINATION)
                .where(_due(now, kinds))
                .limit(1)
            )
        return unfanned is not None, due is not None

    async def pending_count(self) -> int:
        """Deliveries not yet made, and events not yet fanned out."""
        waiting = await self.conn.scalar(
            select(func.count())
            .select_from(event_deliveries)
            .where(event_deliveries.c.delivered_at.is_(None))
        )
        unfanned = await self.conn.scalar(
            select(func.count()).select_from(events).where(events.c.fanned_out_at.is_(None))
        )
        return int(waiting or 0) + int(unfanned or 0)

    async def oldest_undelivered(self) -> datetime | None:
        """When the oldest event still waiting for a delivery (or its fan-out) was written."""
        fan = await self.conn.scalar(
            select(func.min(events.c.created_at)).where(events.c.fanned_out_at.is_(None))
        )
        pending = await self.conn.scalar(
            select(func.min(events.c.created_at))
            .select_from(_WITH_DESTINATION.join(events, events.c.id == event_deliveries.c.event_id))
            .where(_WAITING)
        )
        found = [m for m in (fan, pending) if m is not None]
        return min(found) if found else None

    async def backlog(self) -> tuple[list[DestinationBacklog], int, datetime | None]:
        """Per destination, its undelivered deliveries and the oldest of their events; and
        the events not fanned out yet (how many, the oldest's time)."""
        per = {
            r.destination_id: (int(r.n), r.oldest)
            for r in await self.conn.execute(
                select(
                    event_deliveries.c.destination_id,
                    func.count().label("n"),
                    func.min(event_deliveries.c.event_id).label("oldest"),
                )
                .where(event_deliveries.c.delivered_at.is_(None))
                .group_by(event_deliveries.c.destination_id)
            )
        }
        oldest_ids = [oldest for _, oldest in per.values()]
        written: dict[int, datetime] = {}
        if oldest_ids:
            rows = await self.conn.execute(
                select(events.c.id, events.c.created_at).where(events.c.id.in_(oldest_ids))
            )
            written = {r.id: r.created_at for r in rows}
        found = []
        for d in await DestinationRepository(self.conn).all():
            n, oldest = per.get(d.id, (0, None))
            found.append(DestinationBacklog(d, n, oldest, written.get(oldest) if oldest else None))
        unfanned = await self.conn.execute(
            select(func.count(), func.min(events.c.created_at)).where(
                events.c.fanned_out_at.is_(None)
            )
        )
        count, since = unfanned.one()
        return found, int(count or 0), since


_AMQP_ROW_LOCK = 0x616E7461_65757301  # "antaeus" + 1: making the broker's destination row


class DestinationRepository(Generic[Conn]):
    """Webhook endpoints (and the broker's one row)."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def create(
        self: DestinationRepository[WriteConnection],
        kind: str,
        url: str,
        event_types: Sequence[str] | None,
        secret: str | None,
        now: datetime,
    ) -> Destination:
        types = json.dumps(list(event_types)) if event_types is not None else None
        new_id = await self.conn.scalar(
            insert(event_destinations)
            .values(
                kind=kind,
                url=url,
                event_types=types,
                secret=secret,
                status="enabled",
                created_at=now,
                updated_at=now,
            )
            .returning(event_destinations.c.id)
        )
        found = await self.get(int(new_id))
        assert found is not None  # just inserted, in this transaction
        return found

    async def get(self, destination_id: int, kind: str | None = None) -> Destination | None:
        query = select(event_destinations).where(event_destinations.c.id == destination_id)
        if kind is not None:
            query = query.where(event_destinations.c.kind == kind)
        row = (await self.conn.execute(query)).first()
        return _destination(row) if row is not None else None

    async def page(self, kind: str, *, after: int, limit: int) -> list[Destination]:
        rows = await self.conn.execute(
            select(event_destinations)
            .where(event_destinations.c.kind == kind, event_destinations.c.id > after)
            .order_by(event_destinations.c.id)
            .limit(limit)
        )
        return [_destination(r) for r in rows]

    async def all(self) -> list[Destination]:
        rows = await self.conn.execute(select(event_destinations).order_by(event_destinations.c.id))
        return [_destination(r) for r in rows]

    async def ensure_amqp(
        self: DestinationRepository[WriteConnection], url: str, now: datetime
    ) -> Destination:
        """The broker's row (one, whatever the URL: the broker is a setting).

        Relays starting together must not each make one (every event would be
        published once per row): on PostgreSQL they take turns on an advisory lock
        held to the end of the transaction; on SQLite the single writer does that.
        """
        if self.conn.dialect.name == "postgresql":
            await self.conn.execute(select(func.pg_advisory_xact_lock(_AMQP_ROW_LOCK)))
        row = (
            await self.conn.execute(
                select(event_destinations).where(event_destinations.c.kind == "amqp")
            )
        ).first()
        if row is not None:
            if row.status == "retired":
                # enabled again for the events written from now on: what waited when it
                # was retired is not sent (a flood of old events nobody expects)
                await self.conn.execute(
                    update(event_destinations)
                    .where(event_destinations.c.id == row.id)
                    .values(
                        url=url,
                        status="enabled",
                        events_since=now,
                        failing_since=None,
                        disabled_at=None,
                        updated_at=now,
                    )
                )
                await self.conn.execute(
                    delete(event_deliveries).where(
                        event_deliveries.c.destination_id == row.id,
                        event_deliveries.c.delivered_at.is_(None),
                    )
                )
            elif row.url != url:
                await self.conn.execute(
                    update(event_destinations)
                    .where(event_destinations.c.id == row.id)
                    .values(url=url, updated_at=now)
                )
            found = await self.get(row.id)
            assert found is not None
            return found
        return await self.create("amqp", url, None, None, now)

    async def retire_amqp(
        self: DestinationRepository[WriteConnection], now: datetime
    ) -> Destination | None:
        """Retire the broker's row (a relay without ANTAEUS_AMQP_URL); answers it if it was
        enabled or disabled until now. A retired destination gets no new deliveries, and the
        ones it had never keep their events past the retention."""
        if self.conn.dialect.name == "postgresql":
            await self.conn.execute(select(func.pg_advisory_xact_lock(_AMQP_ROW_LOCK)))
        retired = await self.conn.execute(
            update(event_destinations)
            .where(
                event_destinations.c.kind == "amqp",
                event_destinations.c.status.in_(("enabled", "disabled")),
            )
            .values(status="retired", disabled_at=now, updated_at=now)
            .returning(event_destinations.c.id)
        )
        found = retired.first()
        return await self.get(found.id) if found is not None else None

    async def delete(
        self: DestinationRepository[WriteConnection], destination_id: int, kind: str
    ) -> bool:
        gone = await self.conn.execute(
            delete(event_destinations).where(
                event_destinations.c.id == destination_id, event_destinations.c.kind == kind
            )
        )
        if gone.rowcount:
            await self.conn.execute(
                delete(event_deliveries).where(event_deliveries.c.destination_id == destination_id)
            )
            await self.conn.execute(
                delete(delivery_tries).where(delivery_tries.c.destination_id == destination_id)
            )
        return bool(gone.rowcount)

    async def enable(
        self: DestinationRepository[WriteConnection], destination_id: int, kind: str, now: datetime
    ) -> Destination | None:
        """Enabled again by a person: its waiting deliveries are due now, tries counted anew."""
        done = await self.conn.execute(
            update(event_destinations)
            .where(event_destinations.c.id == destination_id, event_destinations.c.kind == kind)
            .values(status="enabled", failing_since=None, disabled_at=None, updated_at=now)
        )
        if not done.rowcount:
            return None
        await self.conn.execute(
            update(event_deliveries)
            .where(
                event_deliveries.c.destination_id == destination_id,
                event_deliveries.c.delivered_at.is_(None),
            )
            .values(tries=0, next_try_at=now, lease_owner=None)
        )
        return await self.get(destination_id)

    async def tries(self, destination_id: int, *, after: int, limit: int) -> list[TryRecord]:
        """Its tries, newest first (`after`: older than this try id; 0 from the newest)."""
        query = select(delivery_tries).where(delivery_tries.c.destination_id == destination_id)
        if after:
            query = query.where(delivery_tries.c.id < after)
        rows = await self.conn.execute(query.order_by(delivery_tries.c.id.desc()).limit(limit))
        return [
            TryRecord(
                id=r.id,
                event_id=r.event_id,
                tried_at=r.tried_at,
                http_status=r.http_status,
                error=r.error,
                duration_ms=r.duration_ms,
                ok=bool(r.ok),
            )
            for r in rows
        ]


class DeliveryRepository:
    """The relay's statements: fan out, claim, record, prune (all of them write)."""

    def __init__(self, conn: WriteConnection) -> None:
        self.conn = conn
        self.is_pg = conn.dialect.name == "postgresql"
        self._destinations: dict[int, Destination] | None = None

    async def _all_destinations(self, fresh: bool = False) -> dict[int, Destination]:
        """Every destination, read once per transaction (a round fans out and claims)."""
        if self._destinations is None or fresh:
            found = await DestinationRepository(self.conn).all()
            self._destinations = {d.id: d for d in found}
        return self._destinations

    async def fan_out(self, now: datetime, limit: int) -> int:
        """Make the deliveries of up to `limit` events not yet fanned out; answers how many."""
        query = (
            select(events.c.id, events.c.type, events.c.created_at)
            .where(events.c.fanned_out_at.is_(None))
            .order_by(events.c.id)
            .limit(limit)
        )
        if self.is_pg:
            query = query.with_for_update(skip_locked=True)
        taken = (await self.conn.execute(query)).all()
        if not taken:
            return 0
        destinations = [
            d
            for d in (await self._all_destinations()).values()
            if d.status not in ("deleted", "retired")
        ]
        rows = [
            {"event_id": e.id, "destination_id": d.id, "tries": 0, "next_try_at": now}
            for e in taken
            for d in destinations
            if d.takes(e.type) and d.takes_written_at(e.created_at)
        ]
        if rows:
            await self.conn.execute(insert(event_deliveries), rows)
        await self.conn.execute(
            update(events).where(events.c.id.in_([e.id for e in taken])).values(fanned_out_at=now)
        )
        return len(taken)

    async def claim(
        self,
        owner: str,
        kinds: Sequence[str],
        now: datetime,
        lease: timedelta,
        limit: int,
        exclude: Sequence[int] = (),
        per_destination: int | None = None,
        inflight: Mapping[int, int] | None = None,
    ) -> list[Claimed]:
        """Take up to `limit` due deliveries to enabled destinations of `kinds`.

        With `per_destination` (and the tries `inflight` per destination), destinations
        already at it are skipped and `limit` is at most the free slots of the others:
        a relay never claims many rows only to hand most of them back.
        """
        destinations = await self._all_destinations()
        skip = set(exclude)
        if per_destination is not None:
            busy = inflight or {}
            free = 0
            for d in destinations.values():
                if d.status != "enabled" or d.kind not in kinds or d.id in skip:
                    continue
                slots = per_destination - busy.get(d.id, 0)
                if slots <= 0:
                    skip.add(d.id)
                free += max(0, slots)
            limit = min(limit, free)
        if limit <= 0:
            return []
        query = (
            select(
                event_deliveries.c.id.label("delivery_id"),
                event_deliveries.c.tries,
                event_deliveries.c.destination_id,
                *_EVENT_COLUMNS,
            )
            .select_from(_WITH_DESTINATION.join(events, events.c.id == event_deliveries.c.event_id))
            .where(_due(now, kinds))
            .order_by(event_deliveries.c.next_try_at)
            .limit(limit)
        )
        if skip:
            query = query.where(event_deliveries.c.destination_id.not_in(sorted(skip)))
        if self.is_pg:
            query = query.with_for_update(of=event_deliveries, skip_locked=True)
        rows = (await self.conn.execute(query)).all()
        if not rows:
            return []
        await self.conn.execute(
            update(event_deliveries)
            .where(event_deliveries.c.id.in_([r.delivery_id for r in rows]))
            .values(lease_owner=owner, next_try_at=now + lease)
        )
        missing = {r.destination_id for r in rows} - set(destinations)
        if missing:  # made since we looked (by another relay's transaction)
            destinations = await self._all_destinations(fresh=True)
        return [
            Claimed(r.delivery_id, r.tries, _event(r), destinations[r.destination_id])
            for r in rows
            if r.destination_id in destinations
        ]

    async def record(
        self, owner: str, outcomes: Sequence[Outcome], now: datetime, give_up_after: timedelta
    ) -> list[Destination]:
        """Write what the tries did; answers the webhook destinations disabled by them."""
        if not outcomes:
            return []
        # a few statements per round, whatever the number of tries (not one per try)
        mine = event_deliveries.c.lease_owner == owner
        back = [o.claimed.delivery_id for o in outcomes if o.released]
        done = [o.claimed.delivery_id for o in outcomes if o.ok and not o.released]
        failed = [o for o in outcomes if not o.ok and not o.released]
        if back:
            await self.conn.execute(
                update(event_deliveries)
                .where(event_deliveries.c.id.in_(back), mine)
                .values(lease_owner=None, next_try_at=now)
            )
        if done:
            await self.conn.execute(
                update(event_deliveries)
                .where(event_deliveries.c.id.in_(done), mine)
                .values(
                    delivered_at=now,
                    lease_owner=None,
                    tries=event_deliveries.c.tries + 1,
                    last_error=None,
                )
            )
        if failed:
            await self.conn.execute(
                update(event_deliveries)
                .where(event_deliveries.c.id == bindparam("b_id"), mine)
                .values(
                    lease_owner=None,
                    tries=bindparam("b_tries"),
                    next_try_at=bindparam("b_next"),
                    last_error=bindparam("b_error"),
                ),
                [
                    {
                        "b_id": o.claimed.delivery_id,
                        "b_tries": o.claimed.tries + 1,
                        "b_next": o.next_try_at or now,
                        "b_error": o.error,
                    }
                    for o in failed
                ],
            )
        outcomes = [o for o in outcomes if not o.released]
        if not outcomes:
            return []
        await self.conn.execute(
            insert(delivery_tries),
            [
                {
                    "destination_id": o.claimed.destination.id,
                    "event_id": o.claimed.event.id,
                    "tried_at": now,
                    "http_status": o.http_status,
                    "error": o.error,
                    "duration_ms": o.duration_ms,
                    "ok": 1 if o.ok else 0,
                }
                for o in outcomes
            ],
        )
        ok_ids = {o.claimed.destination.id for o in outcomes if o.ok}
        failed_ids = {o.claimed.destination.id for o in outcomes if not o.ok} - ok_ids
        if ok_ids:
            await self.conn.execute(
                update(event_destinations)
                .where(event_destinations.c.id.in_(ok_ids))
                .values(failing_since=None)
            )
        if not failed_ids:
            return []
        await self.conn.execute(
            update(event_destinations)
            .where(
                event_destinations.c.id.in_(failed_ids),
                event_destinations.c.failing_since.is_(None),
            )
            .values(failing_since=now)
        )
        disabled = await self.conn.execute(
            update(event_destinations)
            .where(
                event_destinations.c.id.in_(failed_ids),
                event_destinations.c.kind == "webhook",
                event_destinations.c.status == "enabled",
                event_destinations.c.failing_since <= now - give_up_after,
            )
            .values(status="disabled", disabled_at=now, updated_at=now)
            .returning(event_destinations.c.id)
        )
        ids = [r.id for r in disabled]
        return [d for d in await DestinationRepository(self.conn).all() if d.id in ids]

    async def prune(self, before: datetime, limit: int) -> int:
        """Delete events older than `before` that are delivered everywhere they go.

        A delivery still waiting for a disabled endpoint does not keep its event
        past the retention: that endpoint gets the events of the last
        ANTAEUS_EVENT_RETENTION when it is enabled again. Nor does one waiting for
        the retired broker (enabled again, it takes only new events).
        """
        waiting = exists(
            select(event_deliveries.c.id)
            .select_from(_WITH_DESTINATION)
            .where(event_deliveries.c.event_id == events.c.id, _WAITING)
        )
        old = (
            select(events.c.id)
            .where(events.c.created_at < before, events.c.fanned_out_at.is_not(None), ~waiting)
            .order_by(events.c.id)
            .limit(limit)
        )
        ids = [r.id for r in await self.conn.execute(old)]
        if not ids:
            return 0
        await self.conn.execute(
            delete(event_deliveries).where(event_deliveries.c.event_id.in_(ids))
        )
        await self.conn.execute(delete(delivery_tries).where(delivery_tries.c.event_id.in_(ids)))
        await self.conn.execute(delete(events).where(events.c.id.in_(ids)))
        return len(ids)
