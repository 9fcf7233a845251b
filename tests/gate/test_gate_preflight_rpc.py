"""Preflight end to end: real gRPC signal sources → gate → verdict, escalation, deduplication."""

from __future__ import annotations

import asyncpg
import grpc
import pytest
from ptf.gate.v1 import gate_pb2
from ptf.pipeline.v1 import pipeline_pb2
from ptf.telemetry.v1 import telemetry_pb2

from services.gate.service import GateOptions
from tests.gate.service_support import (
    FakeClock,
    SignalServers,
    StartGate,
    error_code,
    gate_stub,
    healthy_summary,
    new_release,
    preflight_request,
    ready_reply,
    reason_names,
    s1_high_summary,
    unreachable_address,
    verdict,
)


async def test_healthy_signals_give_release_ok_with_exit_code_0(start_gate: StartGate) -> None:
    async with start_gate() as svc:
        result = await gate_stub(svc).Preflight(preflight_request(new_release()))
    assert (verdict(result), result.exit_code, list(result.reasons)) == ("RELEASE_OK", 0, [])


async def test_s1_rate_high_alone_is_hold_with_observed_threshold_and_sample(
    start_gate: StartGate, signals: SignalServers
) -> None:
    signals.summary.reply = s1_high_summary()
    async with start_gate() as svc:
        result = await gate_stub(svc).Preflight(preflight_request(new_release()))
    (reason,) = result.reasons
    assert (verdict(result), reason_names(result), reason.level) == (
        "RELEASE_HOLD",
        ["S1_RATE_HIGH"],
        gate_pb2.REASON_LEVEL_HOLD,
    )
    assert (reason.observed, reason.operator, reason.threshold, reason.sample_size) == (
        0.5,
        ">",
        0.3,
        40,
    )
    assert (reason.window, result.exit_code) == ("1h", 1)


async def test_5xx_rate_alone_is_block_with_observed_and_threshold(
    start_gate: StartGate, signals: SignalServers
) -> None:
    summary = healthy_summary()
    summary.errors.total_5xx = 20
    signals.summary.reply = summary
    async with start_gate() as svc:
        result = await gate_stub(svc).Preflight(preflight_request(new_release()))
    (reason,) = result.reasons
    assert (verdict(result), reason_names(result), reason.level) == (
        "RELEASE_BLOCK",
        ["ERROR_RATE_5XX_HIGH"],
        gate_pb2.REASON_LEVEL_BLOCK,
    )
    assert (reason.observed, reason.threshold, reason.sample_size, result.exit_code) == (
        0.1,
        0.05,
        200,
        2,
    )


async def test_not_ready_alone_is_block_naming_the_failing_checks(
    start_gate: StartGate, signals: SignalServers
) -> None:
    signals.health.reply = ready_reply(ready=False, failing_checks=["database"])
    async with start_gate() as svc:
        result = await gate_stub(svc).Preflight(preflight_request(new_release()))
    assert (verdict(result), reason_names(result)) == ("RELEASE_BLOCK", ["NOT_READY"])
    assert "database" in result.reasons[0].message


async def test_failed_tests_fact_alone_is_block(start_gate: StartGate) -> None:
    async with start_gate() as svc:
        result = await gate_stub(svc).Preflight(
            preflight_request(new_release(), tests_passed="false")
        )
    assert (verdict(result), reason_names(result)) == ("RELEASE_BLOCK", ["TESTS_FAILED"])


async def test_backtest_regression_named_by_the_spec_is_read_from_the_pipeline(
    start_gate: StartGate, signals: SignalServers
) -> None:
    signals.backtest.error = None
    signals.backtest.reply = pipeline_pb2.BacktestResult(
        job=pipeline_pb2.BacktestJob(backtest_id="bt-1", state=pipeline_pb2.JOB_STATE_DONE),
        metrics_json='{"invoices": 100, "old": {"incident_count": 5}, '
        '"new": {"incident_count": 20}}',
    )
    async with start_gate() as svc:
        result = await gate_stub(svc).Preflight(
            preflight_request(new_release(), 'backtest_id: "bt-1"')
        )
    assert (verdict(result), reason_names(result)) == ("RELEASE_HOLD", ["BACKTEST_REGRESSION"])
    assert (result.reasons[0].observed, result.reasons[0].threshold) == (0.2, 0.1)


async def test_telemetry_answering_unimplemented_is_hold_signal_unavailable_never_ok(
    start_gate: StartGate, signals: SignalServers
) -> None:
    """Fault: telemetry's GetRunSummary is not built (UNIMPLEMENTED). Must: HOLD, never OK."""
    signals.summary.reply = None
    signals.summary.error = grpc.StatusCode.UNIMPLEMENTED
    async with start_gate() as svc:
        result = await gate_stub(svc).Preflight(preflight_request(new_release()))
    assert (verdict(result), reason_names(result)) == ("RELEASE_HOLD", ["SIGNAL_UNAVAILABLE"])
    assert (result.reasons[0].signal, "UNIMPLEMENTED" in result.reasons[0].message) == (
        "run_summary",
        True,
    )


async def test_unreachable_telemetry_is_hold_signal_unavailable(
    start_gate: StartGate, signals: SignalServers
) -> None:
    """Fault: nothing listens at the telemetry address. Must: HOLD with SIGNAL_UNAVAILABLE."""
    async with start_gate(PTF_TELEMETRY_ADDR=unreachable_address()) as svc:
        result = await gate_stub(svc).Preflight(preflight_request(new_release()))
    assert (verdict(result), reason_names(result)) == ("RELEASE_HOLD", ["SIGNAL_UNAVAILABLE"])
    assert "UNAVAILABLE" in result.reasons[0].message


async def test_health_past_its_deadline_is_signal_unavailable(
    start_gate: StartGate, signals: SignalServers
) -> None:
    """Fault: health Ready never answers. Must: the deadline fires and the gate HOLDs."""
    signals.health.hang = True
    async with start_gate(PTF_THRESHOLD__GATE__SIGNAL_TIMEOUT_SECONDS="0.2") as svc:
        result = await gate_stub(svc).Preflight(preflight_request(new_release()))
    assert (verdict(result), reason_names(result)) == ("RELEASE_HOLD", ["SIGNAL_UNAVAILABLE"])
    assert (result.reasons[0].signal, "DEADLINE_EXCEEDED" in result.reasons[0].message) == (
        "readiness",
        True,
    )


async def test_malformed_run_summary_is_signal_unavailable(
    start_gate: StartGate, signals: SignalServers
) -> None:
    """Fault: telemetry sends a NaN rate. Must: treated as missing data (HOLD), not judged."""
    summary = healthy_summary()
    summary.rates.s1_rate = float("nan")
    signals.summary.reply = summary
    async with start_gate() as svc:
        result = await gate_stub(svc).Preflight(preflight_request(new_release()))
    assert (verdict(result), reason_names(result)) == ("RELEASE_HOLD", ["SIGNAL_UNAVAILABLE"])
    assert "malformed" in result.reasons[0].message


async def test_signals_are_fetched_once_for_a_burst_of_preflights(
    start_gate: StartGate, signals: SignalServers
) -> None:
    async with start_gate() as svc:
        stub = gate_stub(svc)
        release = new_release()
        for _ in range(5):
            await stub.Preflight(preflight_request(release))
    assert (signals.health.calls, signals.summary.calls) == (1, 1)


async def test_run_summary_is_asked_for_the_spec_tenant_and_window(
    start_gate: StartGate, signals: SignalServers
) -> None:
    async with start_gate() as svc:
        await gate_stub(svc).Preflight(preflight_request(new_release()))
    (request,) = signals.summary.requests
    assert isinstance(request, telemetry_pb2.GetRunSummaryRequest)
    window = request.period.end.ToDatetime() - request.period.start.ToDatetime()
    assert (request.tenant_id, window.total_seconds()) == ("pilot", 3600)


async def test_run_summary_of_another_tenant_is_signal_unavailable(
    start_gate: StartGate, signals: SignalServers
) -> None:
    """Fault: telemetry answers for the wrong tenant. Must: not judged on it (HOLD)."""
    signals.summary.reply = healthy_summary()
    signals.summary.reply.tenant_id = "default"
    async with start_gate() as svc:
        result = await gate_stub(svc).Preflight(preflight_request(new_release()))
    assert (verdict(result), reason_names(result)) == ("RELEASE_HOLD", ["SIGNAL_UNAVAILABLE"])
    assert "tenant" in result.reasons[0].message


async def test_s1_hold_escalates_to_block_after_the_configured_minutes(
    start_gate: StartGate, signals: SignalServers, clock: FakeClock
) -> None:
    signals.summary.reply = s1_high_summary()
    release = new_release()
    async with start_gate(GateOptions(clock=clock)) as svc:
        stub = gate_stub(svc)
        first = await stub.Preflight(preflight_request(release))
        clock.advance(minutes=14, seconds=59)
        before = await stub.Preflight(preflight_request(release))
        clock.advance(seconds=1)
        after = await stub.Preflight(preflight_request(release))
    assert [verdict(r) for r in (first, before, after)] == [
        "RELEASE_HOLD",
        "RELEASE_HOLD",
        "RELEASE_BLOCK",
    ]
    assert (after.reasons[0].escalated, after.reasons[0].level) == (
        True,
        gate_pb2.REASON_LEVEL_BLOCK,
    )


async def test_escalation_threshold_comes_from_config(
    start_gate: StartGate, signals: SignalServers, clock: FakeClock
) -> None:
    signals.summary.reply = s1_high_summary()
    release = new_release()
    async with start_gate(
        GateOptions(clock=clock), PTF_THRESHOLD__GATE__S1_ESCALATE_MINUTES="5"
    ) as svc:
        stub = gate_stub(svc)
        await stub.Preflight(preflight_request(release))
        clock.advance(minutes=5)
        after = await stub.Preflight(preflight_request(release))
    assert verdict(after) == "RELEASE_BLOCK"


async def test_escalation_state_survives_a_gate_restart(
    start_gate: StartGate, signals: SignalServers, clock: FakeClock
) -> None:
    signals.summary.reply = s1_high_summary()
    release = new_release()
    async with start_gate(GateOptions(clock=clock)) as svc:
        await gate_stub(svc).Preflight(preflight_request(release))
    clock.advance(minutes=16)
    async with start_gate(GateOptions(clock=clock)) as svc:
        result = await gate_stub(svc).Preflight(preflight_request(release))
    assert verdict(result) == "RELEASE_BLOCK"


async def test_cleared_reason_forgets_its_first_seen_time(
    start_gate: StartGate, signals: SignalServers, clock: FakeClock, pg: asyncpg.Pool
) -> None:
    signals.summary.reply = s1_high_summary()
    release = new_release()
    async with start_gate(
        GateOptions(clock=clock), PTF_THRESHOLD__GATE__SIGNAL_CACHE_SECONDS="0.001"
    ) as svc:
        stub = gate_stub(svc)
        await stub.Preflight(preflight_request(release))
        rows_while_held = await pg.fetchval(
            "SELECT count(*) FROM gate_escalation WHERE release = $1", release
        )
        signals.summary.reply = healthy_summary()
        clock.advance(minutes=20)
        recovered = await stub.Preflight(preflight_request(release))
    rows_after = await pg.fetchval(
        "SELECT count(*) FROM gate_escalation WHERE release = $1", release
    )
    assert (rows_while_held, verdict(recovered), rows_after) == (1, "RELEASE_OK", 0)


async def test_same_request_id_returns_the_first_answer(
    start_gate: StartGate, signals: SignalServers, clock: FakeClock
) -> None:
    release = new_release()
    async with start_gate(
        GateOptions(clock=clock), PTF_THRESHOLD__GATE__SIGNAL_CACHE_SECONDS="0.001"
    ) as svc:
        stub = gate_stub(svc)
        first = await stub.Preflight(preflight_request(release, request_id="req-1"))
        signals.summary.reply = s1_high_summary()
        clock.advance(minutes=59)
        again = await stub.Preflight(preflight_request(release, request_id="req-1"))
    assert (verdict(again), again) == ("RELEASE_OK", first)


async def test_request_id_is_answered_afresh_after_the_dedup_window(
    start_gate: StartGate, signals: SignalServers, clock: FakeClock
) -> None:
    release = new_release()
    async with start_gate(
        GateOptions(clock=clock), PTF_THRESHOLD__GATE__SIGNAL_CACHE_SECONDS="0.001"
    ) as svc:
        stub = gate_stub(svc)
        await stub.Preflight(preflight_request(release, request_id="req-2"))
        signals.summary.reply = s1_high_summary()
        clock.advance(minutes=61)
        later = await stub.Preflight(preflight_request(release, request_id="req-2"))
    assert verdict(later) == "RELEASE_HOLD"


async def test_request_id_reused_for_another_request_is_refused(start_gate: StartGate) -> None:
    async with start_gate() as svc:
        stub = gate_stub(svc)
        await stub.Preflight(preflight_request(new_release(), request_id="req-3"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Preflight(preflight_request(new_release(), request_id="req-3"))
    assert (caught.value.code(), error_code(caught.value)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "REQUEST_ID_REUSED",
    )


async def test_escalation_state_is_shared_by_replicas(
    start_gate: StartGate, signals: SignalServers, clock: FakeClock
) -> None:
    signals.summary.reply = s1_high_summary()
    release = new_release()
    async with (
        start_gate(GateOptions(clock=clock)) as first,
        start_gate(GateOptions(clock=clock)) as second,
    ):
        await gate_stub(first).Preflight(preflight_request(release))
        clock.advance(minutes=15)
        result = await gate_stub(second).Preflight(preflight_request(release))
    assert verdict(result) == "RELEASE_BLOCK"


async def test_each_preflight_run_is_reported_to_telemetry_once(
    start_gate: StartGate, signals: SignalServers
) -> None:
    """A replayed request id answers from the dedup store and is not reported again."""
    release = new_release()
    async with start_gate() as svc:
        stub = gate_stub(svc)
        first = await stub.Preflight(preflight_request(release, request_id="report-1"))
        await stub.Preflight(preflight_request(release, request_id="report-1"))
        second = await stub.Preflight(preflight_request(new_release()))
    reported = [(p.spec_hash, p.override_result, p.exit_code) for p in signals.preflights]
    assert sorted(reported) == sorted([(first.spec_hash, "none", 0), (second.spec_hash, "none", 0)])
    assert all(p.verdict == telemetry_pb2.VERDICT_RELEASE_OK for p in signals.preflights)
