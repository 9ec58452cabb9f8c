"""Settings that would break the no-double-charge promise are refused at start-up."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from antaeus.config import Settings, settings_error_message


def _settings(**kw: Any) -> Settings:
    return Settings(DATABASE_URL="sqlite:///unused.db", **kw)


def _refused(**kw: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        _settings(**kw)
    return settings_error_message(caught.value)


def test_the_defaults_keep_the_promise() -> None:
    s = _settings()
    assert s.KEY_RETENTION_MARGIN >= (
        s.PAYMENT_PROVIDER_TIMEOUT + s.RETRY_AFTER_MAX_SECONDS + s.LEASE_SECONDS
    )


def test_a_margin_of_zero_is_refused() -> None:
    message = _refused(KEY_RETENTION_MARGIN=0)
    assert "ANTAEUS_KEY_RETENTION_MARGIN" in message


@pytest.mark.parametrize("value", [3601, 10**9, float("inf")])
def test_an_unbounded_retry_after_wait_is_refused(value: float) -> None:
    message = _refused(RETRY_AFTER_MAX_SECONDS=value)
    assert "ANTAEUS_RETRY_AFTER_MAX_SECONDS" in message


def test_a_margin_shorter_than_a_claim_can_take_is_refused() -> None:
    message = _refused(KEY_RETENTION_MARGIN=100)
    assert message == (
        "ANTAEUS_KEY_RETENTION_MARGIN (100 s) must be at least ANTAEUS_PAYMENT_PROVIDER_TIMEOUT"
        " + ANTAEUS_RETRY_AFTER_MAX_SECONDS + ANTAEUS_LEASE_SECONDS (60 + 60 + 60 = 180 s): a claim"
        " made just before the cut could otherwise send after the provider forgot the key"
    )


@pytest.mark.parametrize(
    ("margin", "timeout", "retry_after", "lease", "ok"),
    [
        (180, 60, 60, 60, True),
        (179, 60, 60, 60, False),
        (3600, 3600, 0, 5, False),
        (7200, 3600, 3600, 3600, False),
        (10800, 3600, 3600, 3600, True),
        (1, 1, 0, 5, False),
    ],
)
def test_the_margin_covers_timeout_retry_after_and_lease(
    margin: int, timeout: float, retry_after: float, lease: int, ok: bool
) -> None:
    kw = {
        "KEY_RETENTION_MARGIN": margin,
        "PAYMENT_PROVIDER_TIMEOUT": timeout,
        "RETRY_AFTER_MAX_SECONDS": retry_after,
        "LEASE_SECONDS": lease,
        "PROVIDER_KEY_RETENTION": 86_400,
    }
    if ok:
        accepted_margin = _settings(**kw).KEY_RETENTION_MARGIN
        assert accepted_margin == margin
    else:
        assert "must be at least" in _refused(**kw)


def test_the_margin_stays_shorter_than_the_retention() -> None:
    message = _refused(PROVIDER_KEY_RETENTION=3600, KEY_RETENTION_MARGIN=3600)
    assert "ANTAEUS_KEY_RETENTION_MARGIN" in message
    assert "ANTAEUS_PROVIDER_KEY_RETENTION" in message


def test_an_error_message_is_one_line_without_the_values_given() -> None:
    secret = "hunter2-do-not-print"
    with pytest.raises(ValidationError) as caught:
        Settings(
            KEY_RETENTION_MARGIN=0,
            PORT=0,
            API_TOKEN=secret,
            DATABASE_URL=f"postgresql://app:{secret}@db/antaeus",
        )
    message = settings_error_message(caught.value)
    assert "\n" not in message
    assert secret not in message
    assert "ANTAEUS_PORT" in message
    assert "ANTAEUS_KEY_RETENTION_MARGIN" in message
    assert "pydantic.dev" not in message


def test_credentials_in_the_provider_url_and_an_api_key_are_refused() -> None:
    """Both would be the Authorization header: aiohttp refuses every call with a ValueError."""
    message = _refused(
        PAYMENT_PROVIDER_URL="https://user:pw@pay.example.com", PAYMENT_PROVIDER_API_KEY="sk"
    )
    assert "ANTAEUS_PAYMENT_PROVIDER_URL" in message
    assert "ANTAEUS_PAYMENT_PROVIDER_API_KEY" in message
    assert "pw@" not in message
    Settings(PAYMENT_PROVIDER_URL="https://user:pw@pay.example.com")  # alone, fine


def test_worker_defaults_are_the_settings_defaults() -> None:
    """One home for each default: a Worker built without settings runs as `antaeus worker`."""
    from antaeus.billing.worker import WorkerSettings, worker_settings

    assert WorkerSettings() == worker_settings(_settings())


def test_an_empty_api_token_is_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    # compose's `ANTAEUS_API_TOKEN: ${ANTAEUS_API_TOKEN:-}` sets it empty: serve must then
    # create and print the first token, as when the variable is unset
    for empty in ("", "   "):
        monkeypatch.setenv("ANTAEUS_API_TOKEN", empty)
        assert Settings().API_TOKEN is None


def test_setting_names_come_from_the_model() -> None:
    from antaeus.config import setting_names

    names = setting_names()
    assert {f"ANTAEUS_{field}" for field in Settings.model_fields} == names
    assert "ANTAEUS_SCHEDULE" in names


def test_an_unknown_variable_names_the_closest_setting() -> None:
    from antaeus.config import unknown_variables

    assert unknown_variables(["ANTAEUS_SCHEDUL", "HOME", "ANTAEUS_SCHEDULE"]) == [
        "ANTAEUS_SCHEDUL is not a setting (did you mean ANTAEUS_SCHEDULE?)"
    ]
    assert unknown_variables(["ANTAEUS_URL"], allowed=["ANTAEUS_URL"]) == []
    assert unknown_variables(["ANTAEUS_TEST_POSTGRES_URL", "ANTAEUS_FUZZ_X"]) == []
    assert unknown_variables(["ANTAEUS_FAILPOINT", "ANTAEUS_SUPERVISOR_FD"]) == []
