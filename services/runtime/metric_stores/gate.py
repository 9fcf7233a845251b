"""Release gate metrics (docs/seeds/001.txt): `GateMetricStore` counters and `GateMetricExporter`.

Label sets are fixed (`_DECISION_LABELS`, `_REASON_LABELS`, `_BREACH_KINDS`):
recording an unknown reason or breach kind is skipped silently, so no caller
input can ever create a new label value. Emission is meant to be fail-open:
callers wrap it so a metrics problem never changes a gate decision.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from services.runtime import metric_registry as registry
from services.runtime.metric_stores.exposition import (
    Family,
    counter_family,
    render,
    scalar_family,
)
from services.runtime.metric_stores.labels import BREACH_KINDS, DECISION_LABELS, REASON_LABELS
from services.runtime.metric_stores.persistence import (
    PersistentStore,
    require_count,
    restore_counts,
    zero_counts,
)

_DECISION_LABELS: tuple[str, ...] = DECISION_LABELS
_REASON_LABELS: tuple[str, ...] = REASON_LABELS
_BREACH_KINDS: tuple[str, ...] = BREACH_KINDS
_REASON_SET = frozenset(_REASON_LABELS)
DEFAULT_BREACH_KIND = "NO_OVERRIDE"


class GateMetricStore(PersistentStore):
    """Thread- and task-safe counters of gate decisions, reasons, breaches and failures."""

    FILE_NAME: ClassVar[str] = "gate_metrics.json"

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self._decision_counts = zero_counts(_DECISION_LABELS)
        self._reason_counts = zero_counts(_REASON_LABELS)
        self._breach_counts = zero_counts(_BREACH_KINDS)
        self._audit_write_failures = 0

    def record_decision(self, allowed: bool, reasons: Iterable[str] = ()) -> None:
        """Count one decision and each distinct known reason once; unknown reasons are skipped."""
        with self._lock:
            self._decision_counts["ALLOW" if allowed else "DENY"] += 1
            for reason in dict.fromkeys(reasons):
                if reason in _REASON_SET:
                    self._reason_counts[reason] += 1

    def record_breach(self, kind: str = DEFAULT_BREACH_KIND) -> None:
        """Count one contract breach (`NO_OVERRIDE`, docs/seeds/001.txt); unknown kinds: skipped."""
        with self._lock:
            if kind in self._breach_counts:
                self._breach_counts[kind] += 1

    def record_audit_write_failure(self) -> None:
        with self._lock:
            self._audit_write_failures += 1

    def decision_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._decision_counts)

    def reason_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._reason_counts)

    def breach_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._breach_counts)

    def audit_write_failures(self) -> int:
        with self._lock:
            return self._audit_write_failures

    def _counters_to_dict(self) -> dict[str, Any]:
        return {
            "decision_counts": dict(self._decision_counts),
            "reason_counts": dict(self._reason_counts),
            "breach_counts": dict(self._breach_counts),
            "audit_write_failures": self._audit_write_failures,
        }

    def _counters_from_dict(self, data: Mapping[str, Any]) -> None:
        self._decision_counts = restore_counts(data, "decision_counts", _DECISION_LABELS)
        self._reason_counts = restore_counts(data, "reason_counts", _REASON_LABELS)
        self._breach_counts = restore_counts(data, "breach_counts", _BREACH_KINDS)
        self._audit_write_failures = require_count(data, "audit_write_failures")


class GateMetricExporter:
    """JSON and Prometheus text exports of a `GateMetricStore` (deterministic)."""

    @staticmethod
    def export_json(store: GateMetricStore) -> str:
        return json.dumps(store.to_dict(), sort_keys=True, indent=2)

    @staticmethod
    def families(store: GateMetricStore) -> list[Family]:
        """The store's metric families in fixed output order (names: docs/seeds/001.txt §1.3)."""
        snapshot = store.counter_snapshot()
        decisions, reasons = snapshot["decision_counts"], snapshot["reason_counts"]
        breaches = snapshot["breach_counts"]
        return [
            counter_family(registry.GATE_DECISIONS, ((d, decisions[d]) for d in _DECISION_LABELS)),
            counter_family(registry.GATE_REASONS, ((r, reasons[r]) for r in _REASON_LABELS)),
            counter_family(
                registry.GATE_CONTRACT_BREACHES, ((k, breaches[k]) for k in _BREACH_KINDS)
            ),
            scalar_family(registry.GATE_AUDIT_WRITE_FAILURES, snapshot["audit_write_failures"]),
            scalar_family(registry.GATE_METRIC_WRITE_FAILURES, snapshot["metric_write_failures"]),
            scalar_family(registry.GATE_STORE_LOAD_FAILURES, snapshot["load_failures"]),
            scalar_family(registry.GATE_STORE_GENERATION, snapshot["store_generation"]),
            scalar_family(registry.GATE_STORE_START_TIME, snapshot["store_start_timestamp"]),
        ]

    @staticmethod
    def export_prometheus(store: GateMetricStore) -> str:
        """Prometheus text exposition with HELP/TYPE lines; fixed order, every label present."""
        return render(GateMetricExporter.families(store))
