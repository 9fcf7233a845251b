"""Hypothesis-generated requests to every RPC of each running service: never INTERNAL/UNKNOWN.

Each message is built from its DESCRIPTOR (tests/fuzz/protobuf_strategies.py):
unset fields, full-range integers, NaN and infinities, undefined enum values,
out-of-range Timestamps, arbitrary text and bytes, nested messages; the gate's
and the pipeline's LiveService too. Sent with no key, the admin key and the
service key. The figure each test checks: up to 20 examples per RPC
(Hypothesis stops early when a message has fewer distinct values), zero calls
answered INTERNAL or UNKNOWN, no traceback logged.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from ptf.gate.v1 import gate_pb2
from ptf.health.v1 import health_pb2
from ptf.live.v1 import live_pb2
from ptf.pipeline.v1 import pipeline_pb2
from ptf.telemetry.v1 import telemetry_pb2

from tests.fuzz.grpc_fuzzer import fuzz_service
from tests.fuzz.logs import tracebacks
from tests.support.services import ServiceHandle

log = logging.getLogger(__name__)

EXAMPLES_PER_METHOD = 20
LIVE = live_pb2.DESCRIPTOR.services_by_name["LiveService"]
SERVICES = {
    "gate": (gate_pb2.DESCRIPTOR.services_by_name["GateService"], LIVE),
    "telemetry": (telemetry_pb2.DESCRIPTOR.services_by_name["TelemetryService"],),
    "pipeline": (pipeline_pb2.DESCRIPTOR.services_by_name["PipelineService"], LIVE),
    "health": (health_pb2.DESCRIPTOR.services_by_name["HealthService"],),
}


async def _fuzz(
    target: tuple[str, ServiceHandle], caplog: pytest.LogCaptureFixture, *, malformed: bool
) -> None:
    name, svc = target
    caplog.set_level(logging.WARNING, logger="services")
    loop = asyncio.get_running_loop()
    for service in SERVICES[name]:
        report = await asyncio.to_thread(
            fuzz_service, svc, service, loop, EXAMPLES_PER_METHOD, malformed=malformed
        )
        log.info(
            "%s %s: %d calls over %d RPCs, codes %s",
            name,
            service.name,
            report.examples,
            len(service.methods),
            dict(report.codes),
        )
        assert report.examples >= len(service.methods)
        assert report.faults == [], (
            f"{len(report.faults)} server faults in {report.examples} calls;"
            f" codes {dict(report.codes)}:\n" + "\n".join(report.faults)
        )
    assert tracebacks(caplog.records) == []


async def test_generated_requests_get_client_errors_not_server_faults(
    service: tuple[str, ServiceHandle], caplog: pytest.LogCaptureFixture
) -> None:
    await _fuzz(service, caplog, malformed=False)


async def test_malformed_protobuf_bytes_get_client_errors_not_server_faults(
    service: tuple[str, ServiceHandle], caplog: pytest.LogCaptureFixture
) -> None:
    await _fuzz(service, caplog, malformed=True)
