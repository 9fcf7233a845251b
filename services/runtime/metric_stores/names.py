"""Exported metric names of the preflight and gate stores: the one place they are spelled.

Names ending in `_total` are the names Prometheus sees. The OpenTelemetry
Prometheus exporter appends `_total` to counters itself, so an OTel counter is
created under `otel_counter_name(<name>)` (the name without the suffix).
"""

from __future__ import annotations

# Preflight store (seed 000, SPEC §9).
PREFLIGHT_VERDICT_TOTAL = "release_preflight_verdict_total"
PREFLIGHT_REASON_TOTAL = "release_preflight_reason_total"
PREFLIGHT_OVERRIDE_TOTAL = "release_preflight_override_total"
PREFLIGHT_METRIC_WRITE_FAILURES_TOTAL = "release_preflight_metric_write_failures_total"
PREFLIGHT_STORE_LOAD_FAILURES_TOTAL = "release_preflight_store_load_failures_total"
PREFLIGHT_STORE_GENERATION = "release_preflight_store_generation"
PREFLIGHT_STORE_START_TIME = "release_preflight_store_start_time_seconds"

# Gate store (seed 001 §1.3).
GATE_DECISION_TOTAL = "release_gate_decision_total"
GATE_REASON_TOTAL = "release_gate_reason_total"
GATE_CONTRACT_BREACH_TOTAL = "release_gate_contract_breach_total"
GATE_AUDIT_WRITE_FAILURES_TOTAL = "release_gate_audit_write_failures_total"
GATE_METRIC_WRITE_FAILURES_TOTAL = "release_gate_metric_write_failures_total"
GATE_STORE_LOAD_FAILURES_TOTAL = "release_gate_store_load_failures_total"
GATE_STORE_GENERATION = "release_gate_store_generation"
GATE_STORE_START_TIME = "release_gate_store_start_time_seconds"

_TOTAL = "_total"


def otel_counter_name(exported_name: str) -> str:
    """The OTel instrument name that the Prometheus exporter turns into `exported_name`."""
    if not exported_name.endswith(_TOTAL):
        raise ValueError(f"{exported_name} is not a counter name ending in {_TOTAL}")
    return exported_name.removesuffix(_TOTAL)
