"""Webhooks never point inside the network, and never show a URL's secrets in logs or errors.

Registration refuses local and private addresses in every spelling (422 naming
`url`, nothing stored); a delivery resolves the name, checks every address
and connects only to those (a name that resolves inside fails with
`private_address` and opens no connection); ANTAEUS_WEBHOOK_ALLOW_PRIVATE=true
allows them. Logs and stored delivery errors name a destination by its id and
origin; the API still shows the whole URL.
"""

from __future__ import annotations

import asyncio
import html
import socket
from collections.abc import AsyncIterator, Callable
from ipaddress import ip_address
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from structlog.testing import capture_logs

from antaeus.clock import ManualClock
from antaeus.config import Settings
from antaeus.notify.addresses import origin, private_reason, redact, url_problem
from antaeus.notify.factory import build_relay
from antaeus.notify.relay import WebhookDestinations
from antaeus.notify.webhooks import WebhookSender, new_secret
from antaeus.storage.database import Database
from antaeus.storage.repositories.outbox import DestinationRepository
from tests.dashboard.test_pages import sign_in
from tests.notify.helpers import Receiver, free_port, webhook_relay
from tests.notify.helpers import write_events as write


@pytest.fixture
def allow() -> bool:
    return False  # ANTAEUS_WEBHOOK_ALLOW_PRIVATE as it is by default; @allow_private: true


@pytest.fixture
def settings(allow: bool, database_url: str) -> Settings:
    return Settings(
        DATABASE_URL=database_url,
        API_TOKEN=None,
        TOKEN_CACHE_SECONDS=0,
        WEBHOOK_ALLOW_PRIVATE=allow,
    )


allow_private = pytest.mark.parametrize("allow", [True], ids=["allow_private"])


# -- the ranges -----------------------------------------------------------------------

# each range of the issue (and the few added: multicast, reserved, deprecated IPv6
# forms): its first, a middle and its last address
PRIVATE = [
    "0.0.0.0", "0.1.2.3", "0.255.255.255",
    "127.0.0.1", "127.0.0.0", "127.255.255.255",
    "10.0.0.0", "10.20.30.40", "10.255.255.255",
    "172.16.0.0", "172.20.1.1", "172.31.255.255",
    "192.168.0.0", "192.168.1.1", "192.168.255.255",
    "100.64.0.0", "100.100.100.100", "100.127.255.255",
    "169.254.0.0", "169.254.169.254", "169.254.255.255",
    "224.0.0.1", "239.255.255.255", "240.0.0.1", "255.255.255.255",
    "::", "::1",
    "fe80::", "fe80::1", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "fc00::", "fd12:3456:789a::1", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "fec0::1", "ff02::1",
    # IPv4-mapped forms of each IPv4 range
    "::ffff:127.0.0.1", "::ffff:0.0.0.0", "::ffff:10.0.0.1", "::ffff:172.16.0.1",
    "::ffff:192.168.0.1", "::ffff:100.64.0.1", "::ffff:169.254.169.254",
    # carried inside IPv6 otherwise: compatible, translated, NAT64, 6to4, Teredo
    "::127.0.0.1", "::ffff:0:7f00:1", "64:ff9b::10.0.0.1", "64:ff9b:1::1",
    "2002:7f00:1::1", "2002:c0a8:101::", "2001:0:4136:e378:8000:63bf:80ff:fffe",
]  # fmt: skip
PUBLIC = [
    "8.8.8.8", "1.1.1.1", "93.184.216.34",
    "1.0.0.0", "9.255.255.255", "11.0.0.0", "126.255.255.255", "128.0.0.0",
    "172.15.255.255", "172.32.0.0", "192.167.255.255", "192.169.0.0",
    "100.63.255.255", "100.128.0.0", "169.253.255.255", "169.255.0.0",
    "223.255.255.255",
    "2606:4700::1", "2001:4860:4860::8888", "2a00:1450:4001:800::200e",
    "fbff:ffff::1", "fe7f::1",
    "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
]  # fmt: skip


@pytest.mark.parametrize("address", PRIVATE)
def test_every_listed_range_is_private(address: str) -> None:
    assert private_reason(ip_address(address)) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert private_reason(ip_address(address)) is None


# -- registration ---------------------------------------------------------------------

REFUSED = [
    # loopback, "this network", unspecified
    "http://127.0.0.1/hook", "http://127.0.0.1:8080/hook", "https://127.200.1.1/",
    "http://0.0.0.0:7000/", "http://0/", "http://[::1]/", "http://[::]:80/",
    # RFC 1918, shared, link-local and metadata
    "http://10.0.0.5/", "http://172.16.3.4/", "http://172.31.255.254/", "http://192.168.1.1/",
    "http://100.64.0.1/", "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/", "http://[fd00::1]/", "http://[fc00::1]/",
    # names of this machine
    "http://localhost/", "http://LOCALHOST:7000/", "http://localhost./", "http://api.localhost/",
    "http://ip6-localhost/", "http://ｌｏｃａｌｈｏｓｔ/",
    # other spellings of 127.0.0.1
    "http://2130706433/", "http://0x7f.1/", "http://0x7f000001/", "http://017700000001/",
    "http://0177.0.0.1/", "http://127.1/", "http://127.0.1/", "http://127.0.0.1./",
    "http://①②⑦.0.0.1/",
    # IPv6 forms: mapped (both spellings), zone ids, 6to4, NAT64
    "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/", "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:10.0.0.1]/", "http://[fe80::1%25eth0]/", "http://[2002:7f00:1::1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    # user info does not change the host
    "http://hooks.example.com@127.0.0.1/", "http://good.example.com:x@10.0.0.1/",
    # parsers that disagree about where the host is: every reading is checked
    "http://hooks.example.com\\@127.0.0.1/", "http://127.0.0.1#@hooks.example.com/",
    "http://127.0.0.1?@hooks.example.com/",
]  # fmt: skip


@pytest.mark.parametrize("url", REFUSED)
async def test_registration_refuses_local_and_private_addresses(
    client: httpx.AsyncClient, url: str
) -> None:
    answer = await client.post("/rest/v1/webhooks", json={"url": url})
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["field"] == "url"
    assert body["error"] == "validation_error"
    assert (await client.get("/rest/v1/webhooks")).json() == []


@pytest.mark.parametrize(
    "url",
    [
        "https://8.8.8.8/hook",
        "https://[2606:4700::1]/hook",
        "https://hooks.example.com/antaeus",
        "https://hooks.slack.com/services/T000/B000/XXXX",
        "http://172.32.0.1:8080/",
        "https://[::ffff:8.8.8.8]/",
    ],
)
async def test_registration_takes_public_addresses_and_names(
    client: httpx.AsyncClient, url: str
) -> None:
    answer = await client.post("/rest/v1/webhooks", json={"url": url})
    assert answer.status_code == 201, answer.text
    assert answer.json()["url"] == url


@allow_private
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]:9/",
        "http://10.0.0.5/",
        "http://receiver:8000/hook",
        "http://[fe80::1%25eth0]/",
    ],
)
async def test_the_setting_allows_private_addresses(client: httpx.AsyncClient, url: str) -> None:
    answer = await client.post("/rest/v1/webhooks", json={"url": url})
    assert answer.status_code == 201, answer.text


@allow_private
@pytest.mark.parametrize("url", ["http://2130706433/", "http://0x7f.1/", "http://0x8.8.8.8/"])
async def test_odd_spellings_of_an_address_are_refused_even_when_allowed(
    client: httpx.AsyncClient, url: str
) -> None:
    """The client refuses them at delivery anyway: say so when the URL is given."""
    answer = await client.post("/rest/v1/webhooks", json={"url": url})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "url"
    assert "write the IP address as" in answer.json()["message"]


def test_url_problem_says_what_and_how_to_allow() -> None:
    problem = url_problem("http://169.254.169.254/latest", allow_private=False)
    assert problem is not None
    assert "169.254.169.254" in problem
    assert "ANTAEUS_WEBHOOK_ALLOW_PRIVATE=true" in problem
    assert url_problem("http://169.254.169.254/latest", allow_private=True) is None


def test_the_setting_is_off_by_default_and_reaches_the_relay(
    database_url: str, database: Database, clock: ManualClock
) -> None:
    assert Settings(DATABASE_URL=database_url).WEBHOOK_ALLOW_PRIVATE is False
    for allowed in (False, True):
        relay = build_relay(
            database, clock, Settings(DATABASE_URL=database_url, WEBHOOK_ALLOW_PRIVATE=allowed)
        )
        webhooks = relay.senders["webhook"]
        assert isinstance(webhooks, WebhookDestinations)
        assert webhooks.sender.allow_private is allowed


# -- delivery -------------------------------------------------------------------------


class Listener:
    """A TCP port on 127.0.0.1 that counts the connections it gets (and answers none)."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> Listener:
        async def count(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self._server = await asyncio.start_server(count, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    listening = await Listener().start()
    try:
        yield listening
    finally:
        await listening.stop()


async def _destination(db: Database, clock: ManualClock, url: str) -> int:
    """A webhook stored as it was registered while private addresses were allowed."""
    async with db.write() as conn:
        made = await DestinationRepository(conn).create(
            "webhook", url, None, new_secret(), clock.now()
        )
    return made.id


async def _deliver_once(db: Database, clock: ManualClock, allow_private: bool) -> None:
    relay = webhook_relay(
        db,
        clock,
        senders=[WebhookDestinations(WebhookSender(timeout=3.0, allow_private=allow_private))],
    )
    try:
        await relay.run_until_idle(within=30)
    finally:
        await relay.aclose()


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "localhost.",
        "[::ffff:127.0.0.1]",
        "[::1]",
        "[fe80::1%25lo]",
        "0x7f.1",  # the C resolver reads it as 127.0.0.1
        "2130706433",
        "0.0.0.0",  # reaches this host's listening sockets on Linux
    ],
)
async def test_a_delivery_to_a_private_address_fails_and_connects_nowhere(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    listener: Listener,
    host: str,
) -> None:
    made = await _destination(database, clock, f"http://{host}:{listener.port}/hook")
    await write(database, clock.now(), 2)
    await _deliver_once(database, clock, allow_private=False)
    tries = (await client.get(f"/rest/v1/webhooks/{made}/deliveries")).json()
    assert len(tries) == 2
    for t in tries:
        assert t["delivered"] is False
        assert t["httpStatus"] is None
        assert t["error"].startswith("private_address"), t["error"]
    assert listener.connections == 0


def _resolving(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> dict[str, int]:
    """The event loop's getaddrinfo, answering `answers` for their names (a DNS we control).

    Returns how often each of those names was asked for.
    """
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    asked: dict[str, int] = {}

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in answers:
            return await real(host, port, *args, **kwargs)
        asked[name] = asked.get(name, 0) + 1
        out = []
        for address in answers[name]:
            if ":" in address:
                out.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, int(port), 0, 0)))
            else:
                out.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port))))
        return out

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return asked


@pytest.mark.parametrize(
    "answer",
    [["127.0.0.1"], ["93.184.216.34", "127.0.0.1"], ["10.1.2.3"], ["169.254.169.254"]],
)
async def test_a_name_that_resolves_inside_is_refused_at_delivery(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    listener: Listener,
    monkeypatch: pytest.MonkeyPatch,
    answer: list[str],
) -> None:
    """DNS rebinding: the name was public when registered; now (one of) its addresses is not."""
    made = await client.post(
        "/rest/v1/webhooks", json={"url": f"http://hooks.rebind.example:{listener.port}/h"}
    )
    assert made.status_code == 201
    asked = _resolving(monkeypatch, {"hooks.rebind.example": answer})
    await write(database, clock.now(), 1)
    await _deliver_once(database, clock, allow_private=False)
    (only,) = (await client.get(f"/rest/v1/webhooks/{made.json()['id']}/deliveries")).json()
    assert only["error"].startswith("private_address"), only["error"]
    assert asked == {"hooks.rebind.example": 1}
    assert listener.connections == 0


@allow_private
async def test_a_delivery_connects_to_the_address_it_checked_and_keeps_the_name(
    client: httpx.AsyncClient,
    database: Database,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One resolution per try: what was checked is what is connected to (no second lookup
    that a rebinding DNS could answer otherwise); the Host header keeps the name."""
    receiver = await Receiver().start()
    try:
        made = await client.post(
            "/rest/v1/webhooks", json={"url": f"http://receiver.example:{receiver.port}/hook"}
        )
        assert made.status_code == 201
        asked = _resolving(monkeypatch, {"receiver.example": ["127.0.0.1"]})
        await write(database, clock.now(), 1)
        await _deliver_once(database, clock, allow_private=True)
        assert len(receiver.ok("/hook")) == 1
        assert receiver.hits[0].headers["Host"] == f"receiver.example:{receiver.port}"
        assert asked == {"receiver.example": 1}
    finally:
        await receiver.stop()


# -- secrets in URLs ------------------------------------------------------------------

PATH_SECRET = "T0001/B0002/PathSecretXyzzy"
QUERY_SECRET = "QuerySecretPlugh"


def _secret_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/services/{PATH_SECRET}?token={QUERY_SECRET}&v=1"


def _leaks(text: str) -> bool:
    return any(s in text for s in ("PathSecretXyzzy", QUERY_SECRET, "T0001/B0002"))


@allow_private
@pytest.mark.parametrize("answer", ["garbage", "refused", "500"])
async def test_secrets_in_a_webhook_url_never_reach_logs_or_stored_errors(
    client: httpx.AsyncClient,
    app: FastAPI,
    token: str,
    database: Database,
    clock: ManualClock,
    answer: str,
) -> None:
    """A receiver that answers something unreadable (the client's error repeats the URL),
    a closed port, a 500: the tries and the log lines name the endpoint by id and origin."""

    async def garbage(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"garbage\r\n\r\n")
        await writer.drain()
        writer.close()

    server: asyncio.Server | None = None
    receiver: Receiver | None = None
    if answer == "garbage":
        server = await asyncio.start_server(garbage, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    elif answer == "500":
        receiver = await Receiver(modes={f"/services/{PATH_SECRET}": "fail"}).start()
        port = receiver.port
    else:
        port = free_port()
    url = _secret_url(port)
    try:
        made = (await client.post("/rest/v1/webhooks", json={"url": url})).json()
        await write(database, clock.now(), 1)
        with capture_logs() as logs:
            relay = webhook_relay(database, clock, timeout=3.0)
            try:
                await relay.run_until_idle(within=30)
            finally:
                await relay.aclose()
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()
        if receiver is not None:
            await receiver.stop()

    (tried,) = (await client.get(f"/rest/v1/webhooks/{made['id']}/deliveries")).json()
    assert tried["delivered"] is False
    assert tried["error"]
    assert not _leaks(tried["error"]), tried["error"]
    failed = [e for e in logs if e["event"] == "event_delivery_failed"]
    assert len(failed) == 1
    assert failed[0]["destination"] == made["id"]
    assert failed[0]["origin"] == f"http://127.0.0.1:{port}"
    assert not any(_leaks(repr(e)) for e in logs), logs
    # a token holder still sees the whole URL, in the API and on the dashboard (once:
    # the tries listed under it show no copy)
    assert (await client.get(f"/rest/v1/webhooks/{made['id']}")).json()["url"] == url
    assert (await client.get("/rest/v1/webhooks")).json()[0]["url"] == url
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://antaeus.test") as browser:
        assert (await sign_in(browser, token)).status_code == 303
        page = (await browser.get("/webhooks")).text
    assert html.escape(url) in page
    assert page.count(QUERY_SECRET) == page.count("PathSecretXyzzy") == 1


@allow_private
async def test_a_disabled_endpoint_is_logged_by_id_and_origin(
    client: httpx.AsyncClient, database: Database, clock: ManualClock
) -> None:
    from antaeus.notify.relay import WEBHOOK_GIVE_UP

    url = _secret_url(free_port())
    made = (await client.post("/rest/v1/webhooks", json={"url": url})).json()
    await write(database, clock.now(), 1)
    with capture_logs() as logs:
        relay = webhook_relay(database, clock, timeout=2.0)
        try:
            started = clock.now()
            while clock.now() - started <= WEBHOOK_GIVE_UP + WEBHOOK_GIVE_UP / 2:
                await relay.run_until_idle(within=30)
                if any(e["event"] == "webhook_disabled" for e in logs):
                    break
                clock.advance(WEBHOOK_GIVE_UP / 6)
        finally:
            await relay.aclose()
    (disabled,) = [e for e in logs if e["event"] == "webhook_disabled"]
    assert disabled["destination"] == made["id"]
    assert disabled["origin"].startswith("http://127.0.0.1:")
    assert not any(_leaks(repr(e)) for e in logs)


SECRET_URL = "https://hooks.slack.com/services/T0001/B0002/PathSecretXyzzy?token=QuerySecretPlugh"


@pytest.mark.parametrize(
    "message",
    [
        lambda u: f"InvalidURL: {u}",
        lambda u: f"ClientResponseError: 400, message='x', url=URL({u!r})",
        lambda u: "failed at /services/T0001/B0002/PathSecretXyzzy?token=QuerySecretPlugh",
        lambda u: "failed at /services/T0001/B0002/PathSecretXyzzy",
        lambda u: "quoted %2Fservices%2FT0001 then PathSecretXyzzy and QuerySecretPlugh",
        lambda u: u.replace("https://", "HTTPS://hooks.slack.com:443@"),
    ],
)
def test_redact_leaves_only_the_origin(message: Callable[[str], str]) -> None:
    shown = redact(message(SECRET_URL), SECRET_URL)
    assert not _leaks(shown), shown
    assert origin(SECRET_URL) == "https://hooks.slack.com:443"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.example.com/a?token=x", "https://hooks.example.com:443"),
        ("http://user:pw@10.0.0.1:8080/x", "http://10.0.0.1:8080"),
        ("http://[::1]:9/x", "http://[::1]:9"),
        ("amqp://guest:***@rabbitmq:5672/", "amqp://rabbitmq:5672"),
    ],
)
def test_origin(url: str, shown: str) -> None:
    assert origin(url) == shown


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "0.0.0.0"])
async def test_with_the_setting_the_same_deliveries_do_connect(
    database: Database, clock: ManualClock, listener: Listener, host: str
) -> None:
    """The control for the test above: the listener counts what reaches it."""
    await _destination(database, clock, f"http://{host}:{listener.port}/hook")
    await write(database, clock.now(), 1)
    await _deliver_once(database, clock, allow_private=True)
    assert listener.connections >= 1
