"""Every service: grpc.health.v1 SERVING, /health 200, reflection, /metrics with ptf_build_info."""

from __future__ import annotations

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2
from prometheus_client.parser import text_string_to_metric_families

from services.gate.service import DEFINITION as GATE
from services.health.service import DEFINITION as HEALTH
from services.pipeline.service import DEFINITION as PIPELINE
from services.runtime.healthcheck import health_status
from services.runtime.server import ServiceDefinition
from services.telemetry.service import DEFINITION as TELEMETRY
from tests.conftest import StartService

SERVICES = {
    "gate": (GATE, "ptf.gate.v1.GateService"),
    "telemetry": (TELEMETRY, "ptf.telemetry.v1.TelemetryService"),
    "pipeline": (PIPELINE, "ptf.pipeline.v1.PipelineService"),
    "health": (HEALTH, "ptf.health.v1.HealthService"),
}


@pytest.fixture(params=sorted(SERVICES))
def service(request: pytest.FixtureRequest) -> tuple[ServiceDefinition, str]:
    return SERVICES[request.param]


async def _reflected_services(channel: grpc.aio.Channel) -> set[str]:
    stream = channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    call = stream(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names: set[str] = set()
    async for response in call:
        names.update(s.name for s in response.list_services_response.service)
    return names


async def test_service_reports_serving_over_grpc_health(
    start_service: StartService, service: tuple[ServiceDefinition, str]
) -> None:
    definition, name = service
    async with start_service(definition) as svc:
        assert await health_status(svc.channel) == 1
        assert await health_status(svc.channel, name) == 1


async def test_service_answers_alive_on_http_health(
    start_service: StartService, service: tuple[ServiceDefinition, str]
) -> None:
    definition, _ = service
    async with start_service(definition) as svc, svc.http.get("/health") as response:
        assert response.status == 200
        assert (await response.json())["status"] == "alive"


async def test_service_lists_its_services_via_reflection(
    start_service: StartService, service: tuple[ServiceDefinition, str]
) -> None:
    definition, name = service
    async with start_service(definition) as svc:
        names = await _reflected_services(svc.channel)
    assert {name, "grpc.health.v1.Health"} <= names


async def test_service_exposes_build_info_on_metrics(
    start_service: StartService, service: tuple[ServiceDefinition, str]
) -> None:
    definition, _ = service
    async with start_service(definition) as svc:
        async with svc.http.get("/metrics") as response:
            assert response.status == 200
            text = await response.text()
        config = svc.config
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (sample,) = families["ptf_build_info"].samples
    assert sample.value == 1
    assert sample.labels["build_id"] == config.build_id == "test"
    assert sample.labels["config_hash"] == config.config_hash


async def test_unknown_http_path_gets_json_404(start_service: StartService) -> None:
    async with start_service(GATE) as svc, svc.http.get("/nope") as response:
        assert response.status == 404
        assert (await response.json())["error_code"] == "NOT_FOUND"
