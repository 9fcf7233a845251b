"""Wiring of the telemetry service: servicers, HTTP routes and background tasks."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import grpc
from ptf.telemetry.v1 import telemetry_pb2, telemetry_pb2_grpc

from services.runtime.db import MigrationSet
from services.runtime.keys import KEY_MIGRATIONS, Access, seed_dev_keys
from services.runtime.server import Runtime, ServiceDefinition, ServiceParts
from services.telemetry.app import Telemetry
from services.telemetry.auth import TelemetryAccess
from services.telemetry.grpc_api import TelemetryServicer
from services.telemetry.http_api import TelemetryRoutes
from services.telemetry.openapi import PATHS as OPENAPI_PATHS
from services.telemetry.repository import EventRepository
from services.telemetry.scheduler import DEFAULT_PERIOD, run_periodic_summaries
from services.telemetry.stores import TelemetryMetricStores

SERVICE_NAME = telemetry_pb2.DESCRIPTOR.services_by_name["TelemetryService"].full_name
MIGRATIONS = (KEY_MIGRATIONS, MigrationSet("telemetry", Path(__file__).parent / "migrations"))
# A full batch (1000 events of typical size) fits; larger requests are refused by gRPC
# with RESOURCE_EXHAUSTED and by aiohttp with 413 before any handler runs.
MAX_REQUEST_BYTES = 4 * 1024 * 1024


def create_definition(*, summary_period: timedelta = DEFAULT_PERIOD) -> ServiceDefinition:
    """The telemetry service, logging a run summary at the end of every `summary_period`."""

    async def build(runtime: Runtime) -> ServiceParts:
        stores = await TelemetryMetricStores.load(Path(runtime.config.metrics_dir))
        stores.register_metrics(runtime.metrics.meter)
        telemetry = Telemetry(
            EventRepository(runtime.pool), stores, runtime.config, meter=runtime.metrics.meter
        )
        access = Access.for_service(runtime.pool, runtime.config)
        await seed_dev_keys(access.store, runtime.config)
        guard = TelemetryAccess(access)
        servicer = TelemetryServicer(telemetry, guard)

        def register(server: grpc.aio.Server) -> None:
            telemetry_pb2_grpc.add_TelemetryServiceServicer_to_server(servicer, server)

        runtime.spawn("run-summary", lambda: run_periodic_summaries(telemetry, summary_period))
        return ServiceParts(
            grpc_service_names=[SERVICE_NAME],
            register_grpc=register,
            routes=TelemetryRoutes(telemetry, guard).routes(),
            openapi=OPENAPI_PATHS,
            max_body_bytes=MAX_REQUEST_BYTES,
        )

    return ServiceDefinition(name="telemetry", build=build, migrations=MIGRATIONS)


DEFINITION = create_definition()
