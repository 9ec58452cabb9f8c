"""Retries against a server that drops connections, and a retried create made once.

A small proxy stands between the client and a real `antaeus serve`: for each
request it follows its plan (`drop`: close before forwarding; `lose`: forward,
let the server act, then close without answering; `503`/`429`: answer that
itself, with `Retry-After`; otherwise pass the answer back) and records what it
saw, so a test can tell how often the client sent and with which key.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from antaeus.client import (
    ApiConnectionError,
    ApiTimeoutError,
    AsyncClient,
    Client,
    RateLimitError,
    ServerError,
)
from tests.client.conftest import Served

_HOP = {"host", "connection", "content-length", "keep-alive", "transfer-encoding"}


@dataclass
class Seen:
    method: str
    path: str
    key: str | None
    action: str
    replayed: bool = False


@dataclass
class Proxy:
    upstream: str
    plan: list[str] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    retry_after: str = "0"
    base_url: str = ""


def _read_request(conn: socket.socket) -> tuple[str, str, dict[str, str], bytes] | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return method, target, headers, body


def _answer(conn: socket.socket, status: int, headers: dict[str, str], body: bytes) -> None:
    lines = [f"HTTP/1.1 {status} X"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in _HOP]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    conn.sendall("\r\n".join(lines).encode("latin-1") + body)


@pytest.fixture
def proxy(served: Served) -> Iterator[Proxy]:
    state = Proxy(served.base_url)
    upstream = httpx.Client(base_url=served.base_url, timeout=30)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            conn: socket.socket = self.request
            request = _read_request(conn)
            if request is None:
                return
            method, target, headers, body = request
            action = state.plan.pop(0) if state.plan else "pass"
            seen = Seen(method, target, headers.get("idempotency-key"), action)
            state.seen.append(seen)
            if action == "drop":
                return  # closed before the server saw anything
            if action in ("503", "429"):
                _answer(
                    conn,
                    int(action),
                    {"Content-Type": "application/json", "Retry-After": state.retry_after},
                    b'{"error":"unavailable","message":"try again"}',
                )
                return
            sent = {k: v for k, v in headers.items() if k not in _HOP}
            response = upstream.request(method, target, headers=sent, content=body)
            seen.replayed = response.headers.get("idempotent-replayed") == "true"
            if action == "lose":
                return  # the server acted; its answer never reaches the client
            _answer(conn, response.status_code, dict(response.headers), response.content)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        upstream.close()


def _customer_ids(served: Served) -> set[int]:
    with Client(base_url=served.base_url, token=served.token) as direct:
        return {c.id for c in direct.customers.list()}


def test_a_create_whose_answers_are_lost_is_retried_and_made_once(
    proxy: Proxy, served: Served
) -> None:
    before = _customer_ids(served)
    proxy.plan = ["lose", "drop", "lose"]
    with Client(
        base_url=proxy.base_url, token=served.token, max_retries=3, retry_backoff=0.01
    ) as api:
        made = api.customers.create(currency="EUR", timezone="Europe/Berlin")
    assert [s.action for s in proxy.seen] == ["lose", "drop", "lose", "pass"]
    keys = {s.key for s in proxy.seen}
    assert len(keys) == 1
    assert next(iter(keys)) is not None  # a key the client made, the same on every send
    assert [s.replayed for s in proxy.seen] == [False, False, True, True]
    assert _customer_ids(served) - before == {made.id}  # one customer, whatever was lost


def test_reads_are_retried_too_and_503_429_honour_retry_after(proxy: Proxy, served: Served) -> None:
    proxy.plan = ["drop", "503", "429"]
    proxy.retry_after = "1"
    with Client(
        base_url=proxy.base_url, token=served.token, max_retries=3, retry_backoff=0.01
    ) as api:
        started = time.monotonic()
        assert api.health()
        waited = time.monotonic() - started
    assert [s.action for s in proxy.seen] == ["drop", "503", "429", "pass"]
    assert waited >= 2.0, "Retry-After: 1 was asked twice"
    assert all(s.key is None for s in proxy.seen)  # a read sends no key


def test_when_retries_run_out_the_last_error_is_raised(proxy: Proxy, served: Served) -> None:
    with Client(
        base_url=proxy.base_url, token=served.token, max_retries=2, retry_backoff=0.01
    ) as api:
        proxy.plan = ["503"] * 3
        with pytest.raises(ServerError) as unavailable:
            api.customers.list().__next__()
        assert unavailable.value.status == 503
        assert len(proxy.seen) == 3
        api.max_retries = 0
        proxy.plan = ["429"]
        with pytest.raises(RateLimitError):
            api.billing.status()
        proxy.plan = ["lose"]
        with pytest.raises(ApiConnectionError) as lost:
            api.customers.create(currency="EUR", idempotency_key="mine-1")
        assert not isinstance(lost.value, ApiTimeoutError)
        assert isinstance(lost.value.__cause__, httpx.TransportError)
        # the server made it: the same key again answers that customer, and makes no other
        before = _customer_ids(served)
        again = api.customers.create(currency="EUR", idempotency_key="mine-1")
        assert again.id in before
        assert _customer_ids(served) == before


async def test_the_async_client_retries_a_lost_create_once(proxy: Proxy, served: Served) -> None:
    before = _customer_ids(served)
    proxy.plan = ["lose", "503"]
    async with AsyncClient(
        base_url=proxy.base_url, token=served.token, max_retries=2, retry_backoff=0.01
    ) as api:
        made = await api.customers.create(currency="DKK")
    assert len({s.key for s in proxy.seen}) == 1
    assert _customer_ids(served) - before == {made.id}


def test_a_refused_connection_is_a_connection_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nobody listens there
    api = Client(base_url=f"http://127.0.0.1:{port}", max_retries=1, retry_backoff=0.01)
    with api, pytest.raises(ApiConnectionError) as refused:
        api.health()
    assert not isinstance(refused.value, ApiTimeoutError)
    assert isinstance(refused.value.__cause__, httpx.ConnectError)


def test_no_answer_in_time_is_a_timeout_error() -> None:
    with socket.socket() as silent:  # accepts (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        with Client(
            base_url=f"http://127.0.0.1:{port}", timeout=0.3, max_retries=1, retry_backoff=0.01
        ) as api:
            started = time.monotonic()
            with pytest.raises(ApiTimeoutError):
                api.health()
        assert time.monotonic() - started < 5
