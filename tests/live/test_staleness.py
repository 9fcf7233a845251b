"""`compute_staleness` from the age of a channel's last event and the config thresholds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.runtime.config.operations import LiveSettings
from services.runtime.live.staleness import Staleness, compute_staleness

NOW = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)
SETTINGS = LiveSettings(stale_after_seconds=60.0, dead_after_seconds=300.0)


@pytest.mark.parametrize(
    ("age_seconds", "expected"),
    [
        (0, Staleness.FRESH),
        (59.9, Staleness.FRESH),
        (60, Staleness.STALE),
        (299.9, Staleness.STALE),
        (300, Staleness.DEAD),
        (-30, Staleness.FRESH),
    ],
)
def test_staleness_follows_the_age_of_the_last_event(
    age_seconds: float, expected: Staleness
) -> None:
    last = NOW - timedelta(seconds=age_seconds)
    assert compute_staleness(last, NOW, SETTINGS) is expected


def test_a_channel_without_any_event_is_dead() -> None:
    assert compute_staleness(None, NOW, SETTINGS) is Staleness.DEAD


def test_live_settings_refuse_inverted_thresholds() -> None:
    assert LiveSettings(stale_after_seconds=10, dead_after_seconds=5).problems()
    assert LiveSettings(subscriber_buffer=0).problems()
    assert LiveSettings().problems() == []
