"""Issue 9, item 1 (where answers enter): a hostile provider's values are bounded.

A `Retry-After` of `1e300` or a date in year 9999 used to overflow `now +
timedelta(...)` inside the record transaction; a `chargeId` longer than the
column or holding a control character used to fail the whole batch on
PostgreSQL. Here they become a bounded wait and an unknown outcome.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from antaeus.payments.http import ClientKind, interpret, retry_after
from antaeus.payments.provider import (
    Charged,
    KeyInUseError,
    OutcomeUnknownError,
    RateLimitedError,
    valid_charge_id,
)
from tests.payments.test_http_adapter import (
    CLIENTS,
    answering,
    charge_once,
    http_answer,
    raw,
    raw_server,
)

HUGE = ["1e300", "1e308", "99999999999999999999", "Fri, 31 Dec 9999 23:59:59 GMT"]


@pytest.mark.parametrize("header", HUGE)
@pytest.mark.parametrize(
    ("status", "error", "exc"),
    [(429, "rate_limited", RateLimitedError), (409, "idempotency_key_in_use", KeyInUseError)],
)
def test_a_huge_retry_after_is_clamped(
    header: str, status: int, error: str, exc: type[Exception]
) -> None:
    with pytest.raises(exc) as info:  # type: ignore[call-overload]
        interpret(raw(status, {"error": error}, {"Retry-After": header}), retry_after_max=45.0)
    assert info.value.retry_after == 45.0


@pytest.mark.parametrize("header", ["-5", "-1e300", "Thu, 01 Jan 1970 00:00:00 GMT"])
def test_a_negative_or_past_retry_after_waits_nothing(header: str) -> None:
    assert retry_after(header, max_seconds=45.0) == 0.0


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(st.none(), st.text(max_size=40)), most=st.floats(0, 3600))
def test_retry_after_is_always_within_zero_and_the_maximum(value: str | None, most: float) -> None:
    seconds = retry_after(value, max_seconds=most)
    assert 0.0 <= seconds <= most


@pytest.mark.parametrize(
    "charge_id",
    ["x" * 256, "ch_\u0000", "ch\n1", "ch\r1", "\u0007", "ch_\u2028", "ch\t1", ""],
)
def test_a_malformed_charge_id_is_an_unknown_outcome(charge_id: str) -> None:
    with pytest.raises(OutcomeUnknownError, match="well-formed charge id"):
        interpret(raw(200, {"chargeId": charge_id, "status": "charged"}))


@pytest.mark.parametrize("charge_id", ["x" * 255, "ch_1", "ch 1", "ch_ünïcødé"])
def test_a_well_formed_charge_id_is_charged(charge_id: str) -> None:
    assert interpret(raw(200, {"chargeId": charge_id, "status": "charged"})) == Charged(charge_id)
    assert valid_charge_id(charge_id)


@pytest.mark.parametrize("client_kind", CLIENTS)
async def test_the_adapter_clamps_retry_after_to_its_setting(client_kind: ClientKind) -> None:
    answer = http_answer(429, {"error": "rate_limited"}, {"Retry-After": "1e300"})
    async with raw_server(answering(answer)) as server:
        with pytest.raises(RateLimitedError) as info:
            await charge_once(server.base_url, client_kind, retry_after_max=7.0)
    assert info.value.retry_after == 7.0


@pytest.mark.parametrize("client_kind", CLIENTS)
async def test_the_adapter_reads_a_nul_charge_id_as_unknown(client_kind: ClientKind) -> None:
    body = json.dumps({"chargeId": "ch_\u0000", "status": "charged"})
    async with raw_server(answering(http_answer(200, body))) as server:
        with pytest.raises(OutcomeUnknownError):
            await charge_once(server.base_url, client_kind)
