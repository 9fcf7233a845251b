"""Overrides (SPEC §5.3): every override_result path, and when a token may be consumed."""

from __future__ import annotations

import pytest

from services.gate.domain.evaluate import Evaluation
from services.gate.domain.override import (
    BreachKind,
    OverrideResult,
    override_params,
    plan_override,
    resolve_override,
)
from services.gate.domain.reasons import BlockReasonCode, Verdict
from services.gate.domain.signals import Readiness
from services.runtime.tokens.errors import TokenError
from tests.gate.domain_builders import healthy_signals, healthy_summary, make_spec, run

B = BlockReasonCode


def _ok() -> Evaluation:
    return run()


def _hold() -> Evaluation:
    return run(signals=healthy_signals(summary=healthy_summary(max_depth=99)))


def _block_non_overridable() -> Evaluation:
    spec = make_spec(non_overridable=frozenset({B.NOT_READY}))
    return run(spec=spec, signals=healthy_signals(readiness=Readiness(ready=False)))


def test_no_token_and_ok_verdict_is_none() -> None:
    plan = plan_override(_ok(), token_presented=False)
    outcome = resolve_override(plan, None)
    assert plan.should_consume is False
    assert outcome.override_result is OverrideResult.NONE
    assert outcome.verdict is Verdict.RELEASE_OK
    assert outcome.contract_breach is False


def test_token_on_ok_verdict_is_ignored_and_not_consumed() -> None:
    plan = plan_override(_ok(), token_presented=True)
    assert plan.should_consume is False
    outcome = resolve_override(plan, None)
    assert outcome.override_result is OverrideResult.IGNORED
    assert outcome.verdict is Verdict.RELEASE_OK
    assert outcome.override_applied is False


def test_token_with_non_overridable_reason_is_breach_and_not_consumed() -> None:
    plan = plan_override(_block_non_overridable(), token_presented=True)
    assert plan.should_consume is False
    outcome = resolve_override(plan, None)
    assert outcome.override_result is OverrideResult.BREACH
    assert outcome.contract_breach is True
    assert outcome.breach_kind is BreachKind.NON_OVERRIDABLE
    assert outcome.verdict is Verdict.RELEASE_BLOCK
    assert outcome.exit_code == 2


def test_non_overridable_reason_without_token_is_no_override_breach() -> None:
    plan = plan_override(_block_non_overridable(), token_presented=False)
    outcome = resolve_override(plan, None)
    assert plan.should_consume is False
    assert outcome.override_result is OverrideResult.NONE
    assert outcome.contract_breach is True
    assert outcome.breach_kind is BreachKind.NO_OVERRIDE
    assert outcome.verdict is Verdict.RELEASE_BLOCK


def test_overridable_hold_without_token_is_none_without_breach() -> None:
    outcome = resolve_override(plan_override(_hold(), token_presented=False), None)
    assert outcome.override_result is OverrideResult.NONE
    assert outcome.verdict is Verdict.RELEASE_HOLD
    assert outcome.contract_breach is False
    assert outcome.breach_kind is None


def test_token_on_overridable_reasons_asks_to_consume() -> None:
    plan = plan_override(_hold(), token_presented=True)
    assert plan.should_consume is True
    assert plan.settled is None


@pytest.mark.parametrize("error", list(TokenError))
def test_failed_consume_is_rejected_with_the_token_error(error: TokenError) -> None:
    outcome = resolve_override(plan_override(_hold(), token_presented=True), error)
    assert outcome.override_result is OverrideResult.REJECTED
    assert outcome.token_error is error
    assert outcome.verdict is Verdict.RELEASE_HOLD
    assert outcome.override_applied is False


def test_consumed_token_applies_and_verdict_becomes_ok() -> None:
    outcome = resolve_override(plan_override(_hold(), token_presented=True), None)
    assert outcome.override_result is OverrideResult.APPLIED
    assert outcome.override_applied is True
    assert outcome.verdict is Verdict.RELEASE_OK
    assert outcome.exit_code == 0


def test_dry_run_reasons_play_no_part_in_overrides() -> None:
    spec = make_spec(
        dry_run=frozenset({B.QUEUE_DEPTH_HIGH}), non_overridable=frozenset({B.NOT_READY})
    )
    evaluation = run(spec=spec, signals=healthy_signals(summary=healthy_summary(max_depth=99)))
    outcome = resolve_override(plan_override(evaluation, token_presented=True), None)
    assert outcome.override_result is OverrideResult.IGNORED


def test_override_params_ignore_reason_order_and_duplicates() -> None:
    a = override_params("r1", "sha256:x", [B.S1_RATE_HIGH, B.QUEUE_DEPTH_HIGH])
    b = override_params("r1", "sha256:x", [B.QUEUE_DEPTH_HIGH, B.S1_RATE_HIGH, B.S1_RATE_HIGH])
    assert a == b


@pytest.mark.parametrize(
    ("release", "spec_hash", "reasons"),
    [
        ("r2", "sha256:x", [B.S1_RATE_HIGH]),
        ("r1", "sha256:y", [B.S1_RATE_HIGH]),
        ("r1", "sha256:x", [B.S1_RATE_HIGH, B.P95_LATENCY_HIGH]),
        ("r1", "sha256:x", []),
    ],
)
def test_override_params_bind_release_spec_and_reasons(
    release: str, spec_hash: str, reasons: list[BlockReasonCode]
) -> None:
    assert override_params(release, spec_hash, reasons) != override_params(
        "r1", "sha256:x", [B.S1_RATE_HIGH]
    )
