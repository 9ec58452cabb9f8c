"""The metrics directory of a parent of worker processes (Prometheus multiprocess mode).

`serve --workers N` and `worker --processes N --metrics-port P` call
`start_multiprocess_metrics()` once they know they will start children, and
before anything imports prometheus_client (the client picks its mode, in-memory
or files, when it is imported). This module imports nothing of it.

The directory is fresh (a new temporary directory per parent, so no file of an
earlier run, or of another parent, is ever added in), the children get it in
their environment from the start, and it is removed when the parent exits. While
the parent runs, the files of its exited children stay (their counters and
histograms still count); the supervisor drops only their live gauges
(`mark_process_dead`), the one cleaning the client allows.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from typing import Final

MULTIPROC_DIR_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


class MetricsDirectoryError(Exception):
    """The parent's metrics directory could not be made (the message says what to do)."""


def start_multiprocess_metrics() -> str:
    """Make a fresh directory and put this process (and its children) in multiprocess mode.

    Answers the directory, removed at this process's exit.
    """
    if "prometheus_client" in sys.modules:  # a bug in the command's import order
        raise RuntimeError(
            "prometheus_client was imported before the metrics directory was chosen: "
            "this process's metrics would not reach it"
        )
    try:
        path = tempfile.mkdtemp(prefix="antaeus-metrics-")
    except OSError as exc:
        raise MetricsDirectoryError(
            f"cannot make a metrics directory in {tempfile.gettempdir()}: "
            f"{exc.strerror or exc}; point TMPDIR at a writable directory"
        ) from exc
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    os.environ[MULTIPROC_DIR_ENV] = path
    return path


def mark_process_dead(pid: int, path: str) -> None:
    """A child that wrote to `path` exited: drop its live gauges (its counters stay)."""
    from prometheus_client.multiprocess import mark_process_dead as drop_live_gauges

    # prometheus_client.multiprocess has no annotations
    drop_live_gauges(pid, path)  # type: ignore[no-untyped-call]
