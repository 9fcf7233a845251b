"""The pipeline's readiness status, asked over gRPC (`GetReadinessStatus`) with a deadline.

Health owns no tables and imports nothing from the pipeline package: queue,
last activity, extractor and pilot budget come from this one call, shared by
every check of an evaluation, so an evaluation costs the pipeline one call.
"""

from __future__ import annotations

from datetime import UTC

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from ptf.pipeline.v1 import pipeline_pb2, pipeline_pb2_grpc

from services.health.checks import CheckFailed, ExtractorView, QueueSnapshot
from services.runtime.timestamps import utc_timestamp


class PipelineUnreachable(CheckFailed):
    """The pipeline did not answer `GetReadinessStatus`; the message names the gRPC code."""


class PipelineStatusClient:
    def __init__(self, channel: grpc.aio.Channel, deadline_seconds: float) -> None:
        self._stub = pipeline_pb2_grpc.PipelineServiceStub(channel)
        self._deadline = deadline_seconds

    async def fetch(self) -> pipeline_pb2.ReadinessStatus:
        try:
            return await self._stub.GetReadinessStatus(
                pipeline_pb2.GetReadinessStatusRequest(), timeout=self._deadline
            )
        except grpc.aio.AioRpcError as exc:
            raise PipelineUnreachable(f"pipeline unreachable ({exc.code().name})") from exc


def queue_snapshot(status: pipeline_pb2.ReadinessStatus) -> QueueSnapshot:
    return QueueSnapshot(depth=status.queue.depth, stuck=status.queue.stuck)


def extractor_view(status: pipeline_pb2.ReadinessStatus) -> ExtractorView:
    extractor = status.extractor
    return ExtractorView(
        mode=extractor.mode,
        model=extractor.model,
        key_configured=extractor.key_configured,
        rate_limited=extractor.rate_limited,
    )


def _iso(status: pipeline_pb2.ReadinessStatus, field: str) -> str | None:
    if not status.HasField(field):
        return None
    stamp: Timestamp = getattr(status, field)
    return utc_timestamp(stamp.ToDatetime(tzinfo=UTC))


def last_activity(status: pipeline_pb2.ReadinessStatus) -> dict[str, str | None]:
    """`last_incident_at` and `last_extraction_at` as ISO-8601 UTC, or None."""
    return {
        "last_incident_at": _iso(status, "last_incident_at"),
        "last_extraction_at": _iso(status, "last_extraction_at"),
    }


def pilot_block(status: pipeline_pb2.ReadinessStatus) -> dict[str, object]:
    budget = status.pilot.budget
    return {
        "enabled": status.pilot.enabled,
        "tenant_id": status.pilot.tenant_id,
        "rate_limit": {
            "current": budget.current,
            "limit": budget.limit,
            "remaining": budget.remaining,
            "window_seconds": budget.window_seconds,
        },
    }
