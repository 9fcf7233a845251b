"""Wiring of the gate service: adapters, engine and servicer built from the shared runtime.

`definition(GateOptions(...))` lets tests inject a clock, a metric store or
an audit repository; `DEFINITION` is the production service. The token store
is chosen by `config.token_store`; the token migrations are always applied
(cheap, and switching stores needs no extra step).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import asyncpg
import grpc
from ptf.gate.v1 import gate_pb2, gate_pb2_grpc
from ptf.health.v1 import health_pb2_grpc
from ptf.pipeline.v1 import pipeline_pb2_grpc
from ptf.telemetry.v1 import telemetry_pb2_grpc

from services.gate.audit import AuditRepository
from services.gate.auth import GateAccess
from services.gate.decisions import DecisionBus
from services.gate.dedup import RequestDedup
from services.gate.engine import Clock, GateDependencies, GateEngine, utc_now
from services.gate.escalation import EscalationRepository
from services.gate.metrics import GateMetrics
from services.gate.requests import PreflightInputs
from services.gate.servicer import GateServicer
from services.gate.signal_sources import SignalEndpoints, SignalSources
from services.gate.telemetry_report import DecisionReporter
from services.runtime.db import MigrationSet
from services.runtime.housekeeping import spawn_housekeeping
from services.runtime.keys import KEY_MIGRATIONS, Access, seed_dev_keys
from services.runtime.keys.channels import service_channel
from services.runtime.live.bus import LiveBus
from services.runtime.live.grpc_stream import LIVE_SERVICE_NAME, register_live
from services.runtime.live.metrics import LiveMetrics
from services.runtime.metric_stores import GateMetricStore
from services.runtime.server import Runtime, ServiceDefinition, ServiceParts
from services.runtime.tokens.factory import create_token_store, expired_token_purge
from services.runtime.tokens.postgres_store import TOKEN_MIGRATIONS
from services.runtime.tokens.store import TokenStore

SERVICE_NAME = gate_pb2.DESCRIPTOR.services_by_name["GateService"].full_name
GATE_MIGRATIONS = MigrationSet("gate", Path(__file__).parent / "migrations")


def _load_metric_store(directory: Path) -> GateMetricStore:
    return GateMetricStore.load_from_dir(directory)


@dataclass(frozen=True)
class GateOptions:
    """What a test may replace; production uses the defaults."""

    clock: Clock = utc_now
    metric_store: Callable[[Path], GateMetricStore] = _load_metric_store
    audit: Callable[[asyncpg.Pool], AuditRepository] = AuditRepository


def _token_store(runtime: Runtime, clock: Clock) -> TokenStore:
    def seconds() -> float:
        return clock().timestamp()

    retention = runtime.config.thresholds.Gate.USED_TOKEN_RETENTION_SECONDS
    return create_token_store(runtime, retention_seconds=retention, clock=seconds)


async def _build(runtime: Runtime, options: GateOptions) -> ServiceParts:
    config = runtime.config
    gate = config.thresholds.Gate
    addresses = (config.addresses.health, config.addresses.telemetry, config.addresses.pipeline)
    channels = [service_channel(address, config) for address in addresses]
    for channel in channels:
        runtime.close_on_exit(channel.close)  # after after_stop, also if the start fails
    endpoints = SignalEndpoints(
        health=health_pb2_grpc.HealthServiceStub(channels[0]),
        telemetry=telemetry_pb2_grpc.TelemetryServiceStub(channels[1]),
        pipeline=pipeline_pb2_grpc.PipelineServiceStub(channels[2]),
    )
    metrics_dir = Path(config.metrics_dir)
    metrics = GateMetrics(options.metric_store(metrics_dir), metrics_dir)
    metrics.register(runtime.metrics.meter)
    live = LiveBus(runtime.redis, runtime.keys, config.live, LiveMetrics(runtime.metrics.meter))
    await live.start()
    runtime.spawn("gate-live-fanout", live.run)
    bus = DecisionBus(live)
    reporter = DecisionReporter(
        endpoints.telemetry,
        timeout_seconds=gate.SIGNAL_TIMEOUT_SECONDS,
        linger_seconds=gate.PREFLIGHT_REPORT_LINGER_SECONDS,
    )
    audit = options.audit(runtime.pool)
    deps = GateDependencies(
        signals=SignalSources(
            endpoints,
            timeout_seconds=gate.SIGNAL_TIMEOUT_SECONDS,
            cache_seconds=gate.SIGNAL_CACHE_SECONDS,
        ),
        escalation=EscalationRepository(runtime.pool, cache_seconds=gate.ESCALATION_CACHE_SECONDS),
        tokens=_token_store(runtime, options.clock),
        audit=audit,
        metrics=metrics,
        bus=bus,
        reporter=reporter,
    )
    engine = GateEngine(config, deps, options.clock)
    dedup = RequestDedup(runtime.pool, timedelta(minutes=gate.REQUEST_DEDUP_MINUTES), engine.now)
    spawn_housekeeping(
        runtime,
        {
            "request-dedup": dedup.expire,
            "expired-tokens": expired_token_purge(runtime, lambda: options.clock().timestamp()),
        },
    )
    access = Access.for_service(runtime.pool, config)
    await seed_dev_keys(access.store, config)
    inputs = PreflightInputs(gate.PREFLIGHT_INPUT_CACHE_MAX_ENTRIES)
    servicer = GateServicer(engine, dedup, GateAccess(access), bus, audit, inputs)

    def register(server: grpc.aio.Server) -> None:
        gate_pb2_grpc.add_GateServiceServicer_to_server(servicer, server)
        register_live(server, live, access, config.live)

    async def on_shutdown() -> None:
        await live.close()  # ends WatchDecisions and Subscribe streams: none holds up the stop
        await metrics.flush()

    async def after_stop() -> None:
        # RPCs that finished within the grace period may have left reports and metrics.
        await reporter.drain()
        await metrics.flush()

    return ServiceParts(
        grpc_service_names=[SERVICE_NAME, LIVE_SERVICE_NAME],
        register_grpc=register,
        on_shutdown=on_shutdown,
        after_stop=after_stop,
    )


def definition(options: GateOptions | None = None) -> ServiceDefinition:
    """The gate service definition with the given options (defaults: production)."""
    chosen = options or GateOptions()

    async def build(runtime: Runtime) -> ServiceParts:
        return await _build(runtime, chosen)

    return ServiceDefinition(
        name="gate", build=build, migrations=(KEY_MIGRATIONS, GATE_MIGRATIONS, TOKEN_MIGRATIONS)
    )


DEFINITION = definition()
