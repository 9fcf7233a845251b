"""Reporting windows: `since`/`until` parsing and bounds (half-open `[start, end)`).

`since`/`until` accept an RFC 3339 timestamp with an offset (`2026-01-17T00:00:00Z`)
or a relative duration back from now (`90s`, `30m`, `24h`, `7d`, `2w`). A
missing `until` is now; a missing `since` is `DEFAULT_WINDOW` before `until`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from services.telemetry.domain.errors import TelemetryError

DEFAULT_WINDOW = timedelta(hours=24)
MAX_WINDOW = timedelta(days=31)
EARLIEST_INSTANT = datetime(2000, 1, 1, tzinfo=UTC)

_RELATIVE = re.compile(r"(\d{1,7})([smhdw])")
_UNIT_SECONDS = MappingProxyType({"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400})


@dataclass(frozen=True)
class TimeWindow:
    """A half-open interval `[start, end)` in UTC."""

    start: datetime
    end: datetime

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


def parse_duration(text: str, *, field: str) -> timedelta:
    """`24h` → 24 hours; raise `TelemetryError(INVALID_DURATION)` otherwise."""
    match = _RELATIVE.fullmatch(text.strip())
    if not match:
        raise TelemetryError(
            "INVALID_DURATION", f"{field} must look like 90s, 30m, 24h, 7d or 2w", field=field
        )
    return timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])


def parse_instant(text: str, *, now: datetime, field: str) -> datetime:
    """An RFC 3339 timestamp with offset, or a duration back from `now`."""
    text = text.strip()
    if _RELATIVE.fullmatch(text):
        try:
            return now - parse_duration(text, field=field)
        except OverflowError:
            raise TelemetryError("INVALID_TIME", f"{field} is too far back", field=field) from None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise TelemetryError(
            "INVALID_TIME",
            f"{field} must be an RFC 3339 timestamp (e.g. 2026-01-17T00:00:00Z) or like 24h",
            field=field,
        ) from None
    if value.tzinfo is None:
        raise TelemetryError(
            "INVALID_TIME", f"{field} must include a UTC offset (e.g. Z)", field=field
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+05:00 is before datetime's year 1 in UTC
        raise TelemetryError("INVALID_TIME", f"{field} is out of range", field=field) from None


def resolve_window(
    since: datetime | None,
    until: datetime | None,
    *,
    now: datetime,
    max_window: timedelta = MAX_WINDOW,
) -> TimeWindow:
    """Apply defaults and check `since < until`, the earliest instant and the maximum length."""
    end = until or now
    if end <= EARLIEST_INSTANT:  # also keeps `end - DEFAULT_WINDOW` inside datetime's range
        raise TelemetryError(
            "INVALID_WINDOW", f"until is not after {EARLIEST_INSTANT.date()}", field="until"
        )
    start = since or end - DEFAULT_WINDOW
    if start < EARLIEST_INSTANT:
        raise TelemetryError(
            "INVALID_WINDOW", f"since is before {EARLIEST_INSTANT.date()}", field="since"
        )
    if start >= end:
        raise TelemetryError("INVALID_WINDOW", "since must be before until", field="since")
    if end - start > max_window:
        raise TelemetryError(
            "WINDOW_TOO_LARGE",
            f"the window may span at most {max_window.days} days",
            field="since",
        )
    return TimeWindow(start.astimezone(UTC), end.astimezone(UTC))
