"""The readiness gauges stay fresh with nobody polling: the health service's periodic refresh.

The alert on readiness staying 503 reads `ptf_health_ready`; if only probes set it,
a stack nobody probes would keep showing its last (possibly healthy) evaluation.
The pipeline is the real service; gate and telemetry are a loopback
grpc.health.v1 server whose status the test controls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from services.health.service import DEFINITION
from services.pipeline.service import make_definition
from services.runtime.metric_registry import HEALTH_CHECK_STATUS, HEALTH_READY
from tests.conftest import StartService
from tests.pipeline.service_support import NO_TELEMETRY, fast_settings
from tests.support.polling import eventually
from tests.support.services import ServiceHandle

PIPELINE = make_definition(fast_settings(inprocess_workers=0, run_relay=False))
REFRESH = {"PTF_THRESHOLD__HEALTH__REFRESH_SECONDS": "0.05"}


@pytest.fixture
async def peer() -> AsyncIterator[tuple[health.aio.HealthServicer, str]]:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, f"127.0.0.1:{port}"
    await server.stop(0)


async def _gauges(svc: ServiceHandle) -> tuple[float | None, float | None]:
    """(`ptf_health_ready`, `ptf_health_check_status{check="services"}`) as scraped."""
    async with svc.http.get("/metrics") as response:
        text = await response.text()
    ready = services = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == HEALTH_READY.name:
                ready = sample.value
            if sample.name == HEALTH_CHECK_STATUS.name and sample.labels["check"] == "services":
                services = sample.value
    return ready, services


async def test_unpolled_readiness_gauges_follow_a_peer_going_down(
    start_service: StartService, peer: tuple[health.aio.HealthServicer, str]
) -> None:
    """Nobody asks /health/ready or Ready: the refresh alone moves the gauges from ready
    (1, services ok) to not ready (0, services error) when a peer stops serving."""
    servicer, address = peer
    async with start_service(PIPELINE, PTF_TELEMETRY_ADDR=NO_TELEMETRY) as pipe:
        addresses = {
            "PTF_GATE_ADDR": address,
            "PTF_TELEMETRY_ADDR": address,
            "PTF_PIPELINE_ADDR": pipe.running.grpc_target,
        }
        async with start_service(DEFINITION, **addresses, **REFRESH) as svc:

            async def gauges_are(expected: tuple[float, float]) -> bool:
                return await _gauges(svc) == expected

            await eventually(lambda: gauges_are((1, 0)), within=5)
            await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
            await eventually(lambda: gauges_are((0, 2)), within=5)
