"""What a consumer receives: one event as `{"id", "type", "createdAt", "data"}`.

The same object is answered by `GET /rest/v1/events/{id}`, posted to webhooks
and published to the broker, so a consumer can deduplicate by `id` (`evt_…`,
the same across every delivery and every destination).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from antaeus.exactjson import dumps, loads, rfc3339

PREFIX: Final = "evt_"
_ID = re.compile(r"evt_([1-9][0-9]{0,18})")
_MAX_ROW_ID: Final = 2**63 - 1  # a BIGINT: a larger number is no event (and no query)


def event_id(row_id: int) -> str:
    return f"{PREFIX}{row_id}"


def parse_event_id(text: str) -> int | None:
    """The row id of an `evt_…` id; None for anything else."""
    match = _ID.fullmatch(text)
    if match is None or int(match[1]) > _MAX_ROW_ID:
        return None
    return int(match[1])


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of the outbox."""

    id: int
    type: str
    invoice_id: int | None
    run_id: int | None
    payload: str
    created_at: datetime

    def envelope(self) -> dict[str, Any]:
        data = loads(self.payload)
        return {
            "id": event_id(self.id),
            "type": self.type,
            "createdAt": rfc3339(self.created_at),
            "data": data,
        }

    def body(self) -> str:
        """The JSON text delivered (exact decimals, by the API's encoder)."""
        return dumps(self.envelope())
