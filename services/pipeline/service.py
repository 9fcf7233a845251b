"""Wiring of the pipeline service: servicers and HTTP routes built from the shared runtime."""

from __future__ import annotations

from pathlib import Path

import grpc
from ptf.pipeline.v1 import pipeline_pb2, pipeline_pb2_grpc

from services.runtime.db import MigrationSet
from services.runtime.server import Runtime, ServiceDefinition, ServiceParts

SERVICE_NAME = pipeline_pb2.DESCRIPTOR.services_by_name["PipelineService"].full_name


async def build(runtime: Runtime) -> ServiceParts:
    """Every RPC answers UNIMPLEMENTED until its issue builds it."""
    del runtime

    def register(server: grpc.aio.Server) -> None:
        servicer = pipeline_pb2_grpc.PipelineServiceServicer()  # type: ignore[abstract]
        pipeline_pb2_grpc.add_PipelineServiceServicer_to_server(servicer, server)

    return ServiceParts(grpc_service_names=[SERVICE_NAME], register_grpc=register)


DEFINITION = ServiceDefinition(
    name="pipeline",
    build=build,
    migrations=(MigrationSet("pipeline", Path(__file__).parent / "migrations"),),
)
