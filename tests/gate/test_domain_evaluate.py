"""Verdict evaluator: each reason alone, missing data, sample guards, dry-run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

import pytest

from services.gate.domain.errors import SpecError
from services.gate.domain.evaluate import Evaluation
from services.gate.domain.reasons import BlockReasonCode, ReasonLevel, Verdict
from services.gate.domain.signals import (
    BacktestSignal,
    Readiness,
    SignalSource,
    Unavailable,
)
from services.runtime.config import GateThresholds, Thresholds
from tests.gate.domain_builders import (
    healthy_counts,
    healthy_signals,
    healthy_summary,
    make_spec,
    run,
)

B = BlockReasonCode


@dataclass(frozen=True)
class Case:
    """One reason triggered alone, with the evidence it must report."""

    make: Callable[[], Evaluation]
    code: BlockReasonCode
    level: ReasonLevel
    observed: float | None
    operator: str
    threshold: float | None
    sample_size: int
    message_parts: tuple[str, ...]


def _summary(**kwargs: object) -> Evaluation:
    return run(signals=healthy_signals(summary=healthy_summary(**kwargs)))  # type: ignore[arg-type]


def _counts(**kwargs: int) -> Evaluation:
    return _summary(counts=healthy_counts(**kwargs))


def _backtest(old: int, new: int) -> Evaluation:
    spec = make_spec(backtest_id="bt-1")
    signal = BacktestSignal(
        "bt-1", complete=True, invoices=100, old_incident_count=old, new_incident_count=new
    )
    return run(spec=spec, signals=healthy_signals(backtest=signal))


CASES = {
    "not_ready": Case(
        lambda: run(
            signals=healthy_signals(readiness=Readiness(ready=False, failing_checks=("database",)))
        ),
        B.NOT_READY,
        ReasonLevel.BLOCK,
        None,
        "",
        None,
        1,
        ("not ready", "database"),
    ),
    "config_invalid": Case(
        lambda: run(signals=healthy_signals(readiness=Readiness(ready=True, config_ok=False))),
        B.CONFIG_INVALID,
        ReasonLevel.BLOCK,
        None,
        "",
        None,
        1,
        ("config",),
    ),
    "queue_stuck_readiness": Case(
        lambda: run(signals=healthy_signals(readiness=Readiness(ready=True, queue_stuck=True))),
        B.QUEUE_STUCK,
        ReasonLevel.BLOCK,
        None,
        "",
        None,
        1,
        ("queue stuck", "10 min"),
    ),
    "queue_stuck_summary": Case(
        lambda: _summary(stuck=True),
        B.QUEUE_STUCK,
        ReasonLevel.BLOCK,
        None,
        "",
        None,
        1,
        ("queue stuck",),
    ),
    "error_rate_5xx": Case(
        lambda: _summary(total_requests=200, total_5xx=11),
        B.ERROR_RATE_5XX_HIGH,
        ReasonLevel.BLOCK,
        0.055,
        ">",
        0.05,
        200,
        ("5.5 %", "5.0 %", "11 of 200 requests"),
    ),
    "tests_failed": Case(
        lambda: run(facts={"tests_passed": False, "smoke_passed": True}),
        B.TESTS_FAILED,
        ReasonLevel.BLOCK,
        None,
        "",
        None,
        1,
        ("tests_passed is false",),
    ),
    "smoke_failed": Case(
        lambda: run(facts={"tests_passed": True, "smoke_passed": False}),
        B.SMOKE_FAILED,
        ReasonLevel.BLOCK,
        None,
        "",
        None,
        1,
        ("smoke_passed is false",),
    ),
    "s1_rate": Case(
        lambda: _counts(incident_count=40, s1_count=13, s2_count=0, ocr_suspect_count=0),
        B.S1_RATE_HIGH,
        ReasonLevel.HOLD,
        13 / 40,
        ">",
        0.30,
        40,
        ("32.5 %", "30.0 %", "13 of 40 incidents"),
    ),
    "p95_latency": Case(
        lambda: _summary(p95=6001.0),
        B.P95_LATENCY_HIGH,
        ReasonLevel.HOLD,
        6001.0,
        ">",
        6000.0,
        100,
        ("6,001 ms", "6,000 ms", "baseline 3,000 ms"),
    ),
    "ocr_suspect_rate": Case(
        lambda: _counts(incident_count=20, s1_count=0, s2_count=0, ocr_suspect_count=7),
        B.OCR_SUSPECT_RATE_HIGH,
        ReasonLevel.HOLD,
        0.35,
        ">",
        0.30,
        20,
        ("35.0 %", "30.0 %"),
    ),
    "s2_rate": Case(
        lambda: _counts(incident_count=20, s1_count=0, s2_count=9, ocr_suspect_count=0),
        B.S2_RATE_HIGH,
        ReasonLevel.HOLD,
        0.45,
        ">",
        0.40,
        20,
        ("45.0 %", "40.0 %"),
    ),
    "accept_rounding_low": Case(
        lambda: _counts(accept_rounding_count=1),
        B.ACCEPT_ROUNDING_RATE_OUT_OF_BAND,
        ReasonLevel.HOLD,
        0.01,
        "<",
        0.02,
        100,
        ("1.0 %", "2.0 %", "band 2.0 %–25.0 %"),
    ),
    "accept_rounding_high": Case(
        lambda: _counts(accept_rounding_count=26),
        B.ACCEPT_ROUNDING_RATE_OUT_OF_BAND,
        ReasonLevel.HOLD,
        0.26,
        ">",
        0.25,
        100,
        ("26.0 %", "25.0 %"),
    ),
    "queue_depth": Case(
        lambda: _summary(max_depth=51),
        B.QUEUE_DEPTH_HIGH,
        ReasonLevel.HOLD,
        51.0,
        ">",
        50.0,
        1,
        ("51", "50"),
    ),
    "feedback_coverage": Case(
        lambda: _counts(resolved_count=20, feedback_count=1),
        B.FEEDBACK_COVERAGE_LOW,
        ReasonLevel.HOLD,
        0.05,
        "<",
        0.10,
        20,
        ("5.0 %", "10.0 %"),
    ),
    "backtest_regression": Case(
        lambda: _backtest(old=5, new=15),
        B.BACKTEST_REGRESSION,
        ReasonLevel.HOLD,
        0.15,
        ">=",
        0.10,
        100,
        ("15.0 %", "5.0 %", "+10 incidents"),
    ),
    "insufficient_traffic": Case(
        lambda: _counts(total_invoices=5, accept_rounding_count=0),
        B.INSUFFICIENT_DATA,
        ReasonLevel.HOLD,
        5.0,
        "<",
        20.0,
        5,
        ("5 invoices", "20"),
    ),
    "insufficient_latency_samples": Case(
        lambda: _summary(latency_samples=12),
        B.INSUFFICIENT_DATA,
        ReasonLevel.HOLD,
        12.0,
        "<",
        20.0,
        12,
        ("12", "not being measured"),
    ),
}


def test_healthy_baseline_is_release_ok() -> None:
    evaluation = run()
    assert evaluation.verdict is Verdict.RELEASE_OK
    assert evaluation.reasons == ()
    assert evaluation.exit_code == 0


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_reason_alone_reports_its_level_and_evidence(case: Case) -> None:
    evaluation = case.make()
    assert [r.code for r in evaluation.reasons] == [case.code]
    reason = evaluation.reasons[0]
    assert reason.level is case.level
    assert reason.observed == pytest.approx(case.observed)
    assert reason.operator == case.operator
    assert reason.threshold == pytest.approx(case.threshold)
    assert reason.sample_size == case.sample_size
    for part in case.message_parts:
        assert part in reason.message
    expected = Verdict.RELEASE_BLOCK if case.level is ReasonLevel.BLOCK else Verdict.RELEASE_HOLD
    assert evaluation.verdict is expected
    assert evaluation.exit_code == (2 if case.level is ReasonLevel.BLOCK else 1)


def test_rate_reasons_report_the_spec_window() -> None:
    evaluation = run(
        spec=make_spec(window_seconds=1800),
        signals=healthy_signals(summary=healthy_summary(total_5xx=20)),
    )
    assert evaluation.reasons[0].window == "30m"
    assert "last 30m" in evaluation.reasons[0].message


def test_missing_required_fact_blocks_as_failed() -> None:
    evaluation = run(facts={"smoke_passed": True})
    assert evaluation.codes == {B.TESTS_FAILED}
    assert "not supplied" in evaluation.reasons[0].message


def test_fact_not_required_by_spec_still_blocks_when_supplied_false() -> None:
    evaluation = run(spec=make_spec(facts=()), facts={"smoke_passed": False})
    assert evaluation.codes == {B.SMOKE_FAILED}


def test_thresholds_at_the_boundary_do_not_fire() -> None:
    """Every rule is strict (> / <), as SPEC §5.2 words them."""
    summary = healthy_summary(
        counts=healthy_counts(
            incident_count=20,
            s1_count=6,
            s2_count=8,
            ocr_suspect_count=6,
            resolved_count=20,
            feedback_count=2,
            accept_rounding_count=25,
        ),
        p95=6000.0,
        total_requests=200,
        total_5xx=10,
        max_depth=50,
    )
    assert run(signals=healthy_signals(summary=summary)).verdict is Verdict.RELEASE_OK


def test_missing_telemetry_holds_with_signal_unavailable_never_ok() -> None:
    unavailable = Unavailable(SignalSource.RUN_SUMMARY, "telemetry: deadline exceeded")
    evaluation = run(signals=healthy_signals(summary=unavailable))
    assert evaluation.verdict is Verdict.RELEASE_HOLD
    assert [r.code for r in evaluation.reasons] == [B.SIGNAL_UNAVAILABLE]
    reason = evaluation.reasons[0]
    assert reason.signal == "run_summary"
    assert "deadline exceeded" in reason.message


def test_missing_readiness_holds_with_signal_unavailable() -> None:
    evaluation = run(
        signals=healthy_signals(readiness=Unavailable(SignalSource.READINESS, "refused"))
    )
    assert evaluation.verdict is Verdict.RELEASE_HOLD
    assert evaluation.codes == {B.SIGNAL_UNAVAILABLE}


def test_every_unavailable_source_is_reported_separately() -> None:
    evaluation = run(
        spec=make_spec(backtest_id="bt-1"),
        signals=healthy_signals(
            readiness=Unavailable(SignalSource.READINESS, "refused"),
            summary=Unavailable(SignalSource.RUN_SUMMARY, "refused"),
        ),
    )
    assert sorted(r.signal for r in evaluation.reasons) == ["backtest", "readiness", "run_summary"]


def test_unavailable_source_does_not_hide_a_block_from_another_source() -> None:
    evaluation = run(
        signals=healthy_signals(
            readiness=Readiness(ready=False),
            summary=Unavailable(SignalSource.RUN_SUMMARY, "refused"),
        )
    )
    assert evaluation.verdict is Verdict.RELEASE_BLOCK
    assert evaluation.codes == {B.NOT_READY, B.SIGNAL_UNAVAILABLE}


def test_spec_naming_a_backtest_without_a_result_is_signal_unavailable() -> None:
    evaluation = run(spec=make_spec(backtest_id="bt-1"))
    assert evaluation.codes == {B.SIGNAL_UNAVAILABLE}
    assert evaluation.reasons[0].signal == "backtest"


def test_backtest_result_for_another_id_is_not_trusted() -> None:
    signal = BacktestSignal("bt-2", complete=True, invoices=100)
    evaluation = run(spec=make_spec(backtest_id="bt-1"), signals=healthy_signals(backtest=signal))
    assert evaluation.codes == {B.SIGNAL_UNAVAILABLE}


def test_unfinished_backtest_is_insufficient_data() -> None:
    signal = BacktestSignal("bt-1", complete=False, invoices=0)
    evaluation = run(spec=make_spec(backtest_id="bt-1"), signals=healthy_signals(backtest=signal))
    assert evaluation.codes == {B.INSUFFICIENT_DATA}
    assert "has not finished" in evaluation.reasons[0].message


def test_a_candidate_raising_the_s1_rate_above_the_limit_is_config_backtest_regression() -> None:
    signal = BacktestSignal("bt-1", complete=True, invoices=100, old_s1_count=10, new_s1_count=30)
    evaluation = run(spec=make_spec(backtest_id="bt-1"), signals=healthy_signals(backtest=signal))
    assert B.CONFIG_BACKTEST_REGRESSION in evaluation.codes
    reason = next(r for r in evaluation.reasons if r.code is B.CONFIG_BACKTEST_REGRESSION)
    assert "old 10.0 %" in reason.message or "old 10" in reason.message
    assert reason.observed == 0.30


def test_a_candidate_within_the_s1_limit_is_no_config_backtest_regression() -> None:
    signal = BacktestSignal("bt-1", complete=True, invoices=100, old_s1_count=10, new_s1_count=14)
    evaluation = run(spec=make_spec(backtest_id="bt-1"), signals=healthy_signals(backtest=signal))
    assert B.CONFIG_BACKTEST_REGRESSION not in evaluation.codes


def test_backtest_signal_is_ignored_when_spec_names_none() -> None:
    signal = BacktestSignal("bt-1", complete=True, invoices=100, new_incident_count=90)
    assert run(signals=healthy_signals(backtest=signal)).verdict is Verdict.RELEASE_OK


def test_small_incident_sample_is_not_judged_but_noted() -> None:
    """19 incidents, all S1: below S1_MIN_INCIDENTS the rate is noise, not a reason."""
    evaluation = _counts(incident_count=19, s1_count=19, s2_count=0, ocr_suspect_count=0)
    assert evaluation.verdict is Verdict.RELEASE_OK
    assert any(
        "S1 rate 100.0 %" in note and "19 incidents < 20" in note for note in evaluation.notes
    )


def test_low_traffic_does_not_also_report_missing_latency() -> None:
    evaluation = _summary(
        counts=healthy_counts(total_invoices=3, accept_rounding_count=0), latency_samples=3
    )
    assert [r.signal for r in evaluation.reasons] == ["run_summary.counts.total_invoices"]


def test_spec_slo_overrides_replace_deployed_thresholds() -> None:
    spec = make_spec(slo={"ERROR_5XX_RATE_MAX": 0.01})
    evaluation = run(spec=spec, signals=healthy_signals(summary=healthy_summary(total_5xx=3)))
    assert evaluation.codes == {B.ERROR_RATE_5XX_HIGH}
    assert evaluation.reasons[0].threshold == pytest.approx(0.01)


def test_deployed_thresholds_are_used() -> None:
    thresholds = Thresholds(Gate=replace(GateThresholds(), MAX_QUEUE_DEPTH=2))
    evaluation = run(thresholds=thresholds)
    assert evaluation.codes == {B.QUEUE_DEPTH_HIGH}
    assert evaluation.reasons[0].threshold == 2.0


def test_slo_override_conflicting_with_deployed_thresholds_is_a_spec_error() -> None:
    thresholds = Thresholds(Gate=replace(GateThresholds(), ACCEPT_ROUNDING_RATE_MAX=0.1))
    spec = make_spec(slo={"ACCEPT_ROUNDING_RATE_MIN": 0.15})
    with pytest.raises(SpecError) as info:
        run(spec=spec, thresholds=thresholds)
    assert info.value.field == "slo.ACCEPT_ROUNDING_RATE_MIN"


def test_worst_level_wins_and_block_reasons_come_first() -> None:
    evaluation = run(
        facts={"tests_passed": False, "smoke_passed": True},
        signals=healthy_signals(summary=healthy_summary(max_depth=99)),
    )
    assert evaluation.verdict is Verdict.RELEASE_BLOCK
    assert [r.code for r in evaluation.reasons] == [B.TESTS_FAILED, B.QUEUE_DEPTH_HIGH]


def test_non_overridable_reasons_are_flagged() -> None:
    spec = make_spec(non_overridable=frozenset({B.QUEUE_DEPTH_HIGH}))
    evaluation = run(spec=spec, signals=healthy_signals(summary=healthy_summary(max_depth=99)))
    assert evaluation.reasons[0].overridable is False


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        run(now=datetime(2026, 1, 17, 16, 0))


# Dry-run ------------------------------------------------------------------------


def test_dry_run_reason_is_reported_separately_and_leaves_verdict_ok() -> None:
    spec = make_spec(dry_run=frozenset({B.FEEDBACK_COVERAGE_LOW}))
    evaluation = run(
        spec=spec,
        signals=healthy_signals(
            summary=healthy_summary(counts=healthy_counts(resolved_count=40, feedback_count=0))
        ),
    )
    assert evaluation.verdict is Verdict.RELEASE_OK
    assert evaluation.reasons == ()
    assert [r.code for r in evaluation.dry_run_reasons] == [B.FEEDBACK_COVERAGE_LOW]
    assert evaluation.dry_run_reasons[0].dry_run is True


def test_dry_run_block_reason_does_not_block() -> None:
    spec = make_spec(dry_run=frozenset({B.ERROR_RATE_5XX_HIGH}))
    evaluation = run(spec=spec, signals=healthy_signals(summary=healthy_summary(total_5xx=50)))
    assert evaluation.verdict is Verdict.RELEASE_OK
    assert evaluation.dry_run_reasons[0].level is ReasonLevel.BLOCK


def test_unavailable_source_read_only_by_dry_run_rules_is_a_dry_run_reason() -> None:
    spec = make_spec(backtest_id="bt-1", dry_run=frozenset({B.BACKTEST_REGRESSION}))
    evaluation = run(
        spec=spec,
        signals=healthy_signals(backtest=Unavailable(SignalSource.BACKTEST, "pipeline down")),
    )
    assert evaluation.verdict is Verdict.RELEASE_OK
    assert [r.code for r in evaluation.dry_run_reasons] == [B.SIGNAL_UNAVAILABLE]


def test_unavailable_telemetry_holds_even_when_its_rules_are_dry_run() -> None:
    """The traffic check always reads the run summary, so its absence always counts."""
    spec = make_spec(dry_run=frozenset({B.S1_RATE_HIGH, B.QUEUE_DEPTH_HIGH}))
    evaluation = run(
        spec=spec, signals=healthy_signals(summary=Unavailable(SignalSource.RUN_SUMMARY, "down"))
    )
    assert evaluation.verdict is Verdict.RELEASE_HOLD
