"""Wiring of the telemetry service: servicers and HTTP routes built from the shared runtime."""

from __future__ import annotations

from pathlib import Path

import grpc
from ptf.telemetry.v1 import telemetry_pb2, telemetry_pb2_grpc

from services.runtime.db import MigrationSet
from services.runtime.server import Runtime, ServiceDefinition, ServiceParts

SERVICE_NAME = telemetry_pb2.DESCRIPTOR.services_by_name["TelemetryService"].full_name


async def build(runtime: Runtime) -> ServiceParts:
    """Every RPC answers UNIMPLEMENTED until its issue builds it."""
    del runtime

    def register(server: grpc.aio.Server) -> None:
        servicer = telemetry_pb2_grpc.TelemetryServiceServicer()  # type: ignore[abstract]
        telemetry_pb2_grpc.add_TelemetryServiceServicer_to_server(servicer, server)

    return ServiceParts(grpc_service_names=[SERVICE_NAME], register_grpc=register)


DEFINITION = ServiceDefinition(
    name="telemetry",
    build=build,
    migrations=(MigrationSet("telemetry", Path(__file__).parent / "migrations"),),
)
