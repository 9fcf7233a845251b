"""Preflight and gate metric stores shared by the telemetry and gate services and gatectl.

Pure Python (standard library plus the generated `ptf.gate.v1` enums for label
sets): in-memory counters with fixed label sets, crash-safe JSON persistence
and deterministic JSON/Prometheus exports (docs/SPEC.md §4.2, docs/seeds/000.txt and
docs/seeds/001.txt).
`otel.py` bridges them to an OpenTelemetry meter for services' `/metrics`.
"""

from services.runtime.metric_stores.atomic import REAL_FILE_OPS, FileOps, atomic_write_bytes
from services.runtime.metric_stores.gate import GateMetricExporter, GateMetricStore
from services.runtime.metric_stores.labels import (
    BREACH_KINDS,
    DECISION_LABELS,
    OVERRIDE_RESULTS,
    REASON_LABELS,
    VERDICT_LABELS,
)
from services.runtime.metric_stores.persistence import LoadStatus, StoreFormatError
from services.runtime.metric_stores.preflight import (
    MetricExporter,
    MetricStore,
    PreflightMetric,
    derive_override_result,
    normalize_verdict,
)

__all__ = [
    "BREACH_KINDS",
    "DECISION_LABELS",
    "OVERRIDE_RESULTS",
    "REAL_FILE_OPS",
    "REASON_LABELS",
    "VERDICT_LABELS",
    "FileOps",
    "GateMetricExporter",
    "GateMetricStore",
    "LoadStatus",
    "MetricExporter",
    "MetricStore",
    "PreflightMetric",
    "StoreFormatError",
    "atomic_write_bytes",
    "derive_override_result",
    "normalize_verdict",
]
