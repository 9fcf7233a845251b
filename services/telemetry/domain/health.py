"""System health report and drift rules (docs/SPEC.md §4.3): pure assembly from aggregated counts.

- Mismatch-ratio histogram: invoices with `has_mismatch` bucketed by
  `mismatch_ratio` at edges taken from config (`Mismatch.RATIO`,
  `Mismatch.SEVERE_RATIO`, `Validation.HARD_STOP_DELTA` as a ratio, and 1.0 —
  a total off by more than itself, the typical separator misread). Invoices
  without a mismatch are never counted, so a clean run has 0 in every bucket;
  mismatches without a ratio are counted as `unknown_ratio`.
- Distributions of `primary_flag` and `action_class` over created incidents.
- Top offenders: providers with at least `Drift.TOP_OFFENDERS_MIN_INVOICES`
  invoices, by incident rate (incidents / invoices), highest first.
- Drift: for all providers together and for each provider, the incident rate
  (incidents / invoices), S1 rate and OCR-suspect rate (per incident) of the
  window are compared with the baseline window (the `Drift.BASELINE_DAYS` before
  it). An alert needs both samples ≥ `Drift.MIN_SAMPLE`, an excess of at least
  `Drift.MIN_ABSOLUTE_DELTA` events over what the baseline rate predicts for
  the current sample, and a current rate ≥ `Drift.RATE_MULTIPLIER` × baseline.
- Digest alerts (`Thresholds.Alert`): bug-report rate (CALC_BUG incidents /
  incidents) > BUG_REPORT_RATE; exhausted rate (exhausted jobs / (processed
  invoices + exhausted jobs)) > EXHAUSTED_RATE; stuck queue samples ≥
  STUCK_COUNT; invoices recomputed (processed again) more than RECOMPUTE_LIMIT
  times.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

from services.runtime.config import AlertThresholds, DriftThresholds, Thresholds
from services.runtime.timestamps import utc_timestamp
from services.telemetry.domain.summary import rate
from services.telemetry.domain.window import TimeWindow

TOP_OFFENDERS_LIMIT = 10
ALL_PROVIDERS = "*"
BUG_FLAG = "CALC_BUG"


def baseline_window(window: TimeWindow, drift: DriftThresholds) -> TimeWindow:
    """The `Drift.BASELINE_DAYS` immediately before `window`."""
    return TimeWindow(window.start - timedelta(days=drift.BASELINE_DAYS), window.start)


def mismatch_bucket_edges(thresholds: Thresholds) -> tuple[float, ...]:
    """Ascending, distinct, positive bucket edges derived from the configured thresholds."""
    candidates = {
        thresholds.Mismatch.RATIO,
        thresholds.Mismatch.SEVERE_RATIO,
        thresholds.Validation.HARD_STOP_DELTA / 100,
        1.0,
    }
    return tuple(sorted(edge for edge in candidates if edge > 0))


def _edge_text(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:g}"


@dataclass(frozen=True)
class Bucket:
    lower: float
    upper: float
    count: int

    @property
    def label(self) -> str:
        return f"[{_edge_text(self.lower)}, {_edge_text(self.upper)})"


def histogram(edges: tuple[float, ...], counts_by_index: Mapping[int, int]) -> tuple[Bucket, ...]:
    """Buckets `[0, e1) [e1, e2) ... [en, inf)`; `counts_by_index` uses SQL width_bucket indexes."""
    bounds = (0.0, *edges, math.inf)
    return tuple(
        Bucket(bounds[i], bounds[i + 1], counts_by_index.get(i, 0)) for i in range(len(edges) + 1)
    )


@dataclass(frozen=True)
class ProviderStats:
    """Counts of one provider (or of all providers) in one window."""

    invoices: int = 0
    incidents: int = 0
    s1: int = 0
    ocr_suspects: int = 0

    def __add__(self, other: ProviderStats) -> ProviderStats:
        return ProviderStats(
            self.invoices + other.invoices,
            self.incidents + other.incidents,
            self.s1 + other.s1,
            self.ocr_suspects + other.ocr_suspects,
        )


def total(stats: Iterable[ProviderStats]) -> ProviderStats:
    result = ProviderStats()
    for item in stats:
        result = result + item
    return result


@dataclass(frozen=True)
class Offender:
    provider: str
    invoices: int
    incidents: int

    @property
    def incident_rate(self) -> float:
        return self.incidents / self.invoices


def top_offenders(
    providers: Mapping[str, ProviderStats], drift: DriftThresholds
) -> tuple[Offender, ...]:
    """Providers with enough invoices, highest incident rate first (ties: more incidents, name)."""
    eligible = [
        Offender(name, s.invoices, s.incidents)
        for name, s in providers.items()
        if s.invoices >= drift.TOP_OFFENDERS_MIN_INVOICES and s.invoices > 0
    ]
    eligible.sort(key=lambda o: (-Fraction(o.incidents, o.invoices), -o.incidents, o.provider))
    return tuple(eligible[:TOP_OFFENDERS_LIMIT])


def is_drift(
    current: int, current_sample: int, baseline: int, baseline_sample: int, drift: DriftThresholds
) -> bool:
    """The drift rule on counts, in exact arithmetic (see module docstring)."""
    if current_sample < drift.MIN_SAMPLE or baseline_sample < drift.MIN_SAMPLE:
        return False
    current_rate = Fraction(current, current_sample)
    baseline_rate = Fraction(baseline, baseline_sample)
    excess = current - baseline_rate * current_sample
    return excess >= drift.MIN_ABSOLUTE_DELTA and current_rate >= (
        Fraction(drift.RATE_MULTIPLIER) * baseline_rate
    )


@dataclass(frozen=True)
class DriftAlert:
    provider: str
    metric: str
    current_count: int
    current_sample: int
    baseline_count: int
    baseline_sample: int

    def as_dict(self) -> dict[str, Any]:
        baseline_rate = self.baseline_count / self.baseline_sample
        return {
            "provider": self.provider,
            "metric": self.metric,
            "current_rate": self.current_count / self.current_sample,
            "baseline_rate": baseline_rate,
            "current_count": self.current_count,
            "current_sample": self.current_sample,
            "expected_count": baseline_rate * self.current_sample,
            "baseline_count": self.baseline_count,
            "baseline_sample": self.baseline_sample,
        }


_DRIFT_METRICS: tuple[tuple[str, str, str], ...] = (
    ("incident_rate", "incidents", "invoices"),
    ("s1_rate", "s1", "incidents"),
    ("ocr_suspect_rate", "ocr_suspects", "incidents"),
)


def drift_alerts(
    current: Mapping[str, ProviderStats],
    baseline: Mapping[str, ProviderStats],
    drift: DriftThresholds,
) -> tuple[DriftAlert, ...]:
    """Drift alerts for all providers together (`*`) and for each provider, sorted."""
    scopes: dict[str, tuple[ProviderStats, ProviderStats]] = {
        ALL_PROVIDERS: (total(current.values()), total(baseline.values()))
    }
    for name in sorted(current):
        scopes[name] = (current[name], baseline.get(name, ProviderStats()))
    alerts = []
    for provider, (now, before) in scopes.items():
        for metric, numerator, denominator in _DRIFT_METRICS:
            counts = (
                getattr(now, numerator),
                getattr(now, denominator),
                getattr(before, numerator),
                getattr(before, denominator),
            )
            if is_drift(*counts, drift):
                alerts.append(DriftAlert(provider, metric, *counts))
    return tuple(alerts)


@dataclass(frozen=True)
class DigestInputs:
    """Aggregates the digest alerts need, counted over the report window."""

    incidents: int = 0
    bug_reports: int = 0
    invoices_processed: int = 0
    jobs_exhausted: int = 0
    stuck_samples: int = 0
    invoices_over_recompute_limit: int = 0
    error_5xx: int = 0


@dataclass(frozen=True)
class DigestAlert:
    code: str
    observed: float
    threshold: float
    sample: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "observed": self.observed,
            "threshold": self.threshold,
            "sample": self.sample,
        }


def digest_alerts(inputs: DigestInputs, alert: AlertThresholds) -> tuple[DigestAlert, ...]:
    """Alerts of `Thresholds.Alert` that fire for these aggregates, in a fixed order."""
    alerts: list[DigestAlert] = []
    bug_rate = rate(inputs.bug_reports, inputs.incidents)
    if bug_rate is not None and bug_rate > alert.BUG_REPORT_RATE:
        alerts.append(
            DigestAlert("BUG_REPORT_RATE_HIGH", bug_rate, alert.BUG_REPORT_RATE, inputs.incidents)
        )
    jobs = inputs.invoices_processed + inputs.jobs_exhausted
    exhausted_rate = rate(inputs.jobs_exhausted, jobs)
    if exhausted_rate is not None and exhausted_rate > alert.EXHAUSTED_RATE:
        alerts.append(
            DigestAlert("EXHAUSTED_RATE_HIGH", exhausted_rate, alert.EXHAUSTED_RATE, jobs)
        )
    if inputs.stuck_samples >= alert.STUCK_COUNT > 0:
        alerts.append(
            DigestAlert(
                "QUEUE_STUCK", inputs.stuck_samples, alert.STUCK_COUNT, inputs.stuck_samples
            )
        )
    if inputs.invoices_over_recompute_limit > 0:
        alerts.append(
            DigestAlert(
                "RECOMPUTE_LIMIT_EXCEEDED",
                inputs.invoices_over_recompute_limit,
                alert.RECOMPUTE_LIMIT,
                inputs.invoices_processed,
            )
        )
    return tuple(alerts)


@dataclass(frozen=True)
class HealthInputs:
    """Everything the repository aggregates for one report."""

    mismatch_buckets: Mapping[int, int] = field(default_factory=dict)
    mismatches_without_ratio: int = 0
    primary_flags: Mapping[str, int] = field(default_factory=dict)
    action_classes: Mapping[str, int] = field(default_factory=dict)
    providers: Mapping[str, ProviderStats] = field(default_factory=dict)
    baseline_providers: Mapping[str, ProviderStats] = field(default_factory=dict)
    digest: DigestInputs = field(default_factory=DigestInputs)


@dataclass(frozen=True)
class SystemHealthReport:
    generated_at: datetime
    window: TimeWindow
    baseline: TimeWindow
    tenant_id: str | None
    buckets: tuple[Bucket, ...]
    mismatches_without_ratio: int
    primary_flags: Mapping[str, int]
    action_classes: Mapping[str, int]
    offenders: tuple[Offender, ...]
    drift: tuple[DriftAlert, ...]
    digest: DigestInputs
    alerts: tuple[DigestAlert, ...]

    def to_json(self) -> dict[str, Any]:
        d = self.digest
        return {
            "generated_at": utc_timestamp(self.generated_at, milliseconds=True),
            "tenant_id": self.tenant_id,
            "period": {
                "start": utc_timestamp(self.window.start, milliseconds=True),
                "end": utc_timestamp(self.window.end, milliseconds=True),
            },
            "baseline_period": {
                "start": utc_timestamp(self.baseline.start, milliseconds=True),
                "end": utc_timestamp(self.baseline.end, milliseconds=True),
            },
            "mismatch_histogram": {
                "buckets": [
                    {
                        "label": b.label,
                        "lower": b.lower,
                        "upper": None if math.isinf(b.upper) else b.upper,
                        "count": b.count,
                    }
                    for b in self.buckets
                ],
                "unknown_ratio": self.mismatches_without_ratio,
                "total": sum(b.count for b in self.buckets) + self.mismatches_without_ratio,
            },
            "primary_flag_distribution": dict(sorted(self.primary_flags.items())),
            "action_class_distribution": dict(sorted(self.action_classes.items())),
            "top_offenders": [
                {
                    "provider": o.provider,
                    "invoices": o.invoices,
                    "incidents": o.incidents,
                    "incident_rate": o.incident_rate,
                }
                for o in self.offenders
            ],
            "drift_alerts": [a.as_dict() for a in self.drift],
            "digest": {
                "bug_report_rate": rate(d.bug_reports, d.incidents),
                "exhausted_rate": rate(d.jobs_exhausted, d.invoices_processed + d.jobs_exhausted),
                "stuck_count": d.stuck_samples,
                "recompute_over_limit_count": d.invoices_over_recompute_limit,
                "error_5xx_count": d.error_5xx,
            },
            "digest_alerts": [a.as_dict() for a in self.alerts],
            "errors": {"total_5xx": d.error_5xx},
        }


def build_report(
    inputs: HealthInputs,
    *,
    thresholds: Thresholds,
    window: TimeWindow,
    tenant_id: str | None,
    generated_at: datetime,
) -> SystemHealthReport:
    """Assemble the report from the aggregates of `window` and its baseline."""
    return SystemHealthReport(
        generated_at=generated_at,
        window=window,
        baseline=baseline_window(window, thresholds.Drift),
        tenant_id=tenant_id,
        buckets=histogram(mismatch_bucket_edges(thresholds), inputs.mismatch_buckets),
        mismatches_without_ratio=inputs.mismatches_without_ratio,
        primary_flags=inputs.primary_flags,
        action_classes=inputs.action_classes,
        offenders=top_offenders(inputs.providers, thresholds.Drift),
        drift=drift_alerts(inputs.providers, inputs.baseline_providers, thresholds.Drift),
        digest=inputs.digest,
        alerts=digest_alerts(inputs.digest, thresholds.Alert),
    )
