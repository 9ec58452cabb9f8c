"""The plumbing the simulators' servers share: answers, bodies, faults, a port, uvicorn.

`simulator_server` (the payment-provider protocol) and `fake_stripe` (Stripe's API)
are plain ASGI apps whose hot paths skip any framework. Both answer JSON with
`respond`, read a bounded body with `read_body`, lose an answer after its status
line with `drop_answer` (uvicorn then drops the connection), and draw their faults
from a seeded `Faults`, so that the same seed gives the same faults. `listen` and
`serve` run either on a port until SIGTERM or SIGINT (`antaeus provider serve`);
`serve_in_thread` runs one in a thread of a test's process, on a free port.

What each server keeps (the simulator's SQLite store, the fake's JSON state), counts
and answers is its own: the two speak different protocols.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # the simulated provider imports this module: nothing more at run time
    import uvicorn
    from starlette.types import ASGIApp, Message, Receive, Send

JSON_CONTENT: Final = (b"content-type", b"application/json")
#: Connections a server's socket queues before it accepts them.
BACKLOG: Final = 2048


class DroppedConnection(Exception):  # noqa: N818 (not an error: a simulated fault)
    """Raised after the status line of a lost answer, so the server drops the connection."""


def check_rate(name: str, rate: float) -> float:
    """`rate`, a share of requests from 0 to 1, or ValueError naming it."""
    if not 0.0 <= rate <= 1.0:  # NaN fails this too
        raise ValueError(f"{name} must be between 0 and 1, not {rate}")
    return rate


class Faults(random.Random):
    """The pseudo-random choices of a server's faults: the same seed, the same faults."""

    def hits(self, rate: float) -> bool:
        """Whether a fault of `rate` (0 to 1) happens now; draws nothing when `rate` is 0."""
        return bool(rate) and self.random() < rate


async def respond(
    send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """A whole JSON answer: `body` with its length, and `headers` after those two."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [JSON_CONTENT, (b"content-length", b"%d" % len(body)), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def drop_answer(send: Send, promised: int = 64) -> None:
    """The status line and headers of an answer whose body never comes: a lost answer."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [JSON_CONTENT, (b"content-length", b"%d" % promised)],
        }
    )
    raise DroppedConnection


async def read_body(
    receive: Receive,
    limit: int,
    refuse: Callable[[str], Exception],
    length: bytes | None = None,
) -> bytes | None:
    """The request body, or None when the client left.

    Past `limit` bytes, or with a malformed Content-Length (`length`, when given: a
    body announced larger than `limit` is refused before it is read), it raises what
    `refuse` makes of the reason.
    """
    if length is not None:
        if not length.isdigit():
            raise refuse("the Content-Length header is malformed")
        if int(length) > limit:
            raise refuse(f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise refuse(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def lifespan(receive: Receive, send: Send) -> None:
    """Answer an ASGI lifespan: nothing to start or stop."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (OSError when it cannot be had)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def base_url(host: str, port: int) -> str:
    """`http://host:port`, an IPv6 address in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _QuietDrops(logging.Filter):
    """Keeps uvicorn from logging each simulated dropped connection as an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedConnection))


_QUIET_DROPS: Final = _QuietDrops()


def _server(app: ASGIApp, log_level: str) -> uvicorn.Server:
    """uvicorn with httptools, no lifespan, no access log and no Server header."""
    import uvicorn

    config = uvicorn.Config(
        app,
        http="httptools",
        loop="uvloop",
        lifespan="off",
        access_log=False,
        log_level=log_level,
        server_header=False,
        backlog=BACKLOG,
    )
    logging.getLogger("uvicorn.error").addFilter(_QUIET_DROPS)  # once: the same filter
    return uvicorn.Server(config)


async def serve(app: ASGIApp, sock: socket.socket) -> None:
    """Serve `app` on `sock` until SIGTERM/SIGINT."""
    await _server(app, "warning").serve(sockets=[sock])


@contextmanager
def serve_in_thread(
    app: Any, host: str = "127.0.0.1", start_timeout: float = 10.0
) -> Iterator[str]:
    """Serve `app` on a free port of `host` in a thread with its own event loop; yield its URL.

    The caller's loop stays the client's alone, as with a provider in another process.
    """
    sock = listen(host, 0)
    port = sock.getsockname()[1]
    server = _server(app, "critical")
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])),
        name=f"simulator-{port}",
        daemon=True,
    )
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            sock.close()
            raise RuntimeError(f"the server on port {port} did not start")
        time.sleep(0.01)
    try:
        yield base_url(host, port)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
