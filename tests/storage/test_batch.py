"""The fast SQLite datetime text is exactly what the column type stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from antaeus.storage.batch import _SQLITE_FORMAT, sqlite_datetime

ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8)),
     ZoneInfo("Europe/Copenhagen"), ZoneInfo("UTC")]
)  # fmt: skip


@given(
    moment=st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 30), timezones=ZONES
    )
)
def test_matches_the_stored_format_for_any_zone(moment: datetime) -> None:
    expected = moment.astimezone(UTC).strftime(_SQLITE_FORMAT)
    assert sqlite_datetime(moment) == expected
    assert datetime.strptime(sqlite_datetime(moment), _SQLITE_FORMAT).replace(
        tzinfo=UTC
    ) == moment.astimezone(UTC)


def test_whole_seconds_keep_their_microseconds() -> None:
    assert sqlite_datetime(datetime(2026, 12, 1, tzinfo=UTC)) == "2026-12-01 00:00:00.000000"


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        sqlite_datetime(datetime(2026, 12, 1))
