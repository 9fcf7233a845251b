"""Reporting windows: `since`/`until` parsing, defaults and bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.telemetry.domain.errors import TelemetryError
from services.telemetry.domain.window import (
    MAX_WINDOW,
    parse_duration,
    parse_instant,
    resolve_window,
)

NOW = datetime(2026, 1, 17, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("24h", timedelta(days=1)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(days=14)),
    ],
)
def test_relative_duration_units(text: str, expected: timedelta) -> None:
    assert parse_duration(text, field="since") == expected


def test_relative_instant_counts_back_from_now() -> None:
    assert parse_instant("24h", now=NOW, field="since") == NOW - timedelta(hours=24)


def test_rfc3339_instant_with_offset_is_converted_to_utc() -> None:
    value = parse_instant("2026-01-17T19:00:00+03:00", now=NOW, field="since")
    assert value == NOW
    assert value.tzinfo is UTC


@pytest.mark.parametrize("text", ["2026-01-17T16:00:00", "2026-01-17", "yesterday", "24 h", "-1h"])
def test_unparseable_or_naive_instant_is_invalid_time(text: str) -> None:
    with pytest.raises(TelemetryError) as caught:
        parse_instant(text, now=NOW, field="since")
    assert (caught.value.error_code, caught.value.field) == ("INVALID_TIME", "since")


def test_window_defaults_to_the_last_24_hours() -> None:
    window = resolve_window(None, None, now=NOW)
    assert (window.start, window.end) == (NOW - timedelta(hours=24), NOW)


def test_window_longer_than_the_maximum_is_too_large() -> None:
    with pytest.raises(TelemetryError) as caught:
        resolve_window(NOW - MAX_WINDOW - timedelta(seconds=1), NOW, now=NOW)
    assert caught.value.error_code == "WINDOW_TOO_LARGE"


def test_window_of_exactly_the_maximum_is_allowed() -> None:
    assert resolve_window(NOW - MAX_WINDOW, NOW, now=NOW).duration == MAX_WINDOW


def test_empty_or_reversed_window_is_invalid() -> None:
    for since in (NOW, NOW + timedelta(seconds=1)):
        with pytest.raises(TelemetryError) as caught:
            resolve_window(since, NOW, now=NOW)
        assert caught.value.error_code == "INVALID_WINDOW"
