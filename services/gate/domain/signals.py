"""Signal snapshots the gate judges: readiness, the run summary and an optional backtest.

Adapters fill these from the health, telemetry and pipeline services. Each
source is either a snapshot or `Unavailable`, so the evaluator cannot forget
that a source failed and answer OK on missing data. Snapshots validate
themselves (counts non-negative, numbers finite): an adapter that receives
garbage turns the `ValueError` into `Unavailable` instead of letting a
nonsensical number reach a verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


class SignalSource(StrEnum):
    """Where a signal comes from; the `signal` of a SIGNAL_UNAVAILABLE reason."""

    READINESS = "readiness"
    RUN_SUMMARY = "run_summary"
    BACKTEST = "backtest"


@dataclass(frozen=True)
class Unavailable:
    """A source that could not be read (timeout, connection refused, malformed reply)."""

    source: SignalSource
    error: str


def _require_counts(obj: DataclassInstance) -> None:
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            raise ValueError(f"{type(obj).__name__}.{f.name} must be >= 0, got {value}")


def _require_finite(obj: DataclassInstance) -> None:
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, float) and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{type(obj).__name__}.{f.name} must be finite and >= 0, got {value}")


@dataclass(frozen=True)
class Readiness:
    """The system's readiness (health service `Ready`), reduced to what the gate judges."""

    ready: bool
    # The `config` check passed: deployed thresholds validate.
    config_ok: bool = True
    # The `queue` check reports stuck (depth > 0 and nothing finished).
    queue_stuck: bool = False
    failing_checks: tuple[str, ...] = ()
    build_id: str = ""
    config_hash: str = ""


@dataclass(frozen=True)
class RunCounts:
    """`RunSummaryCounts` of the telemetry contract."""

    total_invoices: int = 0
    incident_count: int = 0
    s1_count: int = 0
    s2_count: int = 0
    ocr_suspect_count: int = 0
    resolved_count: int = 0
    feedback_count: int = 0
    accept_rounding_count: int = 0

    def __post_init__(self) -> None:
        _require_counts(self)


@dataclass(frozen=True)
class RunRates:
    """`RunSummaryRates`: None where the denominator was zero.

    Kept for the audit snapshot; the evaluator recomputes rates from the
    counts because it needs the denominators as sample sizes anyway.
    """

    mismatch_rate: float | None = None
    s1_rate: float | None = None
    ocr_suspect_rate: float | None = None
    feedback_coverage: float | None = None
    hint_accuracy_rate: float | None = None

    def __post_init__(self) -> None:
        _require_finite(self)


@dataclass(frozen=True)
class LatencyPercentiles:
    """Percentiles in milliseconds; None when there were no samples."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    sample_count: int = 0

    def __post_init__(self) -> None:
        _require_counts(self)
        _require_finite(self)


@dataclass(frozen=True)
class RunLatency:
    pipeline_total_ms: LatencyPercentiles = field(default_factory=LatencyPercentiles)
    extraction_ms: LatencyPercentiles = field(default_factory=LatencyPercentiles)


@dataclass(frozen=True)
class RunErrors:
    """HTTP outcomes in the window; `total_requests` is the 5xx-rate denominator."""

    by_code: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    total_4xx: int = 0
    total_5xx: int = 0
    total_requests: int = 0

    def __post_init__(self) -> None:
        _require_counts(self)
        if any(count < 0 for count in self.by_code.values()):
            raise ValueError("RunErrors.by_code counts must be >= 0")


@dataclass(frozen=True)
class RunQueue:
    current_depth: int = 0
    max_depth_in_period: int = 0
    stuck_detected: bool = False

    def __post_init__(self) -> None:
        _require_counts(self)


@dataclass(frozen=True)
class RunSummary:
    """The telemetry `RunSummary` for the spec's tenant and window."""

    counts: RunCounts = field(default_factory=RunCounts)
    rates: RunRates = field(default_factory=RunRates)
    latency: RunLatency = field(default_factory=RunLatency)
    errors: RunErrors = field(default_factory=RunErrors)
    queue: RunQueue = field(default_factory=RunQueue)
    tenant_id: str = ""
    generated_at: datetime | None = None


@dataclass(frozen=True)
class BacktestSignal:
    """Old vs candidate incident counts of a (possibly unfinished) backtest (docs/SPEC.md §3.7)."""

    backtest_id: str
    complete: bool
    invoices: int = 0
    old_incident_count: int = 0
    new_incident_count: int = 0
    # S1 incidents under the running and under the candidate thresholds.
    old_s1_count: int = 0
    new_s1_count: int = 0
    result_hash: str = ""

    def __post_init__(self) -> None:
        _require_counts(self)


@dataclass(frozen=True)
class Signals:
    """Everything the evaluator reads besides the spec and the caller's facts.

    `backtest` is None when no backtest was fetched; a spec that names a
    backtest then sees it as unavailable.
    """

    readiness: Readiness | Unavailable
    run_summary: RunSummary | Unavailable
    backtest: BacktestSignal | Unavailable | None = None

    def unavailable(self) -> tuple[Unavailable, ...]:
        """Every source that could not be read."""
        sources = (self.readiness, self.run_summary, self.backtest)
        return tuple(s for s in sources if isinstance(s, Unavailable))


def snapshot(signals: Signals) -> dict[str, Any]:
    """JSON-ready copy of the signals, stored with each audit row (docs/SPEC.md §5.4)."""
    out: dict[str, Any] = {}
    for name in ("readiness", "run_summary", "backtest"):
        value = getattr(signals, name)
        if isinstance(value, Unavailable):
            out[name] = {"unavailable": value.error}
        else:
            out[name] = _jsonable(value)
    return out


def _jsonable(value: Any) -> Any:
    # Not dataclasses.asdict: it deep-copies, and mapping proxies cannot be copied.
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
