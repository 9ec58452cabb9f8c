"""The billing repository: every statement of the charge flow, in one object.

Split by concern: `runs` (opening and completing runs, events), `charges`
(claims, leases, write-ahead attempts, outcomes), `sweeps` (the scheduler's),
`charging` (pause state and the due backlog).
"""

from __future__ import annotations

from antaeus.storage.database import Conn
from antaeus.storage.repositories.charges import (
    ChargesRepository,
    Claimed,
    LeaseLostError,
    OutcomeRow,
)
from antaeus.storage.repositories.charging import ChargingStateRepository
from antaeus.storage.repositories.runs import RUN_LOCK_ID, RunRow, RunStats
from antaeus.storage.repositories.sweeps import SweepsRepository


class BillingRepository(
    ChargesRepository[Conn], SweepsRepository[Conn], ChargingStateRepository[Conn]
):
    """Runs, charges, sweeps and the charging state on one connection."""


__all__ = [
    "RUN_LOCK_ID",
    "BillingRepository",
    "Claimed",
    "LeaseLostError",
    "OutcomeRow",
    "RunRow",
    "RunStats",
]
