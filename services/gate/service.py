"""Wiring of the gate service: servicers and HTTP routes built from the shared runtime."""

from __future__ import annotations

from pathlib import Path

import grpc
from ptf.gate.v1 import gate_pb2, gate_pb2_grpc

from services.runtime.db import MigrationSet
from services.runtime.server import Runtime, ServiceDefinition, ServiceParts

SERVICE_NAME = gate_pb2.DESCRIPTOR.services_by_name["GateService"].full_name


async def build(runtime: Runtime) -> ServiceParts:
    """Every RPC answers UNIMPLEMENTED until its issue builds it."""
    del runtime

    def register(server: grpc.aio.Server) -> None:
        servicer = gate_pb2_grpc.GateServiceServicer()  # type: ignore[abstract]
        gate_pb2_grpc.add_GateServiceServicer_to_server(servicer, server)

    return ServiceParts(grpc_service_names=[SERVICE_NAME], register_grpc=register)


DEFINITION = ServiceDefinition(
    name="gate",
    build=build,
    migrations=(MigrationSet("gate", Path(__file__).parent / "migrations"),),
)
