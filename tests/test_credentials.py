"""One credential system across the four services (SPEC §11), on the real stack over loopback.

- outside development the dev keys open nothing, on every service and transport;
- a key created with `ptf-admin keys create` works on gate, telemetry and pipeline, and
  `ptf-admin keys revoke` locks it out of all three within the cache bound;
- forged telemetry events (no key, a tenant key) are refused and do not move a verdict.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from ptf.gate.v1 import gate_pb2, gate_pb2_grpc
from ptf.live.v1 import live_pb2, live_pb2_grpc
from ptf.pipeline.v1 import pipeline_pb2, pipeline_pb2_grpc
from ptf.telemetry.v1 import telemetry_pb2, telemetry_pb2_grpc

from services.runtime.errors import ERROR_CODE_METADATA
from services.runtime.keys import key_id_of
from services.runtime.keys.channels import keyed_channel
from tests.monitoring.live_stack import LiveStack, isolated_config, live_stack
from tests.support.services import ServiceHandle
from tests.telemetry.factories import event, invoice

PTF_ADMIN = str(Path(sys.executable).parent / "ptf-admin")
DEV_KEYS = {"dev-admin-key": "x-admin-key", "dev-tenant-key": "x-api-key"}
CACHE_SECONDS = 1.0
SPEC_HASH = "sha256:" + "a" * 64

GrpcCall = Callable[[grpc.aio.Channel], Awaitable[Any]]


def _spec(tenant: str) -> str:
    return "\n".join(
        [
            f'release: "2026.01.17-{uuid.uuid4().hex[:10]}"',
            'build: "git:abc1234"',
            f"tenant_id: {tenant}",
            "window: 1h",
            "facts: [tests_passed, smoke_passed]",
            "",
        ]
    )


def _preflight(tenant: str = "pilot") -> gate_pb2.PreflightRequest:
    return gate_pb2.PreflightRequest(
        spec_yaml=_spec(tenant), facts={"tests_passed": "true", "smoke_passed": "true"}
    )


async def _live_subscribe(channel: grpc.aio.Channel) -> Any:
    request = live_pb2.SubscribeRequest(channel="health")
    return await live_pb2_grpc.LiveServiceStub(channel).Subscribe(request).read()


GATE_CALLS: dict[str, GrpcCall] = {
    "Preflight": lambda ch: gate_pb2_grpc.GateServiceStub(ch).Preflight(_preflight()),
    "Check": lambda ch: gate_pb2_grpc.GateServiceStub(ch).Check(
        gate_pb2.CheckRequest(preflight=_preflight())
    ),
    "RequestOverride": lambda ch: gate_pb2_grpc.GateServiceStub(ch).RequestOverride(
        gate_pb2.RequestOverrideRequest(
            release="r1", spec_hash=SPEC_HASH, justification="j", reasons=[1]
        )
    ),
    "ListAudit": lambda ch: gate_pb2_grpc.GateServiceStub(ch).ListAudit(
        gate_pb2.ListAuditRequest()
    ),
    "DescribeOverride": lambda ch: gate_pb2_grpc.GateServiceStub(ch).DescribeOverride(
        gate_pb2.DescribeOverrideRequest(token_hash="f" * 64)
    ),
    "WatchDecisions": lambda ch: (
        gate_pb2_grpc.GateServiceStub(ch).WatchDecisions(gate_pb2.WatchDecisionsRequest()).read()
    ),
    "LiveService.Subscribe": _live_subscribe,
}
TELEMETRY_CALLS: dict[str, GrpcCall] = {
    "RecordEvents": lambda ch: telemetry_pb2_grpc.TelemetryServiceStub(ch).RecordEvents(
        telemetry_pb2.RecordEventsRequest()
    ),
    "RecordPreflights": lambda ch: telemetry_pb2_grpc.TelemetryServiceStub(ch).RecordPreflights(
        telemetry_pb2.RecordPreflightsRequest()
    ),
    "GetRunSummary": lambda ch: telemetry_pb2_grpc.TelemetryServiceStub(ch).GetRunSummary(
        telemetry_pb2.GetRunSummaryRequest()
    ),
    "GetSystemHealth": lambda ch: telemetry_pb2_grpc.TelemetryServiceStub(ch).GetSystemHealth(
        telemetry_pb2.GetSystemHealthRequest()
    ),
}
PIPELINE_CALLS: dict[str, GrpcCall] = {
    "SubmitInvoice": lambda ch: pipeline_pb2_grpc.PipelineServiceStub(ch).SubmitInvoice(
        pipeline_pb2.SubmitInvoiceRequest(tenant_id="pilot", extraction_json="{}")
    ),
    "GetJob": lambda ch: pipeline_pb2_grpc.PipelineServiceStub(ch).GetJob(
        pipeline_pb2.GetJobRequest(job_id=str(uuid.uuid4()))
    ),
    "ListIncidents": lambda ch: pipeline_pb2_grpc.PipelineServiceStub(ch).ListIncidents(
        pipeline_pb2.ListIncidentsRequest(tenant_id="pilot")
    ),
    "ResolveIncident": lambda ch: pipeline_pb2_grpc.PipelineServiceStub(ch).ResolveIncident(
        pipeline_pb2.ResolveIncidentRequest(incident_id=str(uuid.uuid4()))
    ),
    "SubmitFeedback": lambda ch: pipeline_pb2_grpc.PipelineServiceStub(ch).SubmitFeedback(
        pipeline_pb2.SubmitFeedbackRequest(incident_id=str(uuid.uuid4()))
    ),
    "GetFeedbackStats": lambda ch: pipeline_pb2_grpc.PipelineServiceStub(ch).GetFeedbackStats(
        pipeline_pb2.GetFeedbackStatsRequest(tenant_id="pilot")
    ),
    "GetReadinessStatus": lambda ch: pipeline_pb2_grpc.PipelineServiceStub(ch).GetReadinessStatus(
        pipeline_pb2.GetReadinessStatusRequest()
    ),
    "LiveService.Subscribe": _live_subscribe,
}
GRPC_CALLS = {"gate": GATE_CALLS, "telemetry": TELEMETRY_CALLS, "pipeline": PIPELINE_CALLS}
HTTP_CALLS: dict[str, list[tuple[str, str]]] = {
    "telemetry": [("GET", "/run-summary"), ("GET", "/admin/system-health")],
    "pipeline": [
        ("POST", "/full-process?tenant_id=pilot"),
        ("GET", f"/jobs/{uuid.uuid4()}"),
        ("GET", "/admin/incidents"),
        ("POST", f"/admin/incidents/{uuid.uuid4()}/resolve"),
        ("POST", f"/admin/incidents/{uuid.uuid4()}/feedback"),
        ("GET", "/admin/feedback-stats?tenant_id=pilot"),
        ("GET", "/admin/system-health"),
        ("POST", "/admin/tenants/pilot/purge"),
        ("POST", "/admin/tenants/pilot/purge/confirm"),
    ],
}


def _code(exc: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str | None]:
    return exc.code(), dict(exc.trailing_metadata() or ()).get(ERROR_CODE_METADATA)


async def _grpc_outcome(svc: ServiceHandle, header: str, key: str, call: GrpcCall) -> Any:
    async with keyed_channel(svc.running.grpc_target, ((header, key),)) as channel:
        try:
            await call(channel)
        except grpc.aio.AioRpcError as exc:
            return _code(exc)
    return "answered"


async def _http_outcome(svc: ServiceHandle, method: str, path: str, headers: dict[str, str]) -> Any:
    async with svc.http.request(method, path, json={}, headers=headers) as response:
        body = await response.json()
        return response.status, body.get("error_code")


@pytest.fixture
async def production(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[LiveStack]:
    """The four services with ENV=production and a service key from the key store."""
    service_key = await _ptf_admin(database_url, "create", "--role", "service", "--operator", "s")
    async with live_stack(
        isolated_config(database_url, redis_url),
        tmp_path,
        ENV="production",
        PTF_SERVICE_KEY=service_key,
        PTF_THRESHOLD__ACCESS__KEY_CACHE_SECONDS=str(CACHE_SECONDS),
        PTF_THRESHOLD__GATE__SIGNAL_CACHE_SECONDS="0.05",
    ) as stack:
        yield stack


async def _ptf_admin(database_url: str, *args: str) -> str:
    """Run `ptf-admin keys ARGS` as an operator would; its stdout (the key for create)."""
    process = await asyncio.create_subprocess_exec(
        PTF_ADMIN,
        "keys",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "DATABASE_URL": database_url, "ENV": "production"},
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode().strip()


async def test_production_refuses_both_dev_keys_on_every_grpc_operation(
    production: LiveStack,
) -> None:
    refused = {
        (service, method, key): await _grpc_outcome(production.services[service], header, key, call)
        for service, calls in GRPC_CALLS.items()
        for method, call in calls.items()
        for key, header in DEV_KEYS.items()
    }
    expected = (grpc.StatusCode.UNAUTHENTICATED, "INVALID_API_KEY")
    assert {k: v for k, v in refused.items() if v != expected} == {}


async def test_production_refuses_both_dev_keys_on_every_http_operation(
    production: LiveStack,
) -> None:
    refused = {
        (service, method, path, key): await _http_outcome(
            production.services[service], method, path, {header: key}
        )
        for service, calls in HTTP_CALLS.items()
        for method, path in calls
        for key, header in DEV_KEYS.items()
    }
    assert {k: v for k, v in refused.items() if v != (401, "INVALID_API_KEY")} == {}


async def test_an_admin_key_from_the_store_opens_all_three_services_until_revoked(
    production: LiveStack, database_url: str
) -> None:
    key = await _ptf_admin(database_url, "create", "--role", "admin", "--operator", "ayse")
    probes = {
        "gate": (GATE_CALLS["ListAudit"], "gate"),
        "telemetry": (TELEMETRY_CALLS["GetSystemHealth"], "telemetry"),
        "pipeline": (PIPELINE_CALLS["GetFeedbackStats"], "pipeline"),
    }

    async def outcomes() -> dict[str, Any]:
        return {
            name: await _grpc_outcome(production.services[svc], "x-admin-key", key, call)
            for name, (call, svc) in probes.items()
        }

    before = await outcomes()
    await _ptf_admin(database_url, "revoke", key_id_of(key))
    await asyncio.sleep(CACHE_SECONDS + 0.2)
    after = await outcomes()
    assert before == dict.fromkeys(probes, "answered")
    assert after == dict.fromkeys(probes, (grpc.StatusCode.UNAUTHENTICATED, "INVALID_API_KEY"))


async def test_forged_events_are_refused_and_leave_the_verdict_as_it_was(
    production: LiveStack, database_url: str
) -> None:
    """The attack of issue 11: 30 INVOICE_PROCESSED events for a tenant with too little data
    would lift its preflight past INSUFFICIENT_DATA. Sent with no key and with a tenant key
    they are refused; sent by a real service key they do count (the test can fail)."""
    tenant = f"forged-{uuid.uuid4().hex[:8]}"
    tenant_key = await _ptf_admin(
        database_url, "create", "--role", "tenant", "--tenant", tenant, "--operator", "t"
    )
    service_key = await _ptf_admin(database_url, "create", "--role", "service", "--operator", "c")
    operator_key = await _ptf_admin(database_url, "create", "--role", "admin", "--operator", "o")
    telemetry = production.services["telemetry"]
    gate = production.services["gate"]
    now = datetime.now(UTC)
    forged = telemetry_pb2.RecordEventsRequest(
        events=[event("INVOICE_PROCESSED", tenant, invoice(), now) for _ in range(30)]
    )

    async def reasons() -> set[str]:
        async with keyed_channel(gate.running.grpc_target, (("x-admin-key", operator_key),)) as ch:
            result = await gate_pb2_grpc.GateServiceStub(ch).Preflight(_preflight(tenant))
        return {gate_pb2.BlockReasonCode.Name(r.code) for r in result.reasons}

    async def send(metadata: tuple[tuple[str, str], ...]) -> Any:
        async with keyed_channel(telemetry.running.grpc_target, metadata) as channel:
            try:
                reply = await telemetry_pb2_grpc.TelemetryServiceStub(channel).RecordEvents(forged)
            except grpc.aio.AioRpcError as exc:
                return _code(exc)
            return reply.accepted

    before = await reasons()
    refused = [await send(()), await send((("x-api-key", tenant_key),))]
    await asyncio.sleep(0.1)
    unchanged = await reasons()
    accepted = await send((("x-api-key", service_key),))
    await asyncio.sleep(0.1)
    moved = await reasons()
    assert "BLOCK_REASON_CODE_INSUFFICIENT_DATA" in before
    assert refused == [
        (grpc.StatusCode.UNAUTHENTICATED, "MISSING_API_KEY"),
        (grpc.StatusCode.PERMISSION_DENIED, "ROLE_FORBIDDEN"),
    ]
    assert unchanged == before
    assert (accepted, "BLOCK_REASON_CODE_INSUFFICIENT_DATA" in moved) == (30, False)
