"""The server plumbing the simulators share (`antaeus.simulators.server`)."""

from __future__ import annotations

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from antaeus.simulators.server import (
    Faults,
    base_url,
    check_rate,
    drop_answer,
    read_body,
    respond,
    serve_in_thread,
)


def test_a_fault_of_rate_zero_draws_nothing() -> None:
    """Turning a fault off leaves every other fault's choices as they were."""
    faults, fresh = Faults(7), Faults(7)
    assert not any(faults.hits(0.0) for _ in range(100))
    assert faults.random() == fresh.random()
    assert all(faults.hits(1.0) for _ in range(100))


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_a_rate_outside_0_to_1_is_refused_by_name(rate: float) -> None:
    with pytest.raises(ValueError, match="lost_answer_rate must be between 0 and 1"):
        check_rate("lost_answer_rate", rate)


def test_an_ipv6_host_is_bracketed() -> None:
    assert base_url("::1", 8700) == "http://[::1]:8700"
    assert base_url("127.0.0.1", 8700) == "http://127.0.0.1:8700"


def _receiving(*messages: Message) -> Receive:
    queue = list(messages)

    async def receive() -> Message:
        return queue.pop(0)

    return receive


class _RefusedError(Exception):
    pass


async def test_a_body_is_read_whole_and_bounded() -> None:
    chunks = [{"type": "http.request", "body": b"ab", "more_body": True}]
    body = await read_body(
        _receiving(*chunks, {"type": "http.request", "body": b"cd"}), 4, _RefusedError
    )
    assert body == b"abcd"
    with pytest.raises(_RefusedError, match="larger than 3 bytes"):
        await read_body(
            _receiving(*chunks, {"type": "http.request", "body": b"cd"}), 3, _RefusedError
        )
    with pytest.raises(_RefusedError, match="larger than 3 bytes"):  # announced: refused unread
        await read_body(_receiving(), 3, _RefusedError, length=b"4")
    with pytest.raises(_RefusedError, match="Content-Length header is malformed"):
        await read_body(_receiving(), 3, _RefusedError, length=b"-1")
    assert await read_body(_receiving({"type": "http.disconnect"}), 3, _RefusedError) is None


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["path"] == "/lost":
        await drop_answer(send)
    await respond(send, 201, b'{"ok":true}', [(b"x-extra", b"1")])


def test_a_server_in_a_thread_answers_and_drops_answers() -> None:
    with serve_in_thread(_app) as url:
        answer = httpx.get(f"{url}/ok")
        assert answer.status_code == 201
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["x-extra"] == "1"
        assert answer.json() == {"ok": True}
        with pytest.raises(httpx.RemoteProtocolError):  # the status line, then nothing
            httpx.get(f"{url}/lost")


def test_the_thread_stops_with_the_block() -> None:
    with serve_in_thread(_app) as url:
        pass
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/ok", timeout=2)
