"""How a summary window splits into hourly rollups, minute rollups and raw edges."""

from __future__ import annotations

from datetime import UTC, datetime

from services.telemetry.domain.rollup import plan_summary
from services.telemetry.domain.window import TimeWindow


def _at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 1, 17, hour, minute, second, tzinfo=UTC)


def test_window_with_partial_edges_reads_whole_hours_minutes_and_raw_seconds() -> None:
    plan = plan_summary(TimeWindow(_at(10, 0, 30), _at(12, 15)))
    assert plan.hours == TimeWindow(_at(11), _at(12))
    assert plan.partial_hours == (
        TimeWindow(_at(10, 0, 30), _at(11)),
        TimeWindow(_at(12), _at(12, 15)),
    )
    assert plan.minutes == (TimeWindow(_at(10, 1), _at(11)), TimeWindow(_at(12), _at(12, 15)))
    assert plan.raw == (TimeWindow(_at(10, 0, 30), _at(10, 1)),)


def test_aligned_window_reads_hourly_rollups_only() -> None:
    plan = plan_summary(TimeWindow(_at(0), _at(23)))
    assert plan.hours == TimeWindow(_at(0), _at(23))
    assert (plan.partial_hours, plan.minutes, plan.raw) == ((), (), ())


def test_window_inside_one_minute_is_read_from_raw_rows_only() -> None:
    window = TimeWindow(_at(9, 5, 10), _at(9, 5, 50))
    plan = plan_summary(window)
    assert plan.hours.start == plan.hours.end
    assert (plan.partial_hours, plan.minutes, plan.raw) == ((window,), (), (window,))
