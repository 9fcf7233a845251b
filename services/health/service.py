"""Wiring of the health service: `/health/ready` over HTTP and `Ready` over gRPC (SPEC §6),
and its `health.status` events on the `health` live channel (live_feed.py).

Health's own Kubernetes readiness uses `/health`: the service that explains why
the system is not ready must stay reachable when it is not.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.timestamp_pb2 import Timestamp
from ptf.health.v1 import health_pb2, health_pb2_grpc

from services.health.checks import (
    ExtractorView,
    QueueSnapshot,
    config_check,
    database_check,
    openai_check,
    queue_check,
    services_check,
)
from services.health.live_feed import HealthFeed
from services.health.metrics import HealthMetrics
from services.health.openapi import PATHS as OPENAPI_PATHS
from services.health.pipeline_status import (
    PipelineStatusClient,
    PipelineUnreachable,
    extractor_view,
    last_activity,
    pilot_block,
    queue_snapshot,
)
from services.health.readiness import Readiness
from services.health.report import CheckStatus, ReadinessReport
from services.runtime.cache import SingleFlightCache
from services.runtime.keys.channels import service_channel
from services.runtime.live.bus import LivePublisher
from services.runtime.live.metrics import LiveMetrics
from services.runtime.server import Runtime, ServiceDefinition, ServiceParts

SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["HealthService"].full_name

_PROTO_STATUS = {
    CheckStatus.OK: health_pb2.CHECK_STATUS_OK,
    CheckStatus.WARNING: health_pb2.CHECK_STATUS_WARNING,
    CheckStatus.ERROR: health_pb2.CHECK_STATUS_ERROR,
}


def _to_proto(report: ReadinessReport) -> health_pb2.ReadyResponse:
    body = report.as_json()
    timestamp = Timestamp()
    timestamp.FromDatetime(report.timestamp)
    response = health_pb2.ReadyResponse(
        ready=report.ready,
        timestamp=timestamp,
        build_id=report.build_id,
        config_hash=report.config_hash,
        failing_checks=report.failing_checks,
        report_json=json.dumps(body, sort_keys=True),
    )
    for name, result in report.checks.items():
        response.checks.add(
            name=name,
            status=_PROTO_STATUS[result.status],
            message=result.message,
            details={k: json.dumps(v) for k, v in result.values.items()},
        )
    if report.pilot is not None:
        usage = report.pilot.get("rate_limit", {})
        response.pilot.enabled = bool(report.pilot.get("enabled"))
        response.pilot.tenant_id = str(report.pilot.get("tenant_id", ""))
        for field in ("current", "limit", "remaining", "window_seconds"):
            setattr(response.pilot.rate_limit, field, int(usage.get(field, 0)))
    return response


class HealthServicer(health_pb2_grpc.HealthServiceServicer):
    def __init__(self, readiness: Readiness) -> None:
        self._readiness = readiness

    async def Ready(
        self, request: health_pb2.ReadyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.ReadyResponse:
        return _to_proto(await self._readiness.report())


def _ready_route(readiness: Readiness) -> web.RouteDef:
    async def ready(request: web.Request) -> web.Response:
        report = await readiness.report()
        if "verbose" in request.query:
            return web.Response(text=report.verbose_lines(), status=report.http_status)
        return web.json_response(report.as_json(), status=report.http_status)

    return web.get("/health/ready", ready)


async def build(runtime: Runtime) -> ServiceParts:
    config = runtime.config
    thresholds = config.thresholds
    channels = {
        name: service_channel(address, config)
        for name, address in (
            ("gate", config.addresses.gate),
            ("telemetry", config.addresses.telemetry),
            ("pipeline", config.addresses.pipeline),
        )
    }
    client = PipelineStatusClient(
        channels["pipeline"], deadline_seconds=thresholds.Health.CHECK_TIMEOUT_SECONDS
    )
    # The queue, openai_api, pilot and last_activity parts run concurrently in one
    # evaluation and share one in-flight call; nothing is kept for the next one (no TTL).
    status = SingleFlightCache(client.fetch, ttl_seconds=0)

    async def queue() -> QueueSnapshot:
        return queue_snapshot(await status.get())

    async def extractor() -> ExtractorView:
        return extractor_view(await status.get())

    async def activity() -> dict[str, str | None]:
        return last_activity(await status.get())

    async def pilot() -> dict[str, Any]:
        try:
            return pilot_block(await status.get())
        except PipelineUnreachable as exc:
            return {"status": CheckStatus.ERROR.value, "message": str(exc)}

    feed = HealthFeed(
        LivePublisher(runtime.redis, runtime.keys, config.live, LiveMetrics(runtime.metrics.meter)),
        config.live,
        refresh_seconds=thresholds.Health.REFRESH_SECONDS,
        clock=lambda: datetime.now(UTC),
    )
    readiness = Readiness(
        config,
        {
            "config": config_check(config),
            "database": database_check(runtime.pool, thresholds.Health),
            "openai_api": openai_check(extractor),
            "queue": queue_check(queue),
            "services": services_check(channels, thresholds.Health.CHECK_TIMEOUT_SECONDS),
        },
        pilot=pilot,
        activity=activity,
        on_report=HealthMetrics(runtime.metrics.meter).observe,
        feed=feed,
    )
    runtime.spawn(
        "health-readiness-refresh",
        lambda: readiness.refresh_forever(thresholds.Health.REFRESH_SECONDS),
    )

    def register(server: grpc.aio.Server) -> None:
        health_pb2_grpc.add_HealthServiceServicer_to_server(HealthServicer(readiness), server)

    async def close_channels() -> None:
        for channel in channels.values():
            await channel.close()

    return ServiceParts(
        grpc_service_names=[SERVICE_NAME],
        register_grpc=register,
        routes=[_ready_route(readiness)],
        openapi=OPENAPI_PATHS,
        on_shutdown=close_channels,
    )


# Health owns no tables: it asks the pipeline for what it shows, so it applies no migrations.
DEFINITION = ServiceDefinition(name="health", build=build, migrations=())
