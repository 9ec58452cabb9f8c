"""API errors are named classes with their status and code, raised with a message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from antaeus.api import errors

SRC = Path(errors.__file__).resolve().parent

NAMED = [
    (errors.BadRequestError, 400, "bad_request"),
    (errors.BodyTooLargeError, 400, "body_too_large"),
    (errors.InvalidIdempotencyKeyError, 400, "invalid_idempotency_key"),
    (errors.UnauthorizedError, 401, "unauthorized"),
    (errors.InsufficientScopeError, 403, "insufficient_scope"),
    (errors.NotFoundError, 404, "not_found"),
    (errors.MethodNotAllowedError, 405, "method_not_allowed"),
    (errors.InvalidStateError, 409, "invalid_state"),
    (errors.IdempotencyConflictError, 409, "idempotency_conflict"),
    (errors.IdempotencyKeyReusedError, 422, "idempotency_key_reused"),
    (errors.CustomerNotFoundError, 422, "customer_not_found"),
    (errors.CurrencyMismatchError, 422, "currency_mismatch"),
    (errors.FieldInvalidError, 422, "validation_error"),
    (errors.PlanNotFoundError, 422, "plan_not_found"),
    (errors.AlreadyExistsError, 409, "already_exists"),
]


@pytest.mark.parametrize(("cls", "status", "code"), NAMED, ids=[c.__name__ for c, _, _ in NAMED])
def test_a_named_error_answers_its_status_and_code(
    cls: type[errors.ApiError], status: int, code: str
) -> None:
    err = cls("what went wrong", field="where", status="PAID")  # type: ignore[call-arg]
    assert (err.status_code, err.error) == (status, code)
    assert err.body() == {
        "error": code,
        "message": "what went wrong",
        "field": "where",
        "status": "PAID",
    }


def test_routes_raise_named_errors_not_literals() -> None:
    """Only the catch-all for other HTTP statuses builds an ApiError from numbers."""
    literal = re.compile(r"ApiError\(\s*\d")
    offenders = [
        f"{path.relative_to(SRC)}:{n}"
        for path in SRC.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert offenders == []
