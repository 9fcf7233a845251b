"""The health tests' stack: a real pipeline, stand-in peers, health pointed at both.

The pipeline is the real pipeline service, asked over gRPC; gate and telemetry
are one real gRPC server on loopback whose grpc.health.v1 status a test
controls; Postgres and Redis are the real test stores.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import NamedTuple

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.health.service import DEFINITION
from services.pipeline.service import make_definition
from tests.conftest import StartService
from tests.pipeline.service_support import NO_TELEMETRY, fast_settings
from tests.support.services import ServiceHandle

FAST = {"PTF_THRESHOLD__HEALTH__CACHE_SECONDS": "0.001"}


@dataclass
class Peers:
    """Stand-ins for gate, telemetry and pipeline: real servers with controllable health."""

    servicer: health.aio.HealthServicer
    address: str

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self.servicer.set("", status)


@asynccontextmanager
async def peer_servers() -> AsyncIterator[Peers]:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield Peers(servicer, f"127.0.0.1:{port}")
    await server.stop(0)


class System(NamedTuple):
    health: ServiceHandle
    pipeline: ServiceHandle


StartHealth = Callable[..., AbstractAsyncContextManager[System]]
# No workers or relay: jobs a test inserts stay where the test put them.
PIPELINE = make_definition(fast_settings(inprocess_workers=0, run_relay=False))


def health_starter(start_service: StartService, peers: Peers) -> StartHealth:
    """A real pipeline (configured by `pipeline`) and health (by `env`) pointed at it."""

    @asynccontextmanager
    async def start(pipeline: dict[str, str] | None = None, **env: str) -> AsyncIterator[System]:
        pipeline_env = {"PTF_TELEMETRY_ADDR": NO_TELEMETRY, **(pipeline or {})}
        async with start_service(PIPELINE, **pipeline_env) as pipe:
            addresses = {
                "PTF_GATE_ADDR": peers.address,
                "PTF_TELEMETRY_ADDR": peers.address,
                "PTF_PIPELINE_ADDR": pipe.running.grpc_target,
            }
            async with start_service(DEFINITION, **{**addresses, **FAST, **env}) as svc:
                yield System(svc, pipe)

    return start
