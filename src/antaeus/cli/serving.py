"""`StoppableServer`: uvicorn's server under a `GracefulStop` (apart, so that only
`antaeus serve` imports uvicorn)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Generator

import uvicorn

from antaeus.cli.stopping import GracefulStop


class StoppableServer(uvicorn.Server):
    """uvicorn's server, stopped by a `GracefulStop` rather than by its own signal handlers.

    uvicorn re-raises the signal it caught once it has shut down, which cancels
    whatever the process is still closing (the database pool) and prints a
    traceback; and it logs four lines on the way out. Here the signal is the
    stop's, nothing is re-raised, and uvicorn says nothing once a stop began.
    """

    def __init__(self, config: uvicorn.Config, stop: GracefulStop) -> None:
        super().__init__(config)
        self._stop = stop
        stop.listen(self._on_signal)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if self._stop.requested:  # a signal came while starting: do not start serving
            self.should_exit = True
        yield

    def _on_signal(self, sig: int) -> None:
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        self.handle_exit(sig, None)
