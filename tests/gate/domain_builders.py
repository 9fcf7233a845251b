"""Builders for gate-domain tests: a healthy baseline that individual tests make worse.

The baseline passes every rule with default thresholds, so a test that
changes one field sees exactly the reason that field triggers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from services.gate.domain.evaluate import Evaluation, evaluate
from services.gate.domain.reasons import BlockReasonCode
from services.gate.domain.signals import (
    BacktestSignal,
    LatencyPercentiles,
    Readiness,
    RunCounts,
    RunErrors,
    RunLatency,
    RunQueue,
    RunSummary,
    Signals,
    Unavailable,
)
from services.gate.domain.spec import ReleaseSpec, parse_spec
from services.runtime.config import Thresholds

NOW = datetime(2026, 1, 17, 16, 0, tzinfo=UTC)

BASE_SPEC_YAML = """\
release: "2026.01.17-rc1"
build: "git:abc1234"
tenant_id: pilot
window: 1h
facts: [tests_passed, smoke_passed]
"""

HEALTHY_FACTS: Mapping[str, bool] = {"tests_passed": True, "smoke_passed": True}


def make_spec(**fields: Any) -> ReleaseSpec:
    """The base spec with fields replaced (values are already-parsed Python values)."""
    return replace(parse_spec(BASE_SPEC_YAML), **fields)


def healthy_counts(**fields: int) -> RunCounts:
    base = RunCounts(
        total_invoices=100,
        incident_count=10,
        s1_count=1,
        s2_count=3,
        ocr_suspect_count=1,
        resolved_count=10,
        feedback_count=5,
        accept_rounding_count=10,
    )
    return replace(base, **fields)


def healthy_summary(
    *,
    counts: RunCounts | None = None,
    p95: float | None = 1500.0,
    latency_samples: int = 100,
    total_requests: int = 200,
    total_5xx: int = 0,
    max_depth: int = 3,
    stuck: bool = False,
) -> RunSummary:
    return RunSummary(
        counts=counts or healthy_counts(),
        latency=RunLatency(
            pipeline_total_ms=LatencyPercentiles(
                p50=800.0,
                p95=p95,
                p99=None if p95 is None else p95 * 1.2,
                sample_count=latency_samples,
            )
        ),
        errors=RunErrors(total_5xx=total_5xx, total_requests=total_requests),
        queue=RunQueue(current_depth=0, max_depth_in_period=max_depth, stuck_detected=stuck),
        tenant_id="pilot",
    )


def healthy_signals(
    *,
    readiness: Readiness | Unavailable | None = None,
    summary: RunSummary | Unavailable | None = None,
    backtest: BacktestSignal | Unavailable | None = None,
) -> Signals:
    return Signals(
        readiness=readiness or Readiness(ready=True),
        run_summary=summary or healthy_summary(),
        backtest=backtest,
    )


def run(
    *,
    spec: ReleaseSpec | None = None,
    facts: Mapping[str, bool] | None = None,
    signals: Signals | None = None,
    thresholds: Thresholds | None = None,
    first_seen: Mapping[BlockReasonCode, datetime] | None = None,
    now: datetime = NOW,
) -> Evaluation:
    """`evaluate` with the healthy baseline for everything not given."""
    return evaluate(
        spec or make_spec(),
        HEALTHY_FACTS if facts is None else facts,
        signals or healthy_signals(),
        thresholds or Thresholds(),
        first_seen or {},
        now,
    )
