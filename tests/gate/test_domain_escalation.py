"""Escalation HOLD → BLOCK from injected first-seen times (SPEC §5.2, seed 003 §6.3)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from services.gate.domain.evaluate import Evaluation
from services.gate.domain.reasons import BlockReasonCode, ReasonLevel, Verdict
from services.runtime.config import GateThresholds, Thresholds
from tests.gate.domain_builders import (
    NOW,
    healthy_counts,
    healthy_signals,
    healthy_summary,
    make_spec,
    run,
)

B = BlockReasonCode
S1_SPIKE = healthy_summary(
    counts=healthy_counts(incident_count=40, s1_count=20, s2_count=0, ocr_suspect_count=0)
)
LATENCY_SPIKE = healthy_summary(p95=9000.0)
LOW_FEEDBACK = healthy_summary(counts=healthy_counts(resolved_count=40, feedback_count=0))


def _held(summary: object, code: BlockReasonCode, minutes: float, **kwargs: object) -> Evaluation:
    return run(
        signals=healthy_signals(summary=summary),  # type: ignore[arg-type]
        first_seen={code: NOW - timedelta(minutes=minutes)},
        **kwargs,  # type: ignore[arg-type]
    )


def test_s1_hold_one_second_before_15_minutes_stays_hold() -> None:
    evaluation = _held(S1_SPIKE, B.S1_RATE_HIGH, 15 - 1 / 60)
    assert evaluation.verdict is Verdict.RELEASE_HOLD
    assert evaluation.reasons[0].escalated is False
    assert "becomes BLOCK at 15 min" in evaluation.reasons[0].message


def test_s1_hold_escalates_to_block_at_exactly_15_minutes() -> None:
    evaluation = _held(S1_SPIKE, B.S1_RATE_HIGH, 15)
    reason = evaluation.reasons[0]
    assert evaluation.verdict is Verdict.RELEASE_BLOCK
    assert reason.level is ReasonLevel.BLOCK
    assert reason.escalated is True
    assert "escalated to BLOCK" in reason.message


def test_latency_hold_escalates_at_exactly_30_minutes_not_before() -> None:
    before = _held(LATENCY_SPIKE, B.P95_LATENCY_HIGH, 30 - 1 / 60)
    at = _held(LATENCY_SPIKE, B.P95_LATENCY_HIGH, 30)
    assert before.verdict is Verdict.RELEASE_HOLD
    assert at.verdict is Verdict.RELEASE_BLOCK


def test_feedback_coverage_never_escalates() -> None:
    evaluation = _held(LOW_FEEDBACK, B.FEEDBACK_COVERAGE_LOW, 60 * 24 * 30)
    assert evaluation.verdict is Verdict.RELEASE_HOLD
    assert evaluation.reasons[0].escalated is False


def test_escalation_minutes_come_from_deployed_thresholds() -> None:
    thresholds = Thresholds(Gate=replace(GateThresholds(), S1_ESCALATE_MINUTES=5))
    assert _held(S1_SPIKE, B.S1_RATE_HIGH, 5, thresholds=thresholds).verdict is (
        Verdict.RELEASE_BLOCK
    )


def test_escalation_minutes_can_be_set_by_the_spec() -> None:
    spec = make_spec(slo={"LATENCY_ESCALATE_MINUTES": 10})
    assert _held(LATENCY_SPIKE, B.P95_LATENCY_HIGH, 10, spec=spec).verdict is (
        Verdict.RELEASE_BLOCK
    )


def test_first_seen_in_the_future_does_not_escalate() -> None:
    """Clock skew between replicas must not count as time held."""
    evaluation = _held(S1_SPIKE, B.S1_RATE_HIGH, -60)
    assert evaluation.verdict is Verdict.RELEASE_HOLD


def test_new_reasons_are_reported_as_newly_seen() -> None:
    evaluation = run(signals=healthy_signals(summary=S1_SPIKE))
    assert evaluation.newly_seen == {B.S1_RATE_HIGH}
    assert evaluation.cleared == frozenset()
    assert evaluation.reasons[0].escalated is False


def test_reason_already_tracked_is_not_newly_seen() -> None:
    evaluation = _held(S1_SPIKE, B.S1_RATE_HIGH, 3)
    assert evaluation.newly_seen == frozenset()


def test_reasons_gone_are_reported_as_cleared() -> None:
    evaluation = _held(healthy_summary(), B.S1_RATE_HIGH, 3)
    assert evaluation.verdict is Verdict.RELEASE_OK
    assert evaluation.cleared == {B.S1_RATE_HIGH}


def test_cleared_and_reappearing_reason_starts_its_clock_again() -> None:
    """After clearing, the adapter forgets the time; the next sighting is new (held 0 min)."""
    evaluation = run(signals=healthy_signals(summary=S1_SPIKE), first_seen={})
    assert evaluation.verdict is Verdict.RELEASE_HOLD
    assert B.S1_RATE_HIGH in evaluation.newly_seen
