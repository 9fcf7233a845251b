"""The health service's side of the `health` live channel (docs/SPEC.md §8).

Each readiness evaluation may publish one `health.status` envelope: when the
verdict (ready, failing checks) differs from this process's last published
one, and otherwise once `refresh_seconds` have passed since its last
publish. The periodic readiness refresh runs at that interval, so a healthy
system keeps the channel's last event younger than the refresh interval
(which must stay below `PTF_LIVE_STALE_AFTER_SECONDS`), and the channel's age
says whether health is still publishing.

The staleness shown in readiness is read from Redis (the channel's newest
retained event), so every replica shows the same answer, and it is decided by
`compute_staleness`, the live layer's one rule.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError

from services.health.report import ReadinessReport
from services.runtime.config.operations import LiveSettings
from services.runtime.live.bus import LivePublisher
from services.runtime.live.channels import HEALTH
from services.runtime.live.staleness import compute_staleness
from services.runtime.timestamps import utc_timestamp

log = logging.getLogger(__name__)

STATUS_EVENT = "health.status"


def status_data(report: ReadinessReport) -> dict[str, Any]:
    """The `data` of a `health.status` envelope: the verdict and each check's status."""
    return {
        "status": "ready" if report.ready else "not_ready",
        "failing_checks": report.failing_checks,
        "checks": {name: result.status.value for name, result in report.checks.items()},
        "build_id": report.build_id,
        "config_hash": report.config_hash,
    }


class HealthFeed:
    """Publishes readiness on `health` and reads the channel's staleness back."""

    def __init__(
        self,
        publisher: LivePublisher,
        settings: LiveSettings,
        refresh_seconds: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._publisher = publisher
        self._settings = settings
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._last_verdict: tuple[bool, tuple[str, ...]] | None = None
        self._last_published_at: datetime | None = None

    async def publish(self, report: ReadinessReport) -> None:
        """Publish `report` if its verdict changed or the refresh interval passed; best effort."""
        verdict = (report.ready, tuple(report.failing_checks))
        now = self._clock()
        due = (
            self._last_published_at is None
            or (now - self._last_published_at).total_seconds() >= self._refresh_seconds
        )
        if verdict == self._last_verdict and not due:
            return
        try:
            await self._publisher.publish(HEALTH, STATUS_EVENT, status_data(report))
        except RedisError as exc:
            log.warning("could not publish on the health channel: %s", type(exc).__name__)
            return
        self._last_verdict = verdict
        self._last_published_at = now

    async def staleness(self) -> dict[str, Any]:
        """The `health` channel's block of the readiness report's `live` section.

        `staleness` is `fresh`, `stale` or `dead` by the age of the channel's
        newest event (`dead` when it has none); when Redis cannot be read it is
        null and `message` says why, since nothing can be said about the age.
        """
        try:
            last = await self._publisher.last_event(HEALTH)
        except RedisError as exc:
            return {
                "staleness": None,
                "message": f"live store unreachable ({type(exc).__name__})",
            }
        now = self._clock()
        block: dict[str, Any] = {
            "staleness": compute_staleness(
                None if last is None else last.ts, now, self._settings
            ).value
        }
        if last is not None:
            block["last_event_at"] = utc_timestamp(last.ts, milliseconds=True)
            block["age_seconds"] = round(max(0.0, (now - last.ts).total_seconds()), 3)
            block["last_seq"] = last.seq
        return block
