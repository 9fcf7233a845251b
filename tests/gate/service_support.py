"""Helpers for the gate service tests: real gRPC signal servers, a fake clock, specs, a gate.

The signal sources are small real grpc.aio servers on loopback implementing
health `Ready`, telemetry `GetRunSummary`/`RecordEvents` and pipeline
`GetBacktestResult` with canned answers that each test sets; a method a test
does not want answered raises a canned status (real gRPC, not mocks).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from ptf.gate.v1 import gate_pb2, gate_pb2_grpc
from ptf.health.v1 import health_pb2, health_pb2_grpc
from ptf.pipeline.v1 import pipeline_pb2, pipeline_pb2_grpc
from ptf.telemetry.v1 import telemetry_pb2, telemetry_pb2_grpc

from services.gate.service import GateOptions, definition
from services.runtime.devservers import free_port
from tests.support.services import ServiceHandle

Context = grpc.aio.ServicerContext[Any, Any]
ADMIN_KEY = "test-admin-key"


class FakeClock:
    """Injected wall clock: starts at the real time, moves only when a test says so."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def ready_reply(**fields: Any) -> health_pb2.ReadyResponse:
    base: dict[str, Any] = {
        "ready": True,
        "build_id": "git:abc1234",
        "config_hash": "sha256:0123456789abcdef",
        "checks": [
            health_pb2.Check(name="config", status=health_pb2.CHECK_STATUS_OK),
            health_pb2.Check(
                name="queue",
                status=health_pb2.CHECK_STATUS_OK,
                details={"depth": "0", "stuck_detected": "false"},
            ),
        ],
    }
    base.update(fields)
    return health_pb2.ReadyResponse(**base)


def healthy_summary(**counts: int) -> telemetry_pb2.RunSummary:
    """A run summary that passes every rule with default thresholds (domain_builders twin)."""
    base = {
        "total_invoices": 100,
        "incident_count": 10,
        "s1_count": 1,
        "s2_count": 3,
        "ocr_suspect_count": 1,
        "resolved_count": 10,
        "feedback_count": 5,
        "accept_rounding_count": 10,
    }
    base.update(counts)
    return telemetry_pb2.RunSummary(
        counts=telemetry_pb2.RunSummaryCounts(**base),
        latency=telemetry_pb2.RunSummaryLatency(
            pipeline_total_ms=telemetry_pb2.LatencyPercentiles(
                p50=800.0, p95=1500.0, p99=1800.0, sample_count=100
            )
        ),
        errors=telemetry_pb2.RunSummaryErrors(total_requests=200, total_5xx=0),
        queue=telemetry_pb2.RunSummaryQueue(current_depth=0, max_depth_in_period=3),
        tenant_id="pilot",
    )


def s1_high_summary() -> telemetry_pb2.RunSummary:
    """S1 rate 50 % of 40 incidents: S1_RATE_HIGH (HOLD, escalates after 15 min) alone."""
    return healthy_summary(incident_count=40, s1_count=20, s2_count=4, ocr_suspect_count=2)


@dataclass
class Canned:
    """What a fake source answers: a reply, or a status to abort with."""

    reply: Any = None
    error: grpc.StatusCode | None = None
    calls: int = 0
    hang: bool = False
    requests: list[Any] = field(default_factory=list)


class _Health(health_pb2_grpc.HealthServiceServicer):
    def __init__(self, canned: Canned) -> None:
        self.canned = canned

    async def Ready(self, request: health_pb2.ReadyRequest, context: Context) -> Any:
        return await _answer(self.canned, request, context)


class _Telemetry(telemetry_pb2_grpc.TelemetryServiceServicer):
    def __init__(
        self,
        canned: Canned,
        events: list[telemetry_pb2.Event],
        preflights: list[telemetry_pb2.RecordPreflightRequest],
    ) -> None:
        self.canned = canned
        self.events = events
        self.preflights = preflights

    async def RecordPreflights(
        self, request: telemetry_pb2.RecordPreflightsRequest, context: Context
    ) -> telemetry_pb2.RecordPreflightResponse:
        self.preflights.extend(request.runs)
        return telemetry_pb2.RecordPreflightResponse(store_generation=len(self.preflights))

    async def GetRunSummary(
        self, request: telemetry_pb2.GetRunSummaryRequest, context: Context
    ) -> Any:
        return await _answer(self.canned, request, context)

    async def RecordEvents(
        self, request: telemetry_pb2.RecordEventsRequest, context: Context
    ) -> telemetry_pb2.RecordEventsResponse:
        self.events.extend(request.events)
        return telemetry_pb2.RecordEventsResponse(accepted=len(request.events))


class _Pipeline(pipeline_pb2_grpc.PipelineServiceServicer):
    def __init__(self, canned: Canned) -> None:
        self.canned = canned

    async def GetBacktestResult(
        self, request: pipeline_pb2.GetBacktestResultRequest, context: Context
    ) -> Any:
        return await _answer(self.canned, request, context)


async def _answer(canned: Canned, request: Any, context: Context) -> Any:
    canned.calls += 1
    canned.requests.append(request)
    if canned.hang:
        await asyncio.Event().wait()  # until the caller's deadline cancels the call
    if canned.error is not None:
        await context.abort(canned.error, "canned failure")
    return canned.reply


@dataclass
class SignalServers:
    """The fake health, telemetry and pipeline services behind one loopback address."""

    address: str
    health: Canned = field(default_factory=lambda: Canned(reply=ready_reply()))
    summary: Canned = field(default_factory=lambda: Canned(reply=healthy_summary()))
    backtest: Canned = field(default_factory=lambda: Canned(error=grpc.StatusCode.UNIMPLEMENTED))
    events: list[telemetry_pb2.Event] = field(default_factory=list)
    preflights: list[telemetry_pb2.RecordPreflightRequest] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {
            "PTF_HEALTH_ADDR": self.address,
            "PTF_TELEMETRY_ADDR": self.address,
            "PTF_PIPELINE_ADDR": self.address,
        }


@asynccontextmanager
async def signal_servers() -> AsyncIterator[SignalServers]:
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    servers = SignalServers(address=f"127.0.0.1:{port}")
    health_pb2_grpc.add_HealthServiceServicer_to_server(_Health(servers.health), server)
    telemetry_pb2_grpc.add_TelemetryServiceServicer_to_server(
        _Telemetry(servers.summary, servers.events, servers.preflights), server
    )
    pipeline_pb2_grpc.add_PipelineServiceServicer_to_server(_Pipeline(servers.backtest), server)
    await server.start()
    try:
        yield servers
    finally:
        await server.stop(0)


def unreachable_address() -> str:
    """A loopback port nothing listens on (connection refused → UNAVAILABLE)."""
    return f"127.0.0.1:{free_port()}"


def new_release() -> str:
    """A release name of its own: escalation state and audit rows are per release."""
    return f"2026.01.17-{uuid.uuid4().hex[:10]}"


def spec_yaml(release: str, *extra_lines: str, facts: str = "[tests_passed, smoke_passed]") -> str:
    lines = [
        f'release: "{release}"',
        'build: "git:abc1234"',
        "tenant_id: pilot",
        "window: 1h",
        f"facts: {facts}",
        *extra_lines,
    ]
    return "\n".join(lines) + "\n"


HEALTHY_FACTS = {"tests_passed": "true", "smoke_passed": "true"}


def preflight_request(
    release: str, *extra_lines: str, token: str = "", request_id: str = "", **facts: str
) -> gate_pb2.PreflightRequest:
    return gate_pb2.PreflightRequest(
        spec_yaml=spec_yaml(release, *extra_lines),
        facts={**HEALTHY_FACTS, **facts},
        override_token=token,
        request_id=request_id,
    )


def gate_stub(svc: ServiceHandle) -> gate_pb2_grpc.GateServiceAsyncStub:
    """A stub presenting the test's admin key (admins may call every gate RPC)."""
    return gate_pb2_grpc.GateServiceStub(svc.admin_channel)  # type: ignore[return-value]


def anonymous_gate_stub(svc: ServiceHandle) -> gate_pb2_grpc.GateServiceAsyncStub:
    """A stub presenting no key: each call passes its own metadata, if any."""
    return gate_pb2_grpc.GateServiceStub(svc.channel)  # type: ignore[return-value]


ADMIN = (("x-admin-key", ADMIN_KEY),)

StartGate = Callable[..., AbstractAsyncContextManager[ServiceHandle]]


def gate_starter(
    start_service: Callable[..., AbstractAsyncContextManager[ServiceHandle]],
    signals: SignalServers,
    metrics_dir: Path,
) -> StartGate:
    """`start_gate(options=..., **env)` → a running gate wired to the fake signal servers."""

    def start(
        options: GateOptions | None = None, **env: str
    ) -> AbstractAsyncContextManager[ServiceHandle]:
        environ = {
            **signals.env(),
            "PTF_METRICS_DIR": str(metrics_dir),
            "PTF_DEV_ADMIN_KEY": ADMIN_KEY,
            **env,
        }
        return start_service(definition(options), **environ)

    return start


async def request_override(
    stub: gate_pb2_grpc.GateServiceAsyncStub,
    release: str,
    spec_hash: str,
    *reasons: str,
) -> gate_pb2.RequestOverrideResponse:
    return await stub.RequestOverride(
        gate_pb2.RequestOverrideRequest(
            release=release,
            spec_hash=spec_hash,
            reasons=[gate_pb2.BlockReasonCode.Value(f"BLOCK_REASON_CODE_{r}") for r in reasons],
            justification="known S1 spike from a provider outage; approved in INC-42",
        ),
    )


def error_code(exc: grpc.aio.AioRpcError) -> str | None:
    for key, value in exc.trailing_metadata() or ():
        if key == "ptf-error-code":
            return str(value)
    return None


def error_field(exc: grpc.aio.AioRpcError) -> str | None:
    for key, value in exc.trailing_metadata() or ():
        if key == "ptf-error-field":
            return str(value)
    return None


def reason_names(result: gate_pb2.PreflightResult) -> list[str]:
    return [
        gate_pb2.BlockReasonCode.Name(r.code).removeprefix("BLOCK_REASON_CODE_")
        for r in result.reasons
    ]


def verdict(result: gate_pb2.PreflightResult) -> str:
    return str(gate_pb2.Verdict.Name(result.verdict)).removeprefix("VERDICT_")


def override_result(result: gate_pb2.PreflightResult) -> str:
    return str(gate_pb2.OverrideResult.Name(result.override_result)).removeprefix(
        "OVERRIDE_RESULT_"
    )
