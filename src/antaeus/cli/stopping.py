"""Graceful stops for the long-running commands (`serve`, `worker`, `bill`).

SIGINT (Ctrl-C) and SIGTERM ask for a graceful stop: the calls in flight are
finished and recorded, invoices claimed ahead are handed back unsent, then the
command prints one line saying so (`stopped_line`) and nothing else: no
traceback, no "Exception closing connection" from a pool cancelled mid-close.

The signals are handled on the event loop (`loop.add_signal_handler`), so no
`KeyboardInterrupt` or cancellation ever reaches the code that is closing
connections; a second signal while stopping only says what the stop waits for.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from antaeus.cli.common import err

if TYPE_CHECKING:
    from antaeus.billing.worker import WorkerStats

SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)

# An outcome's name as a person reads it in the stop line.
_OUTCOME_WORDS: Final = {"charged": "paid"}


class GracefulStop:
    """The stop requested by a signal: `event` is set on the first one."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.signal: int | None = None
        self._listeners: list[Callable[[int], None]] = []

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self._received, sig)

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)

    def listen(self, listener: Callable[[int], None]) -> None:
        """Also call `listener(sig)` on every signal (uvicorn's own exit handling)."""
        self._listeners.append(listener)

    def request(self, sig: int) -> None:
        """A stop as if `sig` had been received (a supervised worker whose parent is gone)."""
        if not self.event.is_set():
            self._received(sig)

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def _received(self, sig: int) -> None:
        again = self.event.is_set()
        if not again:
            self.signal = sig
            self.event.set()
        for listener in self._listeners:
            listener(sig)
        if again:
            err.print(
                "still stopping: finishing the calls in flight (each ends within "
                "ANTAEUS_PAYMENT_PROVIDER_TIMEOUT); nothing is lost by waiting",
                highlight=False,
                soft_wrap=True,
            )


def _outcomes(stats: WorkerStats) -> str:
    parts = [
        f"{n:,} {_OUTCOME_WORDS.get(name, name.replace('_', ' '))}"
        for name, n in sorted(stats.by_outcome.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return f" ({', '.join(parts)})" if parts else ""


def stopped_line(stats: WorkerStats | None, run: str = "") -> str:
    """The one line a graceful stop prints: what was finished and what was handed back."""
    if stats is None:
        return f"stopped{run}: this process does not charge (--no-worker)"
    handed = stats.handed_back
    back = (
        f"handed back {handed:,} claimed invoice{'s' if handed != 1 else ''} unsent"
        if handed
        else "handed back nothing"
    )
    unrecorded = (
        f"; {stats.unrecordable:,} answer{'s' if stats.unrecordable != 1 else ''} could not be "
        "recorded (charged again with the same key)"
        if stats.unrecordable
        else ""
    )
    return (
        f"stopped{run}: every call in flight finished; "
        f"{stats.recorded:,} answer{'s' if stats.recorded != 1 else ''} recorded "
        f"since start{_outcomes(stats)}; {back}{unrecorded}"
    )
