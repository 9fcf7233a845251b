"""Readiness as gauges: `ptf_health_ready` and `ptf_health_check_status{check}`.

Every readiness evaluation (a probe, a `Ready` RPC or the periodic refresh)
stores its report here; the gauges read the last one at scrape time, so an
alert on them sees what a probe would have seen, even when nobody probes.
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from services.health.report import CheckStatus, ReadinessReport
from services.runtime.metric_registry import HEALTH_CHECK_STATUS, HEALTH_READY
from services.runtime.metrics import observable_gauge

STATUS_VALUES: dict[CheckStatus, int] = {
    CheckStatus.OK: 0,
    CheckStatus.WARNING: 1,
    CheckStatus.ERROR: 2,
}
"""Gauge value of each check status (ordered: higher is worse)."""


class HealthMetrics:
    """Holds the last report; no sample is exported before the first evaluation."""

    def __init__(self, meter: Meter) -> None:
        self._last: ReadinessReport | None = None
        observable_gauge(meter, HEALTH_READY, self._observe_ready)
        observable_gauge(meter, HEALTH_CHECK_STATUS, self._observe_checks)

    def observe(self, report: ReadinessReport) -> None:
        self._last = report

    def _observe_ready(self, _: CallbackOptions) -> Iterable[Observation]:
        if self._last is None:
            return []
        return [Observation(1 if self._last.ready else 0)]

    def _observe_checks(self, _: CallbackOptions) -> Iterable[Observation]:
        if self._last is None:
            return []
        return [
            Observation(STATUS_VALUES[result.status], {"check": name})
            for name, result in self._last.checks.items()
        ]
