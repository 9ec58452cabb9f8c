"""Several charging worker processes under one parent (`--processes N`, `serve --workers N`).

The parent starts each child by running this same program again
(`python -m antaeus worker --processes 1 ...`) with `subprocess`, so a child
inherits nothing but its standard streams and one end of a socket pair: no
listening socket, no database connection, no event loop state.

The socket pair (fd number in `ANTAEUS_SUPERVISOR_FD`) carries two things:

- the lifeline: the child watches its end and stops gracefully when it reads
  end-of-file, i.e. when the parent is gone (even SIGKILLed), so no worker
  outlives its supervisor;
- the report: at its graceful stop the child writes one JSON line of its
  `WorkerStats` there and prints no stop line of its own; the parent adds
  the children's figures up into the one line it prints.

With a metrics directory (`serve --workers N`, `worker --processes N
--metrics-port P`; antaeus.observability.multiprocess) the children get it in
their environment and write their Prometheus metrics there, for the parent to
add up; when a child exits its live gauges are dropped, its counters stay.

Children run in their own session, so a Ctrl-C at the terminal reaches only
the parent, which sends every child SIGTERM once. A child that dies
while the parent is not stopping is restarted after a backoff (with a log
line); `MAX_CRASHES` deaths within `CRASH_WINDOW_SECONDS` make the parent give
up: it stops the others gracefully and exits 1 with an error. The invoices a
killed child had claimed are claimed again when their leases end, by any
process (the existing design; nothing here tracks them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Final

import structlog

from antaeus.config import normalize_database_url
from antaeus.observability.multiprocess import MULTIPROC_DIR_ENV, mark_process_dead

if TYPE_CHECKING:
    # not at run time: importing the worker imports prometheus_client, and a parent
    # may still have to choose its metrics mode (antaeus.observability.multiprocess)
    from antaeus.billing.worker import WorkerStats

log = structlog.get_logger("antaeus.supervisor")

SUPERVISOR_FD_ENV: Final = "ANTAEUS_SUPERVISOR_FD"
MAX_CRASHES: Final = 5
CRASH_WINDOW_SECONDS: Final = 60.0
BACKOFF_FIRST_SECONDS: Final = 0.5
BACKOFF_MAX_SECONDS: Final = 10.0


def cores() -> int:
    """The cores this process may use (`os.process_cpu_count()` from 3.13 on)."""
    counter: Callable[[], int | None] = getattr(os, "process_cpu_count", os.cpu_count)
    return max(1, counter() or 1)


def default_processes(database_url: str) -> int:
    """How many worker processes `--processes` / `--workers` mean when not given.

    PostgreSQL: one per core (claims with SKIP LOCKED, writers in parallel).
    SQLite: one. The file has one writer at a time, so N processes take turns
    at every claim and record (across processes they wait in SQLite's busy
    handler, which sleeps up to 100 ms a try); measured with
    `benchmarks/billing_run.py --processes`, a second process on one file
    gained nothing beyond the noise (README, Performance). More is safe: ask
    for it explicitly.
    """
    if normalize_database_url(database_url).startswith("sqlite"):
        return 1
    return cores()


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited {code}"


def add_stats(total: WorkerStats, more: WorkerStats) -> None:
    total.claimed += more.claimed
    total.recorded += more.recorded
    total.lost_leases += more.lost_leases
    total.released += more.released
    total.handed_back += more.handed_back
    total.unrecordable += more.unrecordable
    for name, n in more.by_outcome.items():
        total.by_outcome[name] = total.by_outcome.get(name, 0) + n


def _no_stats() -> WorkerStats:
    from antaeus.billing.worker import WorkerStats

    return WorkerStats()


def stats_from_json(line: str) -> WorkerStats:
    from antaeus.billing.worker import WorkerStats

    data: dict[str, Any] = json.loads(line)
    return WorkerStats(
        claimed=int(data.get("claimed", 0)),
        recorded=int(data.get("recorded", 0)),
        lost_leases=int(data.get("lost_leases", 0)),
        released=int(data.get("released", 0)),
        handed_back=int(data.get("handed_back", 0)),
        unrecordable=int(data.get("unrecordable", 0)),
        by_outcome={str(k): int(v) for k, v in dict(data.get("by_outcome", {})).items()},
    )


# --- the child's side -------------------------------------------------------------------


class SupervisedChild:
    """This process runs under a supervisor: its lifeline and its report."""

    def __init__(self, fd: int) -> None:
        self._sock = socket.socket(fileno=fd)

    @classmethod
    def from_environment(cls) -> SupervisedChild | None:
        value = os.environ.pop(SUPERVISOR_FD_ENV, None)
        if not value:
            return None
        return cls(int(value))

    def watch_parent(self, on_gone: Callable[[], None]) -> None:
        """Call `on_gone()` once the parent is gone (its end of the pair is closed)."""
        loop = asyncio.get_running_loop()
        fd = self._sock.fileno()

        def readable() -> None:
            try:
                data = self._sock.recv(64)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(fd)
                on_gone()

        self._sock.setblocking(False)
        loop.add_reader(fd, readable)

    def report(self, stats: WorkerStats) -> None:
        """Send this process's figures to the parent (nothing if it is gone)."""
        line = json.dumps(asdict(stats)) + "\n"
        with contextlib.suppress(OSError):
            self._sock.setblocking(True)
            self._sock.sendall(line.encode())
        self._sock.close()


# --- the parent's side ------------------------------------------------------------------


@dataclass
class _Child:
    number: int
    process: subprocess.Popen[bytes]
    sock: socket.socket
    started: float


@dataclass
class Supervisor:
    """Runs `count` copies of `python -m antaeus ARGS` and keeps them running.

    `run(stop)` returns when `stop` is set (after sending every child SIGTERM
    and waiting for them) or when the children crashed too often
    (`failure` then says why). `totals` holds the figures the children reported.
    With `metrics_dir` (this process's multiprocess metrics directory) the
    children write their metrics there, and a child's live gauges are dropped
    when it exits.
    """

    args: list[str]
    count: int
    name: str = "worker"
    metrics_dir: str | None = None
    totals: WorkerStats = field(default_factory=_no_stats)
    failure: str | None = None
    restarts: int = 0
    _children: dict[int, _Child] = field(default_factory=dict)
    _crashes: list[float] = field(default_factory=list)
    _stopping: bool = False
    _started: bool = False

    @property
    def pids(self) -> list[int]:
        return [c.process.pid for c in self._children.values()]

    def _spawn(self, number: int) -> _Child:
        parent_end, child_end = socket.socketpair()
        env = {**os.environ, SUPERVISOR_FD_ENV: str(child_end.fileno())}
        if self.metrics_dir is not None:
            env[MULTIPROC_DIR_ENV] = self.metrics_dir
        try:
            process = subprocess.Popen(  # noqa: S603 (this same program, our own arguments)
                [sys.executable, "-m", "antaeus", *self.args],
                env=env,
                stdin=subprocess.DEVNULL,
                pass_fds=(child_end.fileno(),),  # and nothing else: close_fds is the default
                start_new_session=True,  # a terminal's Ctrl-C reaches the parent only
            )
        finally:
            child_end.close()
        child = _Child(number, process, parent_end, time.monotonic())
        self._children[number] = child
        return child

    def start(self) -> None:
        self._started = True
        for number in range(1, self.count + 1):
            self._spawn(number)

    def forward(self, sig: int) -> None:
        """Ask every child to stop (once); later calls do nothing.

        Whatever the parent received (`sig`), the children get SIGTERM: a child
        still starting (no handler yet) then ends silently, where SIGINT would
        print a KeyboardInterrupt traceback from the middle of its imports.
        """
        del sig
        if self._stopping:
            return
        self._stopping = True
        for child in self._children.values():
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)

    def _collect(self, child: _Child) -> bool:
        """Read what an exited child reported; answers whether it reported."""
        chunks = []
        child.sock.setblocking(True)
        child.sock.settimeout(1.0)
        with contextlib.suppress(OSError):
            while data := child.sock.recv(65536):
                chunks.append(data)
        child.sock.close()
        reported = False
        for line in b"".join(chunks).decode(errors="replace").splitlines():
            if line.strip():
                with contextlib.suppress(ValueError, TypeError):
                    add_stats(self.totals, stats_from_json(line))
                    reported = True
        return reported

    async def run(self, stop: asyncio.Event) -> None:
        if not self._started:
            self.start()
        restart_at: dict[int, float] = {}
        while True:
            if stop.is_set() and not self._stopping:
                self.forward(signal.SIGTERM)
            for number, child in list(self._children.items()):
                code = child.process.poll()
                if code is None:
                    continue
                del self._children[number]
                self._collect(child)
                if self.metrics_dir is not None:
                    mark_process_dead(child.process.pid, self.metrics_dir)
                if self._stopping:
                    continue
                now = time.monotonic()
                self._crashes = [t for t in self._crashes if now - t < CRASH_WINDOW_SECONDS]
                self._crashes.append(now)
                how = _describe_exit(code)
                if len(self._crashes) >= MAX_CRASHES:
                    self.failure = (
                        f"{self.name} processes died {len(self._crashes)} times within "
                        f"{CRASH_WINDOW_SECONDS:g} s (the last, process {number}: {how}); "
                        "giving up (see the lines above for why)"
                    )
                    stop.set()
                    self.forward(signal.SIGTERM)
                    continue
                delay = min(
                    BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (len(self._crashes) - 1)
                )
                log.warning(
                    "worker_process_died",
                    process=number,
                    pid=child.process.pid,
                    how=how,
                    restart_in_seconds=delay,
                )
                restart_at[number] = now + delay
            if not self._stopping:
                now = time.monotonic()
                for number, when in list(restart_at.items()):
                    if now >= when:
                        del restart_at[number]
                        self.restarts += 1
                        child = self._spawn(number)
                        log.warning(
                            "worker_process_restarted", process=number, pid=child.process.pid
                        )
            if self._stopping and not self._children:
                return
            if stop.is_set():
                await asyncio.sleep(0.05)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.1)

    async def aclose(self) -> None:
        """Stop the children that are still running and wait for them (errors, cleanup)."""
        if not self._started:
            return
        stop = asyncio.Event()
        stop.set()
        self.forward(signal.SIGTERM)
        await self.run(stop)
