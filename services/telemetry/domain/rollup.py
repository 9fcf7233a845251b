"""Which parts of a reporting window come from rollups and which from raw events.

The event store keeps per-(tenant, UTC hour) rollups of the summary counts, errors
and latency histogram, and per-minute rollups of the counts and errors (migrations
0002, 0003). A window `[start, end)` reads its whole hours from the hourly rollups;
inside the partial hours at its edges, the counts read whole minutes from the minute
rollups and only the seconds at the very edges from raw events, while the latency
histogram reads the partial hours from raw events. A window shorter than an hour
has no whole hour and is read from minutes and raw rows only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.telemetry.domain.window import TimeWindow

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


def _floor(instant: datetime, period: timedelta) -> datetime:
    utc = instant.astimezone(UTC)
    if period == HOUR:
        return utc.replace(minute=0, second=0, microsecond=0)
    return utc.replace(second=0, microsecond=0)


def split(window: TimeWindow, period: timedelta) -> tuple[TimeWindow, TimeWindow, TimeWindow]:
    """(head, whole periods, tail) of `window`; empty parts have start == end."""
    first = _floor(window.start, period)
    if first < window.start:
        first += period
    last = _floor(window.end, period)
    if first >= last:
        empty = TimeWindow(window.end, window.end)
        return window, empty, empty
    return TimeWindow(window.start, first), TimeWindow(first, last), TimeWindow(last, window.end)


def _non_empty(*parts: TimeWindow) -> tuple[TimeWindow, ...]:
    return tuple(part for part in parts if part.start < part.end)


@dataclass(frozen=True)
class SummaryPlan:
    """The pieces of one run summary's window."""

    hours: TimeWindow
    partial_hours: tuple[TimeWindow, ...]
    minutes: tuple[TimeWindow, ...]
    raw: tuple[TimeWindow, ...]


def plan_summary(window: TimeWindow) -> SummaryPlan:
    head, hours, tail = split(window, HOUR)
    minutes: list[TimeWindow] = []
    raw: list[TimeWindow] = []
    for part in _non_empty(head, tail):
        before, whole, after = split(part, MINUTE)
        minutes.extend(_non_empty(whole))
        raw.extend(_non_empty(before, after))
    return SummaryPlan(hours, _non_empty(head, tail), tuple(minutes), tuple(raw))
