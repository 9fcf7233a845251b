"""Hypothesis properties of the verdict evaluator (SPEC §5.2)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.gate.domain.evaluate import Evaluation
from services.gate.domain.reasons import (
    EVIDENCE_REASONS,
    BlockReasonCode,
    ReasonLevel,
    Verdict,
)
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
    SignalSource,
    Unavailable,
)
from services.gate.domain.spec import ReleaseSpec
from tests.gate.domain_builders import NOW, make_spec, run

B = BlockReasonCode
PROPERTY = settings(max_examples=200, deadline=None)

DRY_RUNNABLE = sorted(set(BlockReasonCode) - EVIDENCE_REASONS)
FACT_NAMES = ("tests_passed", "smoke_passed")

small = st.integers(0, 150)

readiness_snapshots = st.builds(
    Readiness, ready=st.booleans(), config_ok=st.booleans(), queue_stuck=st.booleans()
)
summaries = st.builds(
    RunSummary,
    counts=st.builds(
        RunCounts,
        total_invoices=st.integers(0, 300),
        incident_count=small,
        s1_count=small,
        s2_count=small,
        ocr_suspect_count=small,
        resolved_count=small,
        feedback_count=small,
        accept_rounding_count=small,
    ),
    latency=st.builds(
        RunLatency,
        pipeline_total_ms=st.builds(
            LatencyPercentiles,
            p95=st.none() | st.floats(0, 20_000),
            sample_count=st.integers(0, 300),
        ),
    ),
    errors=st.builds(RunErrors, total_5xx=st.integers(0, 100), total_requests=st.integers(0, 400)),
    queue=st.builds(
        RunQueue, max_depth_in_period=st.integers(0, 120), stuck_detected=st.booleans()
    ),
)
backtests = st.builds(
    BacktestSignal,
    backtest_id=st.just("bt-1"),
    complete=st.booleans(),
    invoices=st.integers(0, 300),
    old_incident_count=small,
    new_incident_count=small,
)


def _unavailable(source: SignalSource) -> st.SearchStrategy[Unavailable]:
    return st.just(Unavailable(source, "unreachable"))


any_signals = st.builds(
    Signals,
    readiness=readiness_snapshots | _unavailable(SignalSource.READINESS),
    run_summary=summaries | _unavailable(SignalSource.RUN_SUMMARY),
    backtest=st.none() | backtests | _unavailable(SignalSource.BACKTEST),
)
facts_maps = st.dictionaries(st.sampled_from(FACT_NAMES), st.booleans())
first_seen_maps = st.dictionaries(
    st.sampled_from(list(BlockReasonCode)),
    st.integers(-5, 90).map(lambda minutes: NOW - timedelta(minutes=minutes)),
)


@st.composite
def specs(draw: st.DrawFn, dry_run: st.SearchStrategy[frozenset[B]] | None = None) -> ReleaseSpec:
    dry = draw(dry_run if dry_run is not None else st.frozensets(st.sampled_from(DRY_RUNNABLE)))
    non_overridable = draw(st.frozensets(st.sampled_from(list(BlockReasonCode)))) - dry
    return make_spec(
        dry_run=dry,
        non_overridable=non_overridable,
        facts=tuple(sorted(draw(st.frozensets(st.sampled_from(FACT_NAMES))))),
        backtest_id=draw(st.none() | st.just("bt-1")),
    )


def _evaluate(
    spec: ReleaseSpec,
    facts: dict[str, bool],
    signals: Signals,
    first_seen: dict[B, datetime],
) -> Evaluation:
    return run(spec=spec, facts=facts, signals=signals, first_seen=first_seen)


@PROPERTY
@given(spec=specs(), facts=facts_maps, signals=any_signals, first_seen=first_seen_maps)
def test_verdict_is_the_worst_reason_level(
    spec: ReleaseSpec, facts: dict[str, bool], signals: Signals, first_seen: dict[B, datetime]
) -> None:
    evaluation = _evaluate(spec, facts, signals, first_seen)
    levels = {r.level for r in evaluation.reasons}
    if ReasonLevel.BLOCK in levels:
        expected = Verdict.RELEASE_BLOCK
    elif ReasonLevel.HOLD in levels:
        expected = Verdict.RELEASE_HOLD
    else:
        expected = Verdict.RELEASE_OK
    assert evaluation.verdict is expected
    assert evaluation.exit_code == expected.exit_code
    assert all(not r.dry_run for r in evaluation.reasons)
    assert all(r.dry_run for r in evaluation.dry_run_reasons)


def _worsen_readiness(signals: Signals, **change: bool) -> Signals:
    if not isinstance(signals.readiness, Readiness):
        return signals
    return replace(signals, readiness=replace(signals.readiness, **change))  # type: ignore[arg-type]


def _worsen_summary(signals: Signals, change: Callable[[RunSummary], RunSummary]) -> Signals:
    if not isinstance(signals.run_summary, RunSummary):
        return signals
    return replace(signals, run_summary=change(signals.run_summary))


WORSENINGS: dict[str, Callable[[Signals, int], Signals]] = {
    "not_ready": lambda s, n: _worsen_readiness(s, ready=False),
    "config_invalid": lambda s, n: _worsen_readiness(s, config_ok=False),
    "readiness_queue_stuck": lambda s, n: _worsen_readiness(s, queue_stuck=True),
    "summary_queue_stuck": lambda s, n: _worsen_summary(
        s, lambda r: replace(r, queue=replace(r.queue, stuck_detected=True))
    ),
    "more_5xx": lambda s, n: _worsen_summary(
        s, lambda r: replace(r, errors=replace(r.errors, total_5xx=r.errors.total_5xx + n))
    ),
    "more_s1": lambda s, n: _worsen_summary(
        s, lambda r: replace(r, counts=replace(r.counts, s1_count=r.counts.s1_count + n))
    ),
    "more_s2": lambda s, n: _worsen_summary(
        s, lambda r: replace(r, counts=replace(r.counts, s2_count=r.counts.s2_count + n))
    ),
    "more_ocr": lambda s, n: _worsen_summary(
        s,
        lambda r: replace(
            r, counts=replace(r.counts, ocr_suspect_count=r.counts.ocr_suspect_count + n)
        ),
    ),
    "less_feedback": lambda s, n: _worsen_summary(
        s,
        lambda r: replace(
            r, counts=replace(r.counts, feedback_count=max(0, r.counts.feedback_count - n))
        ),
    ),
    "deeper_queue": lambda s, n: _worsen_summary(
        s,
        lambda r: replace(
            r, queue=replace(r.queue, max_depth_in_period=r.queue.max_depth_in_period + n)
        ),
    ),
    "slower_p95": lambda s, n: _worsen_summary(
        s,
        lambda r: replace(
            r,
            latency=replace(
                r.latency,
                pipeline_total_ms=replace(
                    r.latency.pipeline_total_ms,
                    p95=None
                    if r.latency.pipeline_total_ms.p95 is None
                    else r.latency.pipeline_total_ms.p95 + n * 100,
                ),
            ),
        ),
    ),
    "backtest_more_incidents": lambda s, n: (
        replace(
            s, backtest=replace(s.backtest, new_incident_count=s.backtest.new_incident_count + n)
        )
        if isinstance(s.backtest, BacktestSignal)
        else s
    ),
}


@PROPERTY
@given(
    spec=specs(),
    facts=facts_maps,
    signals=any_signals,
    first_seen=first_seen_maps,
    worsening=st.sampled_from(sorted(WORSENINGS)),
    amount=st.integers(1, 100),
    failed_fact=st.none() | st.sampled_from(FACT_NAMES),
    held_longer=st.integers(0, 60),
)
def test_adding_a_failing_signal_never_improves_the_verdict(
    spec: ReleaseSpec,
    facts: dict[str, bool],
    signals: Signals,
    first_seen: dict[B, datetime],
    worsening: str,
    amount: int,
    failed_fact: str | None,
    held_longer: int,
) -> None:
    before = _evaluate(spec, facts, signals, first_seen)
    worse_facts = facts if failed_fact is None else {**facts, failed_fact: False}
    earlier = {code: at - timedelta(minutes=held_longer) for code, at in first_seen.items()}
    after = _evaluate(spec, worse_facts, WORSENINGS[worsening](signals, amount), earlier)
    assert after.verdict.rank >= before.verdict.rank


@PROPERTY
@given(
    spec=specs(),
    facts=facts_maps,
    signals=any_signals,
    first_seen=first_seen_maps,
)
def test_verdict_is_never_ok_when_a_judged_source_is_unavailable(
    spec: ReleaseSpec, facts: dict[str, bool], signals: Signals, first_seen: dict[B, datetime]
) -> None:
    evaluation = _evaluate(spec, facts, signals, first_seen)
    summary_missing = isinstance(signals.run_summary, Unavailable)
    readiness_missing = isinstance(signals.readiness, Unavailable) and B.NOT_READY not in (
        spec.dry_run
    )
    backtest_missing = (
        spec.backtest_id is not None
        and not isinstance(signals.backtest, BacktestSignal)
        and B.BACKTEST_REGRESSION not in spec.dry_run
    )
    if summary_missing or readiness_missing or backtest_missing:
        assert evaluation.verdict is not Verdict.RELEASE_OK
        assert B.SIGNAL_UNAVAILABLE in evaluation.codes


# What each dry-runnable rule alone reads; scrambling it must not move the verdict.
def _scramble(
    code: B, signals: Signals, facts: dict[str, bool], data: st.DataObject
) -> tuple[Signals, dict[str, bool]]:
    readiness = signals.readiness
    summary = signals.run_summary
    if code is B.TESTS_FAILED:
        return signals, {**facts, "tests_passed": data.draw(st.booleans())}
    if code is B.SMOKE_FAILED:
        return signals, {**facts, "smoke_passed": data.draw(st.booleans())}
    if code is B.BACKTEST_REGRESSION:
        backtest = data.draw(st.none() | backtests | _unavailable(SignalSource.BACKTEST))
        return replace(signals, backtest=backtest), facts
    if isinstance(readiness, Readiness) and code in (B.NOT_READY, B.CONFIG_INVALID):
        field = "ready" if code is B.NOT_READY else "config_ok"
        new = replace(readiness, **{field: data.draw(st.booleans())})  # type: ignore[arg-type]
        return replace(signals, readiness=new), facts
    if not isinstance(summary, RunSummary):
        return signals, facts
    counts, errors, queue = summary.counts, summary.errors, summary.queue
    latency = summary.latency.pipeline_total_ms
    if code is B.QUEUE_STUCK:
        queue = replace(queue, stuck_detected=data.draw(st.booleans()))
        if isinstance(readiness, Readiness):
            readiness = replace(readiness, queue_stuck=data.draw(st.booleans()))
    elif code is B.ERROR_RATE_5XX_HIGH:
        errors = replace(errors, total_5xx=data.draw(small), total_requests=data.draw(small))
    elif code is B.S1_RATE_HIGH:
        counts = replace(counts, s1_count=data.draw(small))
    elif code is B.S2_RATE_HIGH:
        counts = replace(counts, s2_count=data.draw(small))
    elif code is B.OCR_SUSPECT_RATE_HIGH:
        counts = replace(counts, ocr_suspect_count=data.draw(small))
    elif code is B.ACCEPT_ROUNDING_RATE_OUT_OF_BAND:
        counts = replace(counts, accept_rounding_count=data.draw(small))
    elif code is B.FEEDBACK_COVERAGE_LOW:
        counts = replace(counts, feedback_count=data.draw(small), resolved_count=data.draw(small))
    elif code is B.QUEUE_DEPTH_HIGH:
        queue = replace(queue, max_depth_in_period=data.draw(st.integers(0, 120)))
    elif code is B.P95_LATENCY_HIGH:
        latency = LatencyPercentiles(
            p95=data.draw(st.none() | st.floats(0, 20_000)), sample_count=data.draw(small)
        )
    new_summary = replace(
        summary,
        counts=counts,
        errors=errors,
        queue=queue,
        latency=replace(summary.latency, pipeline_total_ms=latency),
    )
    return replace(signals, readiness=readiness, run_summary=new_summary), facts


@PROPERTY
@given(
    spec=specs(dry_run=st.frozensets(st.sampled_from(DRY_RUNNABLE), min_size=1)),
    facts=facts_maps,
    signals=any_signals,
    first_seen=first_seen_maps,
    data=st.data(),
)
def test_dry_run_signals_never_change_the_verdict(
    spec: ReleaseSpec,
    facts: dict[str, bool],
    signals: Signals,
    first_seen: dict[B, datetime],
    data: st.DataObject,
) -> None:
    before = _evaluate(spec, facts, signals, first_seen)
    scrambled_signals, scrambled_facts = signals, facts
    for code in sorted(spec.dry_run):
        scrambled_signals, scrambled_facts = _scramble(
            code, scrambled_signals, scrambled_facts, data
        )
    after = _evaluate(spec, scrambled_facts, scrambled_signals, first_seen)
    assert after.verdict is before.verdict
    assert after.reasons == before.reasons
