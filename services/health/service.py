"""Wiring of the health service: servicers and HTTP routes built from the shared runtime."""

from __future__ import annotations

from pathlib import Path

import grpc
from ptf.health.v1 import health_pb2, health_pb2_grpc

from services.runtime.db import MigrationSet
from services.runtime.server import Runtime, ServiceDefinition, ServiceParts

SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["HealthService"].full_name


async def build(runtime: Runtime) -> ServiceParts:
    """Every RPC answers UNIMPLEMENTED until its issue builds it."""
    del runtime

    def register(server: grpc.aio.Server) -> None:
        servicer = health_pb2_grpc.HealthServiceServicer()  # type: ignore[abstract]
        health_pb2_grpc.add_HealthServiceServicer_to_server(servicer, server)

    return ServiceParts(grpc_service_names=[SERVICE_NAME], register_grpc=register)


DEFINITION = ServiceDefinition(
    name="health",
    build=build,
    migrations=(MigrationSet("health", Path(__file__).parent / "migrations"),),
)
