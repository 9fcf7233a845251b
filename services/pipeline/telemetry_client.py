"""The pipeline's gRPC client of the telemetry service: event delivery and the health report."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from ptf.common.v1 import common_pb2
from ptf.telemetry.v1 import telemetry_pb2, telemetry_pb2_grpc


class TelemetryClient:
    """Thin typed wrapper over `TelemetryService` on a shared channel."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = telemetry_pb2_grpc.TelemetryServiceStub(channel)

    async def record_events(
        self, events: Sequence[telemetry_pb2.Event], deadline_seconds: float
    ) -> telemetry_pb2.RecordEventsResponse:
        return await self._stub.RecordEvents(
            telemetry_pb2.RecordEventsRequest(events=list(events)), timeout=deadline_seconds
        )

    async def system_health(
        self,
        tenant_id: str | None,
        deadline_seconds: float,
        window: timedelta = timedelta(days=1),
    ) -> dict[str, Any]:
        """The telemetry system health report (docs/SPEC.md §4.3) for the last `window`.

        Asked with the pipeline's service key (its channel presents it): the pipeline
        has already authorized its own caller for this tenant filter.
        """
        start = Timestamp()
        start.FromDatetime(datetime.now(UTC) - window)
        request = telemetry_pb2.GetSystemHealthRequest(
            period=common_pb2.TimeWindow(start=start), tenant_id=tenant_id or ""
        )
        reply = await self._stub.GetSystemHealth(request, timeout=deadline_seconds)
        report = json.loads(reply.report_json) if reply.report_json else {}
        return report if isinstance(report, dict) else {"report": report}
