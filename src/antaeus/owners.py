"""Who holds a lease: the owner ids written to the `lease_owner` columns (64 characters).

Every process that claims rows (a charging worker, an outbox relay) names itself
`<host name, at most 32 characters>:<pid>:<role><6 random hex digits>`, at most
32 + 1 + 7 + 1 + 8 + 6 = 55 characters, so that a long host name (cloud machines
have them) can never make a claim fail. An id handed in (tests, benchmarks) is
bounded the same way.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
from typing import Final

OWNER_MAX: Final = 64  # the lease_owner columns (invoices, event_deliveries)
HOST_MAX: Final = 32


def new_owner_id(role: str = "") -> str:
    """A fresh owner id for this process: host (cut), pid, `role` (up to 8) and 6 hex digits."""
    return bounded_owner(
        f"{socket.gethostname()[:HOST_MAX]}:{os.getpid()}:{role[:8]}{secrets.token_hex(3)}"
    )


def bounded_owner(owner: str) -> str:
    """`owner` when it fits the column; else its start and a digest of the whole (distinct)."""
    if len(owner) <= OWNER_MAX:
        return owner
    digest = hashlib.sha256(owner.encode()).hexdigest()[:12]
    return f"{owner[: OWNER_MAX - 13]}~{digest}"
