"""What the client raises, in one hierarchy:

    AntaeusError
    ├── ApiError                    the API answered an error: status, code, field, message
    │   ├── ClientError             4xx
    │   │   ├── BadRequestError         400 (malformed JSON, a bad Idempotency-Key)
    │   │   ├── AuthenticationError     401 (missing or unknown token)
    │   │   ├── PermissionDeniedError   403 (insufficient_scope: a read token wrote)
    │   │   ├── NotFoundError           404
    │   │   ├── ConflictError           409 (invalid_state, already_exists, ...)
    │   │   ├── UnprocessableError      422 (validation_error, currency_mismatch, ...)
    │   │   └── RateLimitError          429 (after the retries)
    │   └── ServerError             5xx (after the retries)
    ├── ApiConnectionError          no answer: refused, reset, dropped (after the retries)
    │   └── ApiTimeoutError         no answer in time (after the retries)
    └── WebhookVerificationError    a delivery whose signature or timestamp does not check

Each is raised from the `httpx` exception it maps, if any (`raise ... from exc`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class AntaeusError(Exception):
    """Everything the client raises."""


class ApiError(AntaeusError):
    """The API answered with an error: `{"error": code, "message", "field"}` and more."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        #: the whole error body (for instance `status` and `currentAttempt` of a 409)
        self.body: Mapping[str, Any] = body or {}
        self.headers: Mapping[str, str] = headers or {}


class ClientError(ApiError):
    """4xx: the request was refused; repeating it as is will not help."""


class BadRequestError(ClientError):
    """400."""


class AuthenticationError(ClientError):
    """401: a missing, malformed or unknown token."""


class PermissionDeniedError(ClientError):
    """403: the token may not do this (a read token asked to write)."""


class NotFoundError(ClientError):
    """404."""


class ConflictError(ClientError):
    """409: the resource's state does not allow it (`invalid_state`), or a value is taken."""


class UnprocessableError(ClientError):
    """422: a field's value was refused; `field` names it."""


class RateLimitError(ClientError):
    """429, still after the client's retries."""


class ServerError(ApiError):
    """5xx, still after the client's retries."""


class ApiConnectionError(AntaeusError):
    """No answer at all: the connection was refused, reset or dropped."""


class ApiTimeoutError(ApiConnectionError):
    """No answer in time (connect, read, write or pool timeout)."""


class WebhookVerificationError(AntaeusError):
    """A webhook delivery whose signature, headers or timestamp do not check out."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableError,
    429: RateLimitError,
}


def error_class(status: int) -> type[ApiError]:
    """The most specific class for an error status."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if 400 <= status < 500:
        return ClientError
    if status >= 500:
        return ServerError
    return ApiError
