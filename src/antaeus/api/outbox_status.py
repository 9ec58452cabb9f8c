"""The outbox's part of `GET /rest/v1/status` and of the dashboard's overview.

`relay`: this process's relay (None when it runs none): `running`, or `failing`
when no round has succeeded for a minute (`failingSince`, `lastError`).
`outbox`: per destination (webhooks and the broker), its status and what it is
still owed (`undelivered`, the oldest such event's id and time); and the events
not yet fanned out. A webhook URL is named by its origin only (a URL may hold a
secret); `GET /rest/v1/webhooks/{id}` shows it whole.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from antaeus.exactjson import rfc3339
from antaeus.notify.envelope import event_id
from antaeus.storage.database import ReadConnection
from antaeus.storage.repositories.outbox import EventRepository


def _origin(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def relay_json(relay: Any) -> dict[str, Any] | None:
    """This process's relay, from `app.state.relay` (absent: this process runs none)."""
    if relay is None:
        return None
    health: dict[str, Any] = relay.health()
    return health


async def outbox_json(conn: ReadConnection) -> dict[str, Any]:
    backlog, unfanned, unfanned_since = await EventRepository(conn).backlog()
    return {
        "destinations": [
            {
                "id": b.destination.id,
                "kind": b.destination.kind,
                "origin": _origin(b.destination.url),
                "status": b.destination.status,
                "undelivered": b.undelivered,
                "oldestUndeliveredEventId": (
                    event_id(b.oldest_event_id) if b.oldest_event_id is not None else None
                ),
                "oldestUndeliveredAt": (
                    rfc3339(b.oldest_written_at) if b.oldest_written_at is not None else None
                ),
            }
            for b in backlog
        ],
        "notFannedOut": unfanned,
        "oldestNotFannedOutAt": rfc3339(unfanned_since) if unfanned_since else None,
    }
