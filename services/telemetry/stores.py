"""The telemetry-owned preflight and gate metric stores, persisted under `config.metrics_dir`.

Only the preflight store is exported on telemetry's `/metrics`: `release_gate_*`
has one owner, the gate, so a query without a `job` selector never adds two
services' counts. The gate store is still kept and saved here, as the record
of the GATE_DECISION events telemetry received.

Saves run in a worker thread (they fsync) and are fail-open: a failed save is
counted in the store and logged, never turned into an RPC error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from opentelemetry.metrics import Meter

from services.runtime.metric_stores import GateMetricStore, MetricStore, PreflightMetric
from services.runtime.metric_stores.otel import register_preflight_store


@dataclass(frozen=True)
class GateDecision:
    """What a GATE_DECISION event contributes to the gate store."""

    allowed: bool
    reasons: tuple[str, ...]
    contract_breach: bool
    breach_kind: str
    audit_write_failed: bool


class TelemetryMetricStores:
    """Both stores plus the directory they live in."""

    def __init__(self, directory: Path, preflight: MetricStore, gate: GateMetricStore) -> None:
        self.directory = directory
        self.preflight = preflight
        self.gate = gate

    @classmethod
    async def load(cls, directory: Path) -> TelemetryMetricStores:
        """Load both stores (fail-open: a missing or corrupt file gives a fresh store)."""
        preflight = await asyncio.to_thread(MetricStore.load_from_dir, directory)
        gate = await asyncio.to_thread(GateMetricStore.load_from_dir, directory)
        return cls(directory, preflight, gate)

    def register_metrics(self, meter: Meter) -> None:
        """Expose the preflight store's totals on `/metrics` through observable instruments."""
        register_preflight_store(meter, self.preflight)

    async def record_preflights(self, metrics: Iterable[PreflightMetric]) -> int:
        """Count preflight runs, save once; return the store generation after the save."""
        for metric in metrics:
            self.preflight.add(metric)
        await asyncio.to_thread(self.preflight.save_to_dir, self.directory)
        return self.preflight.store_generation()

    async def record_gate_decisions(self, decisions: Iterable[GateDecision]) -> None:
        """Count gate decisions (with their breaches and audit failures), then save once."""
        for decision in decisions:
            self.gate.record_decision(decision.allowed, decision.reasons)
            if decision.contract_breach:
                self.gate.record_breach(decision.breach_kind)
            if decision.audit_write_failed:
                self.gate.record_audit_write_failure()
        await asyncio.to_thread(self.gate.save_to_dir, self.directory)
