"""How a reporting window splits into rolled-up whole hours and raw partial edges.

The event store keeps per-(tenant, UTC hour) rollups (migration 0002). A window
`[start, end)` reads the whole hours `[first_hour, last_hour)` from them and only
the partial hours at its edges, `[start, first_hour)` and `[last_hour, end)`, from
raw events. A window inside one hour (or two partial ones) has no whole hour: it is
read entirely from raw rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.telemetry.domain.window import TimeWindow

ROLLUP_PERIOD = timedelta(hours=1)


def _floor_hour(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class RollupSplit:
    """`hours` from the rollups, `head` and `tail` (possibly empty) from raw events."""

    head: TimeWindow
    hours: TimeWindow
    tail: TimeWindow


def split_window(window: TimeWindow) -> RollupSplit:
    first = _floor_hour(window.start)
    if first < window.start:
        first += ROLLUP_PERIOD
    last = _floor_hour(window.end)
    if first >= last:
        empty = TimeWindow(window.end, window.end)
        return RollupSplit(head=window, hours=empty, tail=empty)
    return RollupSplit(
        head=TimeWindow(window.start, first),
        hours=TimeWindow(first, last),
        tail=TimeWindow(last, window.end),
    )
