"""Assembles the `/health/ready` report from bounded checks, cached with single flight.

Each evaluation's report is handed to `on_report` (the health gauges), and
`refresh_forever` re-evaluates through the same cache at a fixed interval, so
the gauges stay current when no probe arrives and never add a second
evaluation when probes do.

With a `HealthFeed`, each evaluation then publishes on the `health` live
channel (when due) and the report's `live` section shows that channel's
staleness as Redis holds it after the publish. Staleness is shown, never a
check: `dead` does not make the system not ready. The channel is health's own
feed, so its age says whether the live layer carries health's events, not
whether the invoice pipeline works; a Redis outage that matters to the
pipeline already fails the checks that depend on it (queue, services), and a
readiness that went 503 because a dashboard feed aged would page for the
wrong thing and, at a first start (no event yet, `dead`), for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from services.health.checks import Check, bounded
from services.health.live_feed import HealthFeed
from services.health.report import CheckResult, ReadinessReport
from services.runtime.cache import SingleFlightCache
from services.runtime.config import AppConfig
from services.runtime.live.channels import HEALTH

PilotBlock = Callable[[], Awaitable[dict[str, Any]]]
ReportSink = Callable[[ReadinessReport], None]
Activity = Callable[[], Awaitable[dict[str, str | None]]]


class Readiness:
    """Runs every check concurrently (each under its timeout) at most once per cache window."""

    def __init__(
        self,
        config: AppConfig,
        checks: Mapping[str, Check],
        pilot: PilotBlock,
        activity: Activity,
        on_report: ReportSink = lambda _: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        feed: HealthFeed | None = None,
    ) -> None:
        self._config = config
        self._checks = dict(checks)
        self._pilot = pilot
        self._activity = activity
        self._on_report = on_report
        self._clock = clock
        self._feed = feed
        self._timeout = config.thresholds.Health.CHECK_TIMEOUT_SECONDS
        self._cache = SingleFlightCache(self._evaluate, config.thresholds.Health.CACHE_SECONDS)

    async def report(self) -> ReadinessReport:
        return await self._cache.get()

    async def refresh_forever(self, interval_seconds: float) -> None:
        """Evaluate (or reuse the cached report) every `interval_seconds` until cancelled.

        The first evaluation comes one interval after start: a probe right after
        start gets a fresh evaluation, not one cached before its caller's change.
        """
        while True:
            await asyncio.sleep(interval_seconds)
            await self.report()

    async def _evaluate(self) -> ReadinessReport:
        names = list(self._checks)
        results, pilot, activity = await asyncio.gather(
            asyncio.gather(*(bounded(self._checks[n], self._timeout) for n in names)),
            self._optional(self._pilot),
            self._optional(self._activity),
        )
        checks: dict[str, CheckResult] = dict(zip(names, results, strict=True))
        report = ReadinessReport(
            timestamp=self._clock(),
            build_id=self._config.build_id,
            config_hash=self._config.config_hash,
            checks=checks,
            pilot=pilot,
            last_activity=activity or {},
        )
        if self._feed is not None:
            report = await self._with_live(report, self._feed)
        self._on_report(report)
        return report

    async def _with_live(self, report: ReadinessReport, feed: HealthFeed) -> ReadinessReport:
        """Publish `report` on the health channel (when due), then show the channel's age."""
        with contextlib.suppress(TimeoutError):  # shown below: the channel's last event ages
            await asyncio.wait_for(feed.publish(report), self._timeout)
        health = await self._optional(feed.staleness)
        if health is None:
            health = {"staleness": None, "message": f"timed out after {self._timeout:g}s"}
        return replace(report, live={HEALTH: health})

    async def _optional(self, part: Callable[[], Awaitable[Any]]) -> Any:
        """Informational blocks never fail readiness; they are omitted when unavailable."""
        try:
            return await asyncio.wait_for(part(), self._timeout)
        except Exception:
            return None
