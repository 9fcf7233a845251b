"""gRPC adapter: `ptf.telemetry.v1.TelemetryService` on top of `Telemetry`."""

from __future__ import annotations

import json
from typing import Any

import grpc
from ptf.common.v1 import common_pb2
from ptf.telemetry.v1 import telemetry_pb2, telemetry_pb2_grpc

from services.runtime.keys import key_from_metadata, scoped_tenant
from services.telemetry import convert
from services.telemetry.app import Telemetry
from services.telemetry.auth import Operation, TelemetryAccess
from services.telemetry.domain.events import parse_tenant_filter
from services.telemetry.domain.window import TimeWindow, resolve_window
from services.telemetry.errors import domain_errors

Context = grpc.aio.ServicerContext[Any, Any]


def _key(context: Context) -> str | None:
    return key_from_metadata(context.invocation_metadata())


class TelemetryServicer(telemetry_pb2_grpc.TelemetryServiceServicer):
    """Each method: parse and validate, call `Telemetry`, map the result."""

    def __init__(self, telemetry: Telemetry, access: TelemetryAccess) -> None:
        self._telemetry = telemetry
        self._access = access

    def _window(self, period: common_pb2.TimeWindow, present: bool) -> TimeWindow:
        with domain_errors():
            since, until = convert.window_bounds(period, present)
            return resolve_window(since, until, now=self._telemetry.now())

    async def RecordEvents(
        self, request: telemetry_pb2.RecordEventsRequest, context: Context
    ) -> telemetry_pb2.RecordEventsResponse:
        await self._access.authorize(Operation.RECORD_EVENTS, _key(context))
        raws = [convert.raw_event(event) for event in request.events]
        with domain_errors():
            outcome = await self._telemetry.record_events(raws)
        return telemetry_pb2.RecordEventsResponse(
            accepted=outcome.accepted,
            duplicates=outcome.duplicates,
            rejected=[
                telemetry_pb2.RejectedEvent(
                    index=index,
                    error=common_pb2.ErrorDetail(
                        error_code=error.error_code, message=error.message, field=error.field or ""
                    ),
                )
                for index, error in outcome.rejected
            ],
        )

    async def RecordPreflight(
        self, request: telemetry_pb2.RecordPreflightRequest, context: Context
    ) -> telemetry_pb2.RecordPreflightResponse:
        await self._access.authorize(Operation.RECORD_PREFLIGHTS, _key(context))
        with domain_errors():
            metric = convert.preflight_metric(request, self._telemetry.now())
        generation = await self._telemetry.record_preflights([metric])
        return telemetry_pb2.RecordPreflightResponse(store_generation=generation)

    async def RecordPreflights(
        self, request: telemetry_pb2.RecordPreflightsRequest, context: Context
    ) -> telemetry_pb2.RecordPreflightResponse:
        await self._access.authorize(Operation.RECORD_PREFLIGHTS, _key(context))
        with domain_errors():
            metrics = convert.preflight_metrics(request, self._telemetry.now())
        generation = await self._telemetry.record_preflights(metrics)
        return telemetry_pb2.RecordPreflightResponse(store_generation=generation)

    async def GetRunSummary(
        self, request: telemetry_pb2.GetRunSummaryRequest, context: Context
    ) -> telemetry_pb2.RunSummary:
        caller = await self._access.authorize(Operation.RUN_SUMMARY, _key(context))
        tenant = scoped_tenant(caller, _tenant_filter(request.tenant_id))
        window = self._window(request.period, request.HasField("period"))
        summary = await self._telemetry.run_summary(window, tenant)
        return convert.run_summary(summary)

    async def GetSystemHealth(
        self, request: telemetry_pb2.GetSystemHealthRequest, context: Context
    ) -> telemetry_pb2.SystemHealthReport:
        caller = await self._access.authorize(Operation.SYSTEM_HEALTH, _key(context))
        tenant = scoped_tenant(caller, _tenant_filter(request.tenant_id))
        window = self._window(request.period, request.HasField("period"))
        report = await self._telemetry.system_health(window, tenant)
        return telemetry_pb2.SystemHealthReport(
            report_json=json.dumps(report.to_json(), sort_keys=True)
        )


def _tenant_filter(tenant_id: str) -> str | None:
    with domain_errors():
        return parse_tenant_filter(tenant_id)
