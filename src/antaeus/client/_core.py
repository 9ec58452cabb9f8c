"""What the sync and the async client share: request building, retry decisions,
answers to results, and following `Link` to the next page. No I/O here."""

from __future__ import annotations

import email.utils
import json
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from antaeus.client._errors import ApiError, error_class

DEFAULT_TIMEOUT: Final = 30.0
DEFAULT_MAX_RETRIES: Final = 2
#: the first retry waits about this long (seconds), each next one twice as long
DEFAULT_BACKOFF: Final = 0.5
#: no single wait is longer, whatever `Retry-After` asks (seconds)
MAX_WAIT: Final = 60.0
USER_AGENT: Final = "antaeus-python-client"

#: the server's answer to two requests with one key at once: the later one may retry
_IDEMPOTENCY_CONFLICT: Final = "idempotency_conflict"


class NotGiven:
    """An argument left out (where None means something: `null` clears a value)."""

    def __repr__(self) -> str:
        return "NOT_GIVEN"


@dataclass(frozen=True, slots=True)
class Request:
    """One API call as the client sends it (and sends again, the same, on a retry)."""

    method: str
    path: str
    params: Mapping[str, str] | None = None
    body: Any = None
    #: sent as `Idempotency-Key` (every creating or acting call has one)
    idempotency_key: str | None = None


def new_key() -> str:
    return f"antaeus-client-{uuid.uuid4()}"


def key_for(idempotency_key: str | None) -> str:
    """The key a creating or acting call sends: the caller's, else a new one."""
    return idempotency_key if idempotency_key is not None else new_key()


def wire(value: Any) -> Any:
    """A value as JSON: Decimals as exact strings, datetimes RFC 3339, dates ISO."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"an amount must be a finite number, not {value}")
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{value!r} is naive: give a datetime with a time zone")
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        raise TypeError(f"{value!r} is a float: give amounts as Decimal (or str)")
    if isinstance(value, Mapping):
        return {k: wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [wire(v) for v in value]
    return value


def query(**filters: Any) -> dict[str, str]:
    """Filters as query parameters (None: not given); booleans as true/false."""
    out: dict[str, str] = {}
    for name, value in filters.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[name] = "true" if value else "false"
        else:
            out[name] = str(wire(value))
    return out


def build(client: httpx.Client | httpx.AsyncClient, request: Request) -> httpx.Request:
    headers = {}
    if request.idempotency_key is not None:
        headers["Idempotency-Key"] = request.idempotency_key
    content = None
    if request.body is not None:
        content = json.dumps(wire(request.body)).encode("utf-8")
        headers["Content-Type"] = "application/json"
    return client.build_request(
        request.method, request.path, params=request.params, content=content, headers=headers
    )


def loads(response: httpx.Response) -> Any:
    """The answer's JSON with exact decimals (never floats)."""
    if not response.content:
        return None
    return json.loads(response.content, parse_float=Decimal)


def retryable(response: httpx.Response) -> bool:
    """A 429, a 5xx, or a 409 that says the same key's first request is still running."""
    if response.status_code == 429 or response.status_code >= 500:
        return True
    if response.status_code == 409:
        try:
            return bool(loads(response).get("error") == _IDEMPOTENCY_CONFLICT)
        except (ValueError, AttributeError):
            return False
    return False


def retry_after(response: httpx.Response | None) -> float | None:
    """`Retry-After` in seconds (a number or an HTTP date), if the answer has one."""
    if response is None:
        return None
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def wait_before(retry: int, backoff: float, response: httpx.Response | None) -> float:
    """Seconds before retry number `retry` (1, 2, ...): exponential backoff with jitter
    (half of it random), or `Retry-After` when the server asks for longer."""
    step: float = backoff * 2.0 ** (retry - 1)
    delay = step / 2 + random.uniform(0, step / 2)
    asked = retry_after(response)
    if asked is not None:
        delay = max(delay, asked)
    return min(delay, MAX_WAIT)


def error(response: httpx.Response) -> ApiError:
    """The API's error answer as the most specific exception."""
    try:
        body = loads(response)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"error": "http_error", "message": response.text[:500] or response.reason_phrase}
    cls = error_class(response.status_code)
    return cls(
        response.status_code,
        str(body.get("error", "http_error")),
        str(body.get("message", "")),
        body.get("field"),
        body,
        dict(response.headers),
    )


def next_path(response: httpx.Response) -> tuple[str, dict[str, str]] | None:
    """The next page (`Link: <...>; rel="next"`) as a path and its query, if any.

    Only the path and query are taken: the host is the client's own base URL, so
    a server behind a proxy that sees another host name still pages right.
    """
    link = response.links.get("next")
    if not link or "url" not in link:
        return None
    parts = httpx.URL(link["url"])
    params = dict(parts.params.multi_items())
    return urlsplit(str(parts)).path, params
