"""Preflight metrics (docs/seeds/000.txt): one `PreflightMetric` per run, a `MetricStore` of
cumulative counters and recent runs, and `MetricExporter` for JSON and Prometheus text.

Counters are cumulative and monotonic; every label of every counter map is
always present (zero included), so dashboards never see sparse series. Only the
most recent `max_recent` runs are kept for `query()`; the counters keep
counting after older runs are dropped.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from services.runtime import metric_registry as registry
from services.runtime.metric_stores.exposition import (
    Family,
    counter_family,
    render,
    scalar_family,
)
from services.runtime.metric_stores.labels import OVERRIDE_RESULTS, REASON_LABELS, VERDICT_LABELS
from services.runtime.metric_stores.persistence import (
    PersistentStore,
    StoreFormatError,
    restore_counts,
    zero_counts,
)

DEFAULT_MAX_RECENT = 1000

_REASON_SET = frozenset(REASON_LABELS)


def normalize_verdict(value: str) -> str:
    """`RELEASE_OK`, `VERDICT_RELEASE_OK`, `release_ok` or `OK` → `release_ok`."""
    text = value.strip().lower().removeprefix("verdict_")
    if not text.startswith("release_"):
        text = f"release_{text}"
    if text not in VERDICT_LABELS:
        raise ValueError(f"unknown verdict {value!r}")
    return text


def normalize_reason(value: str) -> str:
    """`BLOCK_REASON_CODE_S1_RATE_HIGH` or `S1_RATE_HIGH` → `S1_RATE_HIGH` (not checked)."""
    return value.strip().upper().removeprefix("BLOCK_REASON_CODE_")


def derive_override_result(
    *,
    override_attempted: bool,
    override_applied: bool,
    contract_breach: bool,
    verdict_before_override: str,
) -> str:
    """The `override_result` of a run (docs/SPEC.md §5.3).

    breach: a non-overridable reason was present (contract breach);
    applied: the override turned the verdict into OK;
    ignored: a token was given but the verdict was already OK (token untouched);
    rejected: a token was given and not applied (invalid, expired, used, mismatched);
    none: no override attempt.
    """
    if contract_breach:
        return "breach"
    if override_applied:
        return "applied"
    if not override_attempted:
        return "none"
    if normalize_verdict(verdict_before_override) == "release_ok":
        return "ignored"
    return "rejected"


@dataclass(frozen=True)
class PreflightMetric:
    """The metric record of one preflight run (immutable)."""

    timestamp: datetime
    verdict: str
    exit_code: int
    reasons: tuple[str, ...]
    override_applied: bool
    contract_breach: bool
    override_result: str
    duration_ms: float
    spec_hash: str

    def __post_init__(self) -> None:
        if self.timestamp.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")
        if self.verdict not in VERDICT_LABELS:
            raise ValueError(f"verdict must be one of {VERDICT_LABELS}, got {self.verdict!r}")
        if self.override_result not in OVERRIDE_RESULTS:
            raise ValueError(f"override_result must be one of {OVERRIDE_RESULTS}")
        if self.override_applied != (self.override_result == "applied"):
            raise ValueError("override_applied must be true exactly when override_result=applied")
        if self.override_result == "breach" and not self.contract_breach:
            raise ValueError("override_result=breach requires contract_breach")
        if not isinstance(self.reasons, tuple) or not all(isinstance(r, str) for r in self.reasons):
            raise ValueError("reasons must be a tuple of strings")
        if not math.isfinite(self.duration_ms) or self.duration_ms < 0:
            raise ValueError("duration_ms must be finite and non-negative")

    def to_dict(self) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp.astimezone(UTC).isoformat(),
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "reasons": list(self.reasons),
            "override_applied": self.override_applied,
            "contract_breach": self.contract_breach,
            "override_result": self.override_result,
            "duration_ms": self.duration_ms,
            "spec_hash": self.spec_hash,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreflightMetric:
        """Inverse of `to_dict`; raises `StoreFormatError` on a malformed record."""
        try:
            reasons = data["reasons"]
            if not isinstance(reasons, list):
                raise TypeError("reasons must be a list")
            duration = data["duration_ms"]
            if isinstance(duration, bool) or not isinstance(duration, int | float):
                raise TypeError("duration_ms must be a number")
            exit_code = data["exit_code"]
            if isinstance(exit_code, bool) or not isinstance(exit_code, int):
                raise TypeError("exit_code must be an integer")
            flags = (data["override_applied"], data["contract_breach"])
            if not all(isinstance(flag, bool) for flag in flags):
                raise TypeError("override_applied and contract_breach must be booleans")
            return cls(
                timestamp=datetime.fromisoformat(str(data["timestamp"])),
                verdict=str(data["verdict"]),
                exit_code=exit_code,
                reasons=tuple(reasons),
                override_applied=flags[0],
                contract_breach=flags[1],
                override_result=str(data["override_result"]),
                duration_ms=float(duration),
                spec_hash=str(data["spec_hash"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreFormatError(f"malformed preflight metric: {exc}") from exc


class MetricStore(PersistentStore):
    """Thread- and task-safe store of preflight runs (cumulative counters + recent runs).

    Every method holds one lock for its whole duration and never awaits, so it
    is safe from threads and from asyncio tasks alike.
    """

    FILE_NAME: ClassVar[str] = "preflight_metrics.json"

    def __init__(
        self, *, max_recent: int = DEFAULT_MAX_RECENT, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(clock=clock)
        self._recent: deque[PreflightMetric] = deque(maxlen=max_recent)
        self._verdict_counts = zero_counts(VERDICT_LABELS)
        self._reason_counts = zero_counts(REASON_LABELS)
        self._override_counts = zero_counts(OVERRIDE_RESULTS)

    def add(self, metric: PreflightMetric) -> None:
        """Count one run: its verdict, each distinct known reason once, its override result."""
        with self._lock:
            self._recent.append(metric)
            self._verdict_counts[metric.verdict] += 1
            for reason in dict.fromkeys(metric.reasons):
                if reason in _REASON_SET:
                    self._reason_counts[reason] += 1
            self._override_counts[metric.override_result] += 1

    def query(
        self, verdict: str | None = None, since: datetime | None = None
    ) -> list[PreflightMetric]:
        """Recent runs, oldest first, optionally of one verdict and at/after `since`."""
        wanted = normalize_verdict(verdict) if verdict is not None else None
        with self._lock:
            return [
                m
                for m in self._recent
                if (wanted is None or m.verdict == wanted)
                and (since is None or m.timestamp >= since)
            ]

    def __len__(self) -> int:
        """Number of recent runs held (at most `max_recent`)."""
        with self._lock:
            return len(self._recent)

    def verdict_counts(self) -> dict[str, int]:
        """`{"release_ok": N, "release_hold": N, "release_block": N}`."""
        with self._lock:
            return dict(self._verdict_counts)

    def reason_counts(self) -> dict[str, int]:
        """Every `BlockReasonCode` name with its count, zero included."""
        with self._lock:
            return dict(self._reason_counts)

    def override_counts(self) -> dict[str, int]:
        """`{"applied", "rejected", "breach", "ignored", "none"}` counts."""
        with self._lock:
            return dict(self._override_counts)

    def _counters_to_dict(self) -> dict[str, Any]:
        return {
            "verdict_counts": dict(self._verdict_counts),
            "reason_counts": dict(self._reason_counts),
            "override_counts": dict(self._override_counts),
        }

    def _extra_to_dict(self) -> dict[str, Any]:
        return {"metrics": [m.to_dict() for m in self._recent]}

    def _counters_from_dict(self, data: Mapping[str, Any]) -> None:
        self._verdict_counts = restore_counts(data, "verdict_counts", VERDICT_LABELS)
        self._reason_counts = restore_counts(data, "reason_counts", REASON_LABELS)
        self._override_counts = restore_counts(data, "override_counts", OVERRIDE_RESULTS)
        metrics = data.get("metrics", [])
        if not isinstance(metrics, list):
            raise StoreFormatError("metrics must be a list")
        self._recent.extend(PreflightMetric.from_dict(m) for m in metrics)


def _reasons_from_output(raw: Any) -> tuple[str, ...]:
    items: Iterable[Any] = raw if isinstance(raw, list | tuple) else ()
    names_: list[str] = []
    for item in items:
        code = item.get("code") if isinstance(item, Mapping) else item
        if isinstance(code, str) and normalize_reason(code) in _REASON_SET:
            names_.append(normalize_reason(code))
    return tuple(dict.fromkeys(names_))


class MetricExporter:
    """Conversions of preflight results and stores to metric formats (deterministic)."""

    @staticmethod
    def from_preflight_output(
        output: Mapping[str, Any], *, now: datetime | None = None
    ) -> PreflightMetric:
        """A `PreflightMetric` from a preflight result as JSON (`gatectl preflight --json`).

        Reasons may be names or `{"code": name, ...}` objects, with or without
        the `BLOCK_REASON_CODE_` prefix; unknown ones are dropped (bounded
        labels). Without `override_result` it is derived (see
        `derive_override_result`), using `override_attempted` when present.
        Raises `ValueError` when the verdict is missing or unknown.
        """
        verdict = normalize_verdict(str(output.get("verdict", "")))
        applied = bool(output.get("override_applied", False))
        breach = bool(output.get("contract_breach", False))
        given = str(output.get("override_result", "")).strip().lower()
        given = given.removeprefix("override_result_")
        if given in OVERRIDE_RESULTS:
            result = given
        else:
            result = derive_override_result(
                override_attempted=bool(output.get("override_attempted", False)),
                override_applied=applied,
                contract_breach=breach,
                verdict_before_override=verdict,
            )
        stamp = output.get("evaluated_at") or output.get("timestamp")
        timestamp = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
        if timestamp is None or timestamp.tzinfo is None:
            timestamp = now or datetime.now(UTC)
        duration = output.get("duration_ms", 0.0)
        exit_code = output.get("exit_code")
        return PreflightMetric(
            timestamp=timestamp,
            verdict=verdict,
            exit_code=exit_code if isinstance(exit_code, int) else VERDICT_LABELS.index(verdict),
            reasons=_reasons_from_output(output.get("reasons", [])),
            override_applied=applied,
            contract_breach=breach,
            override_result=result,
            duration_ms=float(duration) if isinstance(duration, int | float) else 0.0,
            spec_hash=str(output.get("spec_hash", "")),
        )

    @staticmethod
    def export_json(store: MetricStore) -> str:
        """The whole store as JSON with sorted keys: equal stores give identical text."""
        return json.dumps(store.to_dict(), sort_keys=True, indent=2)

    @staticmethod
    def families(store: MetricStore) -> list[Family]:
        """The store's metric families in their fixed output order."""
        snapshot = store.counter_snapshot()
        verdicts, reasons = snapshot["verdict_counts"], snapshot["reason_counts"]
        overrides = snapshot["override_counts"]
        return [
            counter_family(registry.PREFLIGHT_VERDICTS, ((v, verdicts[v]) for v in VERDICT_LABELS)),
            counter_family(registry.PREFLIGHT_REASONS, ((r, reasons[r]) for r in REASON_LABELS)),
            counter_family(
                registry.PREFLIGHT_OVERRIDES, ((o, overrides[o]) for o in OVERRIDE_RESULTS)
            ),
            scalar_family(
                registry.PREFLIGHT_METRIC_WRITE_FAILURES, snapshot["metric_write_failures"]
            ),
            scalar_family(registry.PREFLIGHT_STORE_LOAD_FAILURES, snapshot["load_failures"]),
            scalar_family(registry.PREFLIGHT_STORE_GENERATION, snapshot["store_generation"]),
            scalar_family(registry.PREFLIGHT_STORE_START_TIME, snapshot["store_start_timestamp"]),
        ]

    @staticmethod
    def export_prometheus(store: MetricStore) -> str:
        """Prometheus text exposition with HELP/TYPE lines; fixed order, every label present."""
        return render(MetricExporter.families(store))
