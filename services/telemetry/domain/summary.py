"""Run summary: counts in, rates and documents out.

See docs/SPEC.md §4.1, docs/seeds/002.txt §6 and docs/seeds/003.txt §5.1.

Rates are the formulas of docs/SPEC.md §4.1 and are `None` (JSON `null`, proto unset)
when their denominator is zero, never a division error:

    mismatch_rate      = incident_count / total_invoices
    s1_rate            = s1_count / incident_count
    ocr_suspect_rate   = ocr_suspect_count / incident_count
    feedback_coverage  = feedback_count / resolved_count
    hint_accuracy_rate = hint_correct_count / feedback_count

Counts are counted events in the window: invoices = INVOICE_PROCESSED,
incidents = INCIDENT_CREATED (S1/S2 by severity, OCR suspects by
`ocr_suspect`), resolved = INCIDENT_RESOLVED, feedback = FEEDBACK_SUBMITTED
(correct hints by `hint_correct`), accept-rounding = INVOICE_PROCESSED with
`accept_rounding`. Errors are HTTP_REQUEST events with status ≥ 400, by code.
Queue: current depth = the latest QUEUE_SAMPLE in the window, max depth over
the window, stuck when any sample in the window said so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.runtime.timestamps import utc_timestamp
from services.telemetry.domain.window import TimeWindow

LOG_RATE_DIGITS = 4


def rate(numerator: int, denominator: int) -> float | None:
    """`numerator / denominator`, or None when the denominator is zero."""
    if denominator <= 0:
        return None
    return numerator / denominator


@dataclass(frozen=True)
class SummaryCounts:
    total_invoices: int = 0
    incident_count: int = 0
    s1_count: int = 0
    s2_count: int = 0
    ocr_suspect_count: int = 0
    resolved_count: int = 0
    feedback_count: int = 0
    hint_correct_count: int = 0
    accept_rounding_count: int = 0


@dataclass(frozen=True)
class SummaryRates:
    mismatch_rate: float | None
    s1_rate: float | None
    ocr_suspect_rate: float | None
    feedback_coverage: float | None
    hint_accuracy_rate: float | None

    @classmethod
    def from_counts(cls, counts: SummaryCounts) -> SummaryRates:
        return cls(
            mismatch_rate=rate(counts.incident_count, counts.total_invoices),
            s1_rate=rate(counts.s1_count, counts.incident_count),
            ocr_suspect_rate=rate(counts.ocr_suspect_count, counts.incident_count),
            feedback_coverage=rate(counts.feedback_count, counts.resolved_count),
            hint_accuracy_rate=rate(counts.hint_correct_count, counts.feedback_count),
        )

    def as_dict(self) -> dict[str, float | None]:
        return {
            "mismatch_rate": self.mismatch_rate,
            "s1_rate": self.s1_rate,
            "ocr_suspect_rate": self.ocr_suspect_rate,
            "feedback_coverage": self.feedback_coverage,
            "hint_accuracy_rate": self.hint_accuracy_rate,
        }


@dataclass(frozen=True)
class Percentiles:
    """p50/p95/p99 (continuous percentiles); all None without samples."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    sample_count: int = 0

    def as_dict(self) -> dict[str, float | None]:
        return {"p50": self.p50, "p95": self.p95, "p99": self.p99}


@dataclass(frozen=True)
class ErrorCounts:
    """HTTP outcomes: error responses by status code plus the number of requests."""

    by_code: Mapping[int, int] = field(default_factory=dict)
    total_requests: int = 0

    @property
    def total_4xx(self) -> int:
        return sum(n for code, n in self.by_code.items() if 400 <= code < 500)

    @property
    def total_5xx(self) -> int:
        return sum(n for code, n in self.by_code.items() if 500 <= code < 600)


@dataclass(frozen=True)
class QueueStats:
    current_depth: int = 0
    max_depth_in_period: int = 0
    stuck_detected: bool = False


@dataclass(frozen=True)
class RunSummary:
    """One run summary for a window and an optional tenant (None: all tenants)."""

    generated_at: datetime
    window: TimeWindow
    tenant_id: str | None
    counts: SummaryCounts
    pipeline_total_ms: Percentiles
    extraction_ms: Percentiles
    errors: ErrorCounts
    queue: QueueStats

    @property
    def rates(self) -> SummaryRates:
        return SummaryRates.from_counts(self.counts)

    def to_json(self) -> dict[str, Any]:
        """The document of docs/seeds/002.txt §6.1 plus `counts.accept_rounding_count`."""
        c = self.counts
        return {
            "generated_at": utc_timestamp(self.generated_at, milliseconds=True),
            "period": {
                "start": utc_timestamp(self.window.start, milliseconds=True),
                "end": utc_timestamp(self.window.end, milliseconds=True),
            },
            "counts": {
                "total_invoices": c.total_invoices,
                "incident_count": c.incident_count,
                "s1_count": c.s1_count,
                "s2_count": c.s2_count,
                "ocr_suspect_count": c.ocr_suspect_count,
                "resolved_count": c.resolved_count,
                "feedback_count": c.feedback_count,
                "accept_rounding_count": c.accept_rounding_count,
            },
            "rates": self.rates.as_dict(),
            "latency": {
                "pipeline_total_ms": self.pipeline_total_ms.as_dict(),
                "extraction_ms": self.extraction_ms.as_dict(),
            },
            "errors": {
                "by_code": {str(code): n for code, n in sorted(self.errors.by_code.items())},
                "total_4xx": self.errors.total_4xx,
                "total_5xx": self.errors.total_5xx,
            },
            "queue": {
                "current_depth": self.queue.current_depth,
                "max_depth_in_period": self.queue.max_depth_in_period,
                "stuck_detected": self.queue.stuck_detected,
            },
        }

    def to_log_record(self, *, build_id: str, config_hash: str) -> dict[str, Any]:
        """The `run_summary` JSON log line (docs/seeds/003.txt §5.1), rates rounded for reading."""

        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, LOG_RATE_DIGITS)

        r, c = self.rates, self.counts
        return {
            "event": "run_summary",
            "timestamp": utc_timestamp(self.generated_at, milliseconds=True),
            "build_id": build_id,
            "config_hash": config_hash,
            "tenant_id": self.tenant_id,
            "period": {
                "start": utc_timestamp(self.window.start, milliseconds=True),
                "end": utc_timestamp(self.window.end, milliseconds=True),
            },
            "counts": {
                "total_invoices": c.total_invoices,
                "incident_count": c.incident_count,
                "s1_count": c.s1_count,
                "s2_count": c.s2_count,
                "ocr_suspect_count": c.ocr_suspect_count,
                "accept_rounding_count": c.accept_rounding_count,
            },
            "rates": {
                "mismatch_rate": rounded(r.mismatch_rate),
                "s1_rate": rounded(r.s1_rate),
                "ocr_suspect_rate": rounded(r.ocr_suspect_rate),
                "feedback_coverage": rounded(r.feedback_coverage),
            },
            "latency": {"p95_pipeline_total_ms": self.pipeline_total_ms.p95},
            "queue": {
                "depth": self.queue.current_depth,
                "max_depth": self.queue.max_depth_in_period,
            },
            "errors": {"4xx": self.errors.total_4xx, "5xx": self.errors.total_5xx},
        }
