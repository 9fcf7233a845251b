"""The shared UTC timestamp formatter: one text shape for every service's instants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.runtime.timestamps import utc_timestamp

NOW = datetime(2026, 1, 17, 16, 0, tzinfo=UTC)


def test_a_whole_second_is_written_with_z() -> None:
    assert utc_timestamp(NOW) == "2026-01-17T16:00:00Z"


def test_sub_second_digits_are_dropped_by_default() -> None:
    assert utc_timestamp(NOW.replace(microsecond=999_999)) == "2026-01-17T16:00:00Z"


def test_milliseconds_are_kept_when_asked_and_not_a_whole_second() -> None:
    moment = NOW.replace(microsecond=250_900)
    assert utc_timestamp(moment, milliseconds=True) == "2026-01-17T16:00:00.250Z"
    assert utc_timestamp(NOW, milliseconds=True) == "2026-01-17T16:00:00Z"


def test_another_offset_is_converted_to_utc() -> None:
    istanbul = timezone(timedelta(hours=3))
    assert utc_timestamp(datetime(2026, 1, 17, 19, 0, tzinfo=istanbul)) == "2026-01-17T16:00:00Z"


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        utc_timestamp(datetime(2026, 1, 17, 16, 0))


@given(st.datetimes(timezones=st.just(UTC), min_value=datetime(1970, 1, 1)))
def test_the_text_parses_back_to_the_same_second(moment: datetime) -> None:
    assert datetime.fromisoformat(utc_timestamp(moment)) == moment.replace(microsecond=0)
