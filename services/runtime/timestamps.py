"""The one way ptf-admin writes an instant as text: RFC 3339 in UTC with a `Z`.

Readiness, the telemetry reports and the CLIs all show times to people and to
scripts that compare them; one formatter keeps every service's output in the
same shape (`2026-01-17T16:00:00Z`) instead of a mix of `Z` and `+00:00`.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_timestamp(moment: datetime, *, milliseconds: bool = False) -> str:
    """`moment` in UTC as `YYYY-MM-DDTHH:MM:SSZ`.

    Sub-second digits are dropped, unless `milliseconds` is set and the instant
    is not a whole second (`...:00.250Z`): reports that order events within a
    second keep them, labels meant for reading do not. A naive `moment` is
    refused, since it would otherwise be read as the host's local time.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r} has no time zone; pass an aware datetime")
    utc = moment.astimezone(UTC)
    spec = "milliseconds" if milliseconds and utc.microsecond else "seconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"
