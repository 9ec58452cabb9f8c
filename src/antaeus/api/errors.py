"""One JSON error shape everywhere: {"error": code, "message": for people, "field": where}."""

from __future__ import annotations

import re
from typing import Any, Final

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from antaeus.api.jsonio import JSONResponse
from antaeus.domain.errors import ActionRefusedError, InvoiceNotFoundError

log = structlog.get_logger("antaeus.api")


class ApiError(Exception):
    def __init__(
        self,
        status_code: int,
        error: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error = error
        self.message = message
        self.field = field
        self.headers = headers
        self.extra = extra

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.error, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        out.update(self.extra)
        return out


class _NamedError(ApiError):
    """An error of the API with its status and code; raise it with a message."""

    status: int = 500
    code: str = "internal_error"
    #: when the API answers this code, for people (the HTTP API reference lists every code)
    description: str = ""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(self.status, self.code, message, field=field, headers=headers, **extra)


class BadRequestError(_NamedError):
    status, code = 400, "bad_request"
    description = (
        "the request is malformed in a way no field names (a bad header such as Content-Length)"
    )


class BodyTooLargeError(_NamedError):
    status, code = 400, "body_too_large"
    description = "the request body is larger than `ANTAEUS_MAX_BODY_BYTES`"


class InvalidIdempotencyKeyError(_NamedError):
    status, code = 400, "invalid_idempotency_key"
    description = "the `Idempotency-Key` header is not 1 to 255 printable ASCII characters"


class UnauthorizedError(_NamedError):
    status, code = 401, "unauthorized"
    description = (
        "no `Authorization: Bearer <token>` header, or a token that is malformed, unknown "
        "or revoked"
    )


class InsufficientScopeError(_NamedError):
    """A read token asked for a write (any method but GET, HEAD, OPTIONS)."""

    status, code = 403, "insufficient_scope"
    description = "a token of scope `read` asked for a write (any method but GET, HEAD, OPTIONS)"


class NotFoundError(_NamedError):
    status, code = 404, "not_found"
    description = "no such resource (the id in the path), or no such route"


class NoUpcomingInvoiceError(_NamedError):
    """The customer has no subscription period left to bill."""

    status, code = 404, "no_upcoming_invoice"
    description = (
        "`GET /rest/v1/customers/{id}/upcoming-invoice`: no subscription of the customer "
        "has a period left to bill"
    )


class MethodNotAllowedError(_NamedError):
    status, code = 405, "method_not_allowed"
    description = "the route exists but not with this method"


class InvalidStateError(_NamedError):
    """The invoice's status does not allow the action (the body says which it is)."""

    status, code = 409, "invalid_state"
    description = (
        "the resource's state does not allow the action: an invoice's status (`status` in "
        "the body, and `currentAttempt` when the action named another attempt), an archived "
        "plan, a subscription's status"
    )


class IdempotencyConflictError(_NamedError):
    status, code = 409, "idempotency_conflict"
    description = (
        "a request with the same `Idempotency-Key` is still being processed; repeat it later"
    )


class IdempotencyKeyReusedError(_NamedError):
    status, code = 422, "idempotency_key_reused"
    description = "the `Idempotency-Key` was used before with another method, path or body"


class CustomerNotFoundError(_NamedError):
    status, code = 422, "customer_not_found"
    description = "the customer the body names does not exist"


class CurrencyMismatchError(_NamedError):
    status, code = 422, "currency_mismatch"
    description = "the amount's (or plan's) currency is not the customer's"


class FieldInvalidError(_NamedError):
    """A field the request's shape allows but its meaning refuses (`field` names it)."""

    status, code = 422, "validation_error"
    description = "a field the request's shape allows but its meaning refuses (`field` names it)"


class PlanNotFoundError(_NamedError):
    status, code = 422, "plan_not_found"
    description = "the plan the body names does not exist"


class AlreadyExistsError(_NamedError):
    """A unique value (a plan's `code`) is taken; `field` names it."""

    status, code = 409, "already_exists"
    description = "a unique value (a plan's `code`) is taken; `field` names it"


#: codes answered by the handlers below rather than raised as a `_NamedError`
_HANDLER_CODES: Final[dict[str, tuple[int, str]]] = {
    "invalid_json": (400, "the request body is not valid JSON"),
    "validation_error": (
        422,
        "a field failed validation (`field` names the first; `errors` lists every one when "
        "there are several)",
    ),
    "unknown_currency": (422, "a currency that is not an active ISO 4217 code with minor units"),
    "http_error": (400, "another refusal of the HTTP layer (the status says which)"),
    "internal_error": (500, "an unexpected error; it was logged with the request"),
}


def error_codes() -> dict[str, tuple[int, str]]:
    """Every error code the API answers: code -> (status, description), sorted by code."""
    codes = dict(_HANDLER_CODES)
    pending: list[type[_NamedError]] = list(_NamedError.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.code not in _HANDLER_CODES:
            codes[cls.code] = (cls.status, cls.description)
    return dict(sorted(codes.items()))


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


def not_found(what: str, ident: object) -> ApiError:
    return NotFoundError(f"{what} {ident} does not exist")


_LOC_PREFIXES = {"body", "path", "query", "header"}


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in _LOC_PREFIXES:
        parts = parts[1:]
    return ".".join(parts) if parts else "body"


def _describe(err: dict[str, Any]) -> tuple[str, str, str]:
    """(code, field, message) for one pydantic error."""
    field = _field_of(tuple(err.get("loc", ())))
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid value"))
    if kind == "json_invalid":
        detail = (err.get("ctx") or {}).get("error", "malformed JSON")
        return "invalid_json", "body", f"the request body is not valid JSON: {detail}"
    if kind == "missing":
        return "validation_error", field, f"{field} is required"
    if kind == "not_changeable":  # a body-level check that names its own field
        field = str((err.get("ctx") or {}).get("field", field))
        return "validation_error", field, msg
    if kind == "extra_forbidden":
        return "validation_error", field, f"{field} is not a known field"
    if kind == "unknown_currency":  # antaeus.api.schemas.CurrencyCode: the message names it
        return "unknown_currency", field, f"{field}: {msg}"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    elif msg.startswith(_LIBRARY_WORDING):  # pydantic's own words: ours instead
        msg = _in_our_words(kind, err.get("ctx") or {}, err.get("input"), msg)
    return "validation_error", field, f"{field}: {msg}"


#: how pydantic's own messages begin (ours, raised from validators, never do)
_LIBRARY_WORDING: Final = ("Input should", "Value should", "String should", "List should")

#: the largest id a column holds (BIGINT); api/schemas.py MAX_ID
_MAX_ID: Final = 2**63 - 1


def _plural(n: object, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _shown(value: object) -> str:
    text = str(value)
    return text if len(text) <= 40 else f"{text[:40]}..."


def _choices(expected: object) -> str:
    """pydantic's "'A', 'B' or 'C'" as "A, B, C"."""
    names = re.findall(r"'((?:[^'\\]|\\.)*)'", str(expected))
    return ", ".join(names) if names else str(expected)


def _in_our_words(kind: str, ctx: dict[str, Any], value: object, msg: str) -> str:
    """A library message about `value` said as the API says things (the field comes first)."""
    text = isinstance(value, str)
    if kind in ("too_long", "string_too_long"):
        limit = ctx.get("max_length")
        unit = "character" if text or kind == "string_too_long" else "item"
        return f"must be at most {_plural(limit, unit)}" + (
            f" (it has {ctx['actual_length']})" if "actual_length" in ctx else ""
        )
    if kind in ("too_short", "string_too_short"):
        limit = ctx.get("min_length")
        unit = "character" if text or kind == "string_too_short" else "item"
        if limit == 1:
            return f"must not be empty (at least 1 {unit})"
        return f"must be at least {_plural(limit, unit)}"
    if kind == "less_than_equal" and ctx.get("le") == _MAX_ID:
        return f"{_shown(value)} is too large for an id (ids go up to {_MAX_ID})"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}"
    if kind == "less_than":
        return f"must be less than {ctx.get('lt')}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}"
    if kind == "greater_than":
        return f"must be greater than {ctx.get('gt')}"
    if kind in ("enum", "literal_error"):
        return f"{_shown(value)!r} is not one of {_choices(ctx.get('expected'))}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "must be a whole number"
    if kind in ("int_parsing_size",):
        return "is too large"
    if kind in ("bool_type", "bool_parsing"):
        return "must be true or false"
    if kind in ("string_type", "string_unicode"):
        return "must be a string"
    if kind in ("list_type", "tuple_type", "set_type"):
        return "must be a list"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "must be a JSON object"
    if kind in ("decimal_type", "decimal_parsing", "float_type", "float_parsing"):
        return "must be a number"
    for prefix in _LIBRARY_WORDING:
        if msg.startswith(prefix):
            rest = msg[len(prefix) :].strip()
            return f"must {rest}" if prefix == "Input should" else f"should {rest}"
    return msg


def validation_message(err: Any) -> str:
    """One pydantic error as the API says it: "field: what is wrong"."""
    return _describe(dict(err))[2]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    # What the use cases refuse (billing/service.py), as the API's errors.
    @app.exception_handler(InvoiceNotFoundError)
    async def _no_invoice(_request: Request, exc: InvoiceNotFoundError) -> JSONResponse:
        return error_response(not_found("invoice", exc.invoice_id))

    @app.exception_handler(ActionRefusedError)
    async def _refused(_request: Request, exc: ActionRefusedError) -> JSONResponse:
        extra: dict[str, Any] = {"status": exc.status.value}
        if exc.attempt is not None:  # the action named an attempt: say which is current
            extra["currentAttempt"] = exc.attempt
        return error_response(InvalidStateError(str(exc), **extra))

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        code, field, message = (
            _describe(errors[0]) if errors else ("validation_error", "body", "invalid request")
        )
        status = 400 if code == "invalid_json" else 422
        body: dict[str, Any] = {"error": code, "message": message, "field": field}
        if len(errors) > 1:
            body["errors"] = [
                {"field": f, "message": m} for _c, f, m in (_describe(e) for e in errors)
            ]
        return JSONResponse(body, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        err: ApiError
        if exc.status_code == 404:
            err = NotFoundError(f"no route {request.method} {request.url.path}")
        elif exc.status_code == 405:
            err = MethodNotAllowedError(f"{request.method} is not allowed on {request.url.path}")
        elif exc.status_code == 413:
            err = BodyTooLargeError("the request body is larger than the limit", field="body")
        elif exc.status_code == 400:
            err = BadRequestError(str(exc.detail))
        else:
            err = ApiError(exc.status_code, "http_error", str(exc.detail))
        err.headers = headers or None
        return error_response(err)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request_failed", method=request.method, path=request.url.path)
        return JSONResponse(
            {"error": "internal_error", "message": "an unexpected error happened; it was logged"},
            status_code=500,
        )


class ContentLengthLimit:
    """Refuses a body announced larger than `limit` with our 400 JSON, before reading it.

    (Starlette's own limit answers such requests with a plain-text 413; it still
    guards bodies streamed without a Content-Length, which end up as our 400.)
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope.get("headers", ()):
                if name == b"content-length":
                    err: ApiError | None = None
                    if not value.isdigit():
                        err = BadRequestError("malformed Content-Length header")
                    elif int(value) > self.limit:
                        err = BodyTooLargeError(
                            f"the request body is larger than {self.limit} bytes", field="body"
                        )
                    if err is not None:
                        await error_response(err)(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)
