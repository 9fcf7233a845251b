"""The one place a channel's freshness is decided: `fresh`, `stale` or `dead`.

Readiness, the health channel and dashboards all call `compute_staleness`, so
an operator never sees two components disagree about the same channel.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from services.runtime.config.operations import LiveSettings


class Staleness(StrEnum):
    FRESH = "fresh"
    STALE = "stale"
    DEAD = "dead"


def compute_staleness(
    last_event_at: datetime | None, now: datetime, settings: LiveSettings
) -> Staleness:
    """`dead` with no event yet; otherwise by the age of the last event against the thresholds.

    A last event in the future (clock skew between replicas) counts as age 0.
    """
    if last_event_at is None:
        return Staleness.DEAD
    age = max(0.0, (now - last_event_at).total_seconds())
    if age >= settings.dead_after_seconds:
        return Staleness.DEAD
    if age >= settings.stale_after_seconds:
        return Staleness.STALE
    return Staleness.FRESH
