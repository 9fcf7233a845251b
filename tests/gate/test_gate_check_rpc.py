"""Check end to end (SPEC §5.1, §5.4, seed 001): decision, audit row, metrics fail-open,
persisted counters, telemetry report and live decisions across replicas."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import asyncpg
import grpc
from ptf.gate.v1 import gate_pb2, gate_pb2_grpc
from ptf.telemetry.v1 import telemetry_pb2

from services.gate.audit import AuditEntry, AuditRecord, AuditRepository
from services.gate.service import GateOptions
from services.runtime.metric_stores import GateMetricStore
from tests.gate.service_support import (
    ADMIN,
    SignalServers,
    StartGate,
    gate_stub,
    new_release,
    preflight_request,
    s1_high_summary,
    unreachable_address,
)
from tests.support.polling import eventually
from tests.support.services import ServiceHandle


def check_request(release: str, *extra: str, **kwargs: str) -> gate_pb2.CheckRequest:
    return gate_pb2.CheckRequest(
        preflight=preflight_request(release, *extra, **kwargs), operator="ops@example"
    )


class RaisingMetricStore(GateMetricStore):
    """Fault injection: every recorder call of the store raises."""

    def record_decision(self, allowed: bool, reasons: Iterable[str] = ()) -> None:
        raise RuntimeError("metric store broken")

    def record_breach(self, kind: str = "NO_OVERRIDE") -> None:
        raise RuntimeError("metric store broken")

    def record_audit_write_failure(self) -> None:
        raise RuntimeError("metric store broken")


class UnreachableAudit(AuditRepository):
    """Fault injection: the audit trail's database cannot be reached."""

    async def append(self, record: AuditRecord) -> AuditEntry:
        raise asyncpg.PostgresConnectionError("audit database unreachable")


async def _metrics(svc: ServiceHandle) -> str:
    async with svc.http.get("/metrics") as response:
        return await response.text()


async def test_ok_verdict_is_allowed_and_audited(start_gate: StartGate, pg: asyncpg.Pool) -> None:
    release = new_release()
    async with start_gate() as svc:
        response = await gate_stub(svc).Check(check_request(release))
    row = await pg.fetchrow("SELECT * FROM gate_audit WHERE id = $1", response.audit_id)
    assert (response.decision, response.audit_written) == (gate_pb2.DECISION_ALLOW, True)
    assert row is not None
    assert (row["release"], row["decision"], row["verdict"], row["operator"]) == (
        release,
        "ALLOW",
        "RELEASE_OK",
        "dev-admin",
    )


async def test_held_verdict_is_denied_with_its_reasons(
    start_gate: StartGate, signals: SignalServers, pg: asyncpg.Pool
) -> None:
    signals.summary.reply = s1_high_summary()
    async with start_gate() as svc:
        response = await gate_stub(svc).Check(check_request(new_release()))
    reasons = await pg.fetchval("SELECT reasons FROM gate_audit WHERE id = $1", response.audit_id)
    assert (response.decision, list(reasons)) == (gate_pb2.DECISION_DENY, ["S1_RATE_HIGH"])


async def test_decisions_are_counted_on_metrics(
    start_gate: StartGate, signals: SignalServers
) -> None:
    async with start_gate(PTF_THRESHOLD__GATE__SIGNAL_CACHE_SECONDS="0.001") as svc:
        stub = gate_stub(svc)
        await stub.Check(check_request(new_release()))
        signals.summary.reply = s1_high_summary()
        await stub.Check(check_request(new_release()))
        text = await _metrics(svc)
    assert 'release_gate_decision_total{decision="ALLOW"} 1.0' in text
    assert 'release_gate_decision_total{decision="DENY"} 1.0' in text
    assert 'release_gate_reason_total{reason="S1_RATE_HIGH"} 1.0' in text


async def test_counters_are_persisted_and_survive_a_restart(
    start_gate: StartGate, metrics_dir: Path
) -> None:
    async with start_gate() as svc:
        await gate_stub(svc).Check(check_request(new_release()))
    saved = json.loads((metrics_dir / GateMetricStore.FILE_NAME).read_text())
    async with start_gate() as svc:
        text = await _metrics(svc)
    assert saved["decision_counts"]["ALLOW"] == 1
    assert 'release_gate_decision_total{decision="ALLOW"} 1.0' in text


async def test_raising_metric_store_leaves_the_decision_unchanged(
    start_gate: StartGate, signals: SignalServers
) -> None:
    """Fault: every metric recorder call raises. Must: ALLOW and DENY exactly as without it."""
    options = GateOptions(metric_store=lambda _: RaisingMetricStore())
    async with start_gate(options, PTF_THRESHOLD__GATE__SIGNAL_CACHE_SECONDS="0.001") as svc:
        stub = gate_stub(svc)
        allowed = await stub.Check(check_request(new_release()))
        signals.summary.reply = s1_high_summary()
        denied = await stub.Check(check_request(new_release(), "non_overridable: [S1_RATE_HIGH]"))
        text = await _metrics(svc)
    assert (allowed.decision, denied.decision) == (gate_pb2.DECISION_ALLOW, gate_pb2.DECISION_DENY)
    assert (allowed.audit_written, denied.result.contract_breach) == (True, True)
    assert "release_gate_metric_write_failures_total 3.0" in text


async def test_audit_failure_is_counted_and_the_decision_stands_by_default(
    start_gate: StartGate,
) -> None:
    """Fault: the audit database is unreachable. Must: ALLOW stands (fail-open), counted."""
    async with start_gate(GateOptions(audit=UnreachableAudit)) as svc:
        response = await gate_stub(svc).Check(check_request(new_release()))
        text = await _metrics(svc)
    assert (response.decision, response.audit_written, response.audit_id) == (
        gate_pb2.DECISION_ALLOW,
        False,
        0,
    )
    assert "release_gate_audit_write_failures_total 1.0" in text


async def test_audit_failure_denies_when_audit_is_required(start_gate: StartGate) -> None:
    """Fault: audit unreachable with GATE_AUDIT_REQUIRED=true. Must: DENY an OK verdict."""
    async with start_gate(GateOptions(audit=UnreachableAudit), GATE_AUDIT_REQUIRED="true") as svc:
        response = await gate_stub(svc).Check(check_request(new_release()))
    assert (response.decision, response.result.verdict) == (
        gate_pb2.DECISION_DENY,
        gate_pb2.VERDICT_RELEASE_OK,
    )


async def test_each_decision_is_reported_to_telemetry_as_a_gate_decision_event(
    start_gate: StartGate, signals: SignalServers
) -> None:
    signals.summary.reply = s1_high_summary()
    release = new_release()
    async with start_gate() as svc:
        await gate_stub(svc).Check(check_request(release))
        events: Sequence[telemetry_pb2.Event] = await eventually(lambda: _events(signals))
    (event,) = events
    assert event.type == telemetry_pb2.EVENT_TYPE_GATE_DECISION
    assert json.loads(event.payload_json) == {
        "release": release,
        "allowed": False,
        "reasons": ["S1_RATE_HIGH"],
        "contract_breach": False,
        "breach_kind": None,
        "audit_write_failed": False,
    }


async def _events(signals: SignalServers) -> list[telemetry_pb2.Event]:
    return list(signals.events)


async def test_unreachable_telemetry_does_not_change_the_decision(
    start_gate: StartGate, signals: SignalServers
) -> None:
    """Fault: telemetry down while checking. Must: decision made (HOLD → DENY), RPC answers."""
    async with start_gate(PTF_TELEMETRY_ADDR=unreachable_address()) as svc:
        response = await gate_stub(svc).Check(check_request(new_release()))
    assert (response.decision, response.audit_written) == (gate_pb2.DECISION_DENY, True)


async def test_watchers_on_another_replica_see_each_decision(start_gate: StartGate) -> None:
    release = new_release()
    async with start_gate() as deciding, start_gate() as watching:
        call = gate_stub(watching).WatchDecisions(
            gate_pb2.WatchDecisionsRequest(release=release), metadata=ADMIN
        )
        await call.initial_metadata()
        await gate_stub(deciding).Check(check_request(release))
        event = await call.read()
        call.cancel()
    assert isinstance(event, gate_pb2.DecisionEvent)
    assert (event.release, event.decision, event.verdict) == (
        release,
        gate_pb2.DECISION_ALLOW,
        gate_pb2.VERDICT_RELEASE_OK,
    )


async def test_watch_filters_by_release(start_gate: StartGate) -> None:
    wanted, other = new_release(), new_release()
    async with start_gate() as svc:
        stub = gate_stub(svc)
        call = stub.WatchDecisions(gate_pb2.WatchDecisionsRequest(release=wanted), metadata=ADMIN)
        await call.initial_metadata()
        await stub.Check(check_request(other))
        await stub.Check(check_request(wanted))
        event = await call.read()
        call.cancel()
    assert isinstance(event, gate_pb2.DecisionEvent)
    assert event.release == wanted


async def test_shutdown_ends_open_watch_streams_cleanly(start_gate: StartGate) -> None:
    async with start_gate() as svc:
        channel = grpc.aio.insecure_channel(svc.running.grpc_target)
        stub: gate_pb2_grpc.GateServiceAsyncStub = gate_pb2_grpc.GateServiceStub(channel)  # type: ignore[assignment]
        call = stub.WatchDecisions(gate_pb2.WatchDecisionsRequest(), metadata=ADMIN)
        await call.initial_metadata()
    try:
        assert await call.code() == grpc.StatusCode.OK
    finally:
        await channel.close()


async def test_retried_check_with_the_same_request_id_is_decided_and_audited_once(
    start_gate: StartGate, pg: asyncpg.Pool
) -> None:
    release = new_release()
    request = check_request(release, request_id="deploy-42-check")
    async with start_gate() as svc:
        stub = gate_stub(svc)
        first = await stub.Check(request)
        retry = await stub.Check(request)
    rows = await pg.fetchval("SELECT count(*) FROM gate_audit WHERE release = $1", release)
    assert (retry, rows) == (first, 1)
