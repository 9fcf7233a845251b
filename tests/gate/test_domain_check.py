"""Check decision: ALLOW only for OK, fail-open metrics, GATE_AUDIT_REQUIRED."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.gate.domain.check import Decision, complete_check, decide
from services.gate.domain.evaluate import Evaluation
from services.gate.domain.override import OverrideOutcome, plan_override, resolve_override
from services.gate.domain.reasons import BlockReasonCode
from services.gate.domain.signals import Readiness
from services.runtime.tokens.errors import TokenError
from tests.gate.domain_builders import healthy_signals, healthy_summary, make_spec, run

B = BlockReasonCode


class Recorder:
    """Records calls like the seed 001 GateMetricStore would."""

    def __init__(self) -> None:
        self.decisions: list[tuple[bool, list[str]]] = []
        self.breaches = 0
        self.audit_failures = 0

    def record_decision(self, allowed: bool, reasons: Sequence[str]) -> None:
        self.decisions.append((allowed, list(reasons)))

    def record_breach(self) -> None:
        self.breaches += 1

    def record_audit_write_failure(self) -> None:
        self.audit_failures += 1


class RaisingRecorder:
    """A metric backend that is down: every call raises."""

    def record_decision(self, allowed: bool, reasons: Sequence[str]) -> None:
        raise OSError("metrics disk full")

    def record_breach(self) -> None:
        raise OSError("metrics disk full")

    def record_audit_write_failure(self) -> None:
        raise OSError("metrics disk full")


def _hold() -> Evaluation:
    return run(signals=healthy_signals(summary=healthy_summary(max_depth=99)))


def _outcome(evaluation: Evaluation, token_error: TokenError | None = None) -> OverrideOutcome:
    return resolve_override(plan_override(evaluation, token_presented=False), token_error)


def test_ok_verdict_is_allowed() -> None:
    recorder = Recorder()
    evaluation = run()
    result = complete_check(
        evaluation,
        _outcome(evaluation),
        audit_written=True,
        audit_required=False,
        recorder=recorder,
    )
    assert result.decision is Decision.ALLOW
    assert result.reasons == ()
    assert recorder.decisions == [(True, [])]


def test_hold_verdict_is_denied_with_its_reasons() -> None:
    recorder = Recorder()
    evaluation = _hold()
    result = complete_check(
        evaluation,
        _outcome(evaluation),
        audit_written=True,
        audit_required=False,
        recorder=recorder,
    )
    assert result.decision is Decision.DENY
    assert result.reasons == ("QUEUE_DEPTH_HIGH",)
    assert recorder.decisions == [(False, ["QUEUE_DEPTH_HIGH"])]


def test_applied_override_is_allowed() -> None:
    evaluation = _hold()
    outcome = resolve_override(plan_override(evaluation, token_presented=True), None)
    assert decide(outcome) is Decision.ALLOW


def test_rejected_override_is_denied() -> None:
    evaluation = _hold()
    outcome = resolve_override(
        plan_override(evaluation, token_presented=True), TokenError.TOKEN_EXPIRED
    )
    assert decide(outcome) is Decision.DENY


def test_raising_recorder_leaves_the_decision_unchanged(caplog: pytest.LogCaptureFixture) -> None:
    evaluation = run()
    with caplog.at_level(logging.WARNING, logger="services.gate.domain.check"):
        result = complete_check(
            evaluation,
            _outcome(evaluation),
            audit_written=False,
            audit_required=False,
            recorder=RaisingRecorder(),
        )
    assert result.decision is Decision.ALLOW
    assert result.metric_failures == 2
    assert "decision unchanged" in caplog.text


def test_contract_breach_is_recorded() -> None:
    recorder = Recorder()
    spec = make_spec(non_overridable=frozenset({B.NOT_READY}))
    evaluation = run(spec=spec, signals=healthy_signals(readiness=Readiness(ready=False)))
    complete_check(
        evaluation,
        _outcome(evaluation),
        audit_written=True,
        audit_required=False,
        recorder=recorder,
    )
    assert recorder.breaches == 1


def test_audit_failure_denies_when_audit_is_required() -> None:
    recorder = Recorder()
    evaluation = run()
    result = complete_check(
        evaluation,
        _outcome(evaluation),
        audit_written=False,
        audit_required=True,
        recorder=recorder,
    )
    assert result.decision is Decision.DENY
    assert result.denied_by_audit is True
    assert recorder.audit_failures == 1
    assert recorder.decisions == [(False, [])]


def test_audit_failure_leaves_the_decision_when_not_required() -> None:
    recorder = Recorder()
    evaluation = run()
    result = complete_check(
        evaluation,
        _outcome(evaluation),
        audit_written=False,
        audit_required=False,
        recorder=recorder,
    )
    assert result.decision is Decision.ALLOW
    assert result.denied_by_audit is False
    assert recorder.audit_failures == 1


@settings(max_examples=200, deadline=None)
@given(
    depth=st.integers(0, 100),
    ready=st.booleans(),
    token=st.booleans(),
    token_error=st.none() | st.sampled_from(list(TokenError)),
    audit_written=st.booleans(),
    audit_required=st.booleans(),
)
def test_metric_failures_never_change_the_decision_property(
    depth: int,
    ready: bool,
    token: bool,
    token_error: TokenError | None,
    audit_written: bool,
    audit_required: bool,
) -> None:
    evaluation = run(
        signals=healthy_signals(
            readiness=Readiness(ready=ready), summary=healthy_summary(max_depth=depth)
        )
    )
    outcome = resolve_override(plan_override(evaluation, token), token_error)
    kwargs = {"audit_written": audit_written, "audit_required": audit_required}
    working = complete_check(evaluation, outcome, recorder=Recorder(), **kwargs)
    broken = complete_check(evaluation, outcome, recorder=RaisingRecorder(), **kwargs)
    assert broken.decision is working.decision
    assert broken.reasons == working.reasons
