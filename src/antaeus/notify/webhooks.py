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
import time
from dataclasses import dataclass
from typing import Final

import aiohttp

from antaeus.security import scrub

SECRET_PREFIX: Final = "whsec_"
TIMEOUT_SECONDS: Final = 10.0
MAX_ANSWER_BYTES: Final = 64 * 1024
USER_AGENT: Final = "Antaeus-Webhooks/1"


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


class WebhookSender:
    """POSTs deliveries through one pooled client session per process."""

    def __init__(self, timeout: float = TIMEOUT_SECONDS) -> None:
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
                headers={"User-Agent": USER_AGENT},
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
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            why = scrub(f"{type(exc).__name__}: {exc}", url)
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
