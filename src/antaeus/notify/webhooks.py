"""Webhook deliveries, signed per the Standard Webhooks specification.

Each try is one `POST` of the event's JSON with the headers `webhook-id` (the
event id, the same on every try), `webhook-timestamp` (seconds) and
`webhook-signature` (`v1,` + base64 of HMAC-SHA256 over `id.timestamp.body`,
keyed with the endpoint secret's bytes: `whsec_` + base64). A try has a 10 s
timeout, follows no redirect (a 3xx is a failure) and reads at most 64 KiB of
the answer, so a receiver that hangs, redirects, trickles bytes or answers a
huge body costs bounded time and memory. Only a complete 2xx answer of at most
64 KiB, within the timeout, delivers: a longer body, or one still trickling at
the timeout, is a failed try.

A receiver must be a public address unless `allow_private` (the setting
`ANTAEUS_WEBHOOK_ALLOW_PRIVATE`): a literal address in the URL is checked
before the request, and a name is resolved by `CheckedResolver`, which checks
every address the name has and hands exactly those to the connection (no
second resolution between the check and the connect; the name stays the TLS
server name and the `Host`). A try refused so fails with `private_address` and
opens no connection. Errors name the receiver by its origin only
(`addresses.redact`): its path and query may hold a secret.

The connection pool has no per-host limit: the relay bounds the tries in flight
per destination, and a per-host limit would let one hanging endpoint starve
another on the same host (or every endpoint, once the pool is full).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import socket
import time
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Final

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.helpers import is_ip_address
from yarl import URL

from antaeus.notify.addresses import (
    ALLOW_SETTING,
    host_address,
    is_local_name,
    private_reason,
    redact,
)
from antaeus.security import scrub

SECRET_PREFIX: Final = "whsec_"
TIMEOUT_SECONDS: Final = 10.0
MAX_ANSWER_BYTES: Final = 64 * 1024
USER_AGENT: Final = "Antaeus-Webhooks/1"
PRIVATE_ADDRESS: Final = "private_address"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` header's value for this message."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


@dataclass(frozen=True, slots=True)
class TryResult:
    """One try of one delivery: delivered or not, and what the receiver said."""

    ok: bool
    http_status: int | None
    error: str | None
    duration_ms: int


class PrivateAddressError(OSError):
    """A receiver's name resolved to a local or private address (no connection was made)."""

    def __init__(self, host: str, why: str) -> None:
        super().__init__(f"{host} resolves to a local or private address ({why})")
        self.why = why


def _private_address_error(why: str) -> str:
    return (
        f"{PRIVATE_ADDRESS}: the receiver is a local or private address ({why}); "
        f"not connected ({ALLOW_SETTING}=true allows it)"
    )


class CheckedResolver(AbstractResolver):
    """Resolves with the event loop's getaddrinfo and refuses a name with any private address.

    aiohttp connects to exactly the addresses answered here, so the address
    checked is the address connected to.
    """

    def __init__(self, allow_private: bool = False) -> None:
        self.allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, family=family, flags=socket.AI_ADDRCONFIG
        )
        found: list[ResolveResult] = []
        for fam, _, proto, _, sockaddr in infos:
            if fam not in (socket.AF_INET, socket.AF_INET6) or len(sockaddr) < 2:
                continue
            shown, answered_port = str(sockaddr[0]), int(sockaddr[1])
            address = ip_address(shown.split("%", 1)[0])
            why = private_reason(address)
            if why is not None and not self.allow_private:
                raise PrivateAddressError(host, why)  # every address, before any connect
            if fam == socket.AF_INET6 and len(sockaddr) >= 4 and sockaddr[3]:
                # a link-local address needs its scope (allowed only with allow_private)
                shown, service = await loop.getnameinfo(
                    sockaddr, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
                )
                answered_port = int(service)
            found.append(
                ResolveResult(
                    hostname=host,
                    host=shown,
                    port=answered_port,
                    family=fam,
                    proto=proto,
                    flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                )
            )
        if not found:
            raise OSError(f"{host} has no IPv4 or IPv6 address")
        return found

    async def close(self) -> None:
        pass


def literal_problem(url: str, allow_private: bool) -> str | None:
    """Why a try to `url`'s literal address may not connect (the resolver never sees those)."""
    if allow_private:
        return None
    try:
        host = URL(url).raw_host or ""
    except (ValueError, TypeError):
        return None  # the client refuses it with its own error
    try:
        address = host_address(host)
    except ValueError:
        return None if not is_ip_address(host) else f"the host {host!r} is not an IP address"
    if address is None:
        if is_local_name(host):  # whatever the resolver would say
            return _private_address_error("a name of this machine")
        return None  # a name: CheckedResolver checks what it resolves to
    why = private_reason(address)
    return _private_address_error(why) if why is not None else None


class WebhookSender:
    """POSTs deliveries through one pooled client session per process."""

    def __init__(self, timeout: float = TIMEOUT_SECONDS, allow_private: bool = False) -> None:
        self.timeout = timeout
        self.allow_private = allow_private
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(
                    limit=0,
                    limit_per_host=0,
                    resolver=CheckedResolver(self.allow_private),
                ),
                headers={"User-Agent": USER_AGENT},
                trust_env=False,  # never a proxy from the environment: it would resolve for us
            )
        return self._session

    async def send(
        self, url: str, secret: str, msg_id: str, body: str, now: float | None = None
    ) -> TryResult:
        timestamp = int(now if now is not None else time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, msg_id, timestamp, body),
        }
        started = time.monotonic()

        def took() -> int:
            return int((time.monotonic() - started) * 1000)

        if (problem := literal_problem(url, self.allow_private)) is not None:
            return TryResult(False, None, problem, took())
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client().post(
                    url, data=body.encode(), headers=headers, allow_redirects=False
                ) as answer:
                    status = answer.status
                    # to its end (so the connection can be reused), never past 64 KiB
                    size = 0
                    async for chunk in answer.content.iter_any():
                        size += len(chunk)
                        if size > MAX_ANSWER_BYTES:
                            answer.close()  # drop the connection: the rest is never read
                            return TryResult(
                                False,
                                status,
                                f"answered {status} with more than {MAX_ANSWER_BYTES} bytes",
                                took(),
                            )
        except TimeoutError:
            return TryResult(False, None, f"no answer within {self.timeout:g} s", took())
        except Exception as exc:  # every failure is a failed try, its message without the URL
            refused = _refused(exc)
            if refused is not None:
                return TryResult(False, None, _private_address_error(refused.why), took())
            why = scrub(redact(f"{type(exc).__name__}: {exc}", url), url)  # (+ a password)
            return TryResult(False, None, why[:500], took())
        if 200 <= status < 300:
            return TryResult(True, status, None, took())
        why = f"answered {status}" + (
            " (redirects are not followed)" if 300 <= status < 400 else ""
        )
        return TryResult(False, status, why, took())

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _refused(exc: BaseException) -> PrivateAddressError | None:
    """The resolver's refusal inside the client's error, if that is what `exc` is."""
    seen: BaseException | None = exc
    for _ in range(5):  # aiohttp wraps it (ClientConnectorDNSError from it)
        if seen is None:
            return None
        if isinstance(seen, PrivateAddressError):
            return seen
        inner = getattr(seen, "os_error", None)
        seen = inner if isinstance(inner, BaseException) else seen.__cause__
    return None
