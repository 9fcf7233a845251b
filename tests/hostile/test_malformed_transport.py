"""Malformed bytes on the wire are the client's error: a 4xx / INVALID_ARGUMENT and one log line.

Probes: a multipart part whose header line has no colon (aiohttp's
`InvalidHeader` escaped the intake and answered 500); a gRPC payload that is
not a protobuf message (UNKNOWN naming `DecodeError`, plus an ERROR traceback
per call); an HTTP request the server cannot parse (an ERROR traceback per
request: anyone could flood the logs).
"""

from __future__ import annotations

import logging

import asyncpg
import grpc
import pytest

from tests.hostile.raw_http import raw_request
from tests.pipeline.service_support import new_tenant
from tests.support.services import ServiceHandle

BOUNDARY = "hostile"
# Field 1 (length-delimited) claiming five bytes where two follow: a truncated message.
TRUNCATED_PROTOBUF = b"\x0a\x05ab"


async def test_multipart_part_with_malformed_header_is_400(
    pipeline: ServiceHandle, pg: asyncpg.Pool
) -> None:
    tenant = await new_tenant(pg)
    body = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition form-data; name="file"\r\n'
        "\r\n"
        "{}\r\n"
        f"--{BOUNDARY}--\r\n"
    ).encode()
    async with pipeline.http.post(
        f"/full-process?tenant_id={tenant.tenant_id}",
        data=body,
        headers={**tenant.headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    ) as response:
        assert (response.status, (await response.json())["error_code"]) == (
            400,
            "INVALID_MULTIPART",
        )


def _problems(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_malformed_protobuf_is_invalid_argument_with_one_warning(
    telemetry: ServiceHandle, caplog: pytest.LogCaptureFixture
) -> None:
    call = telemetry.service_channel.unary_unary("/ptf.telemetry.v1.TelemetryService/GetRunSummary")
    caplog.set_level(logging.INFO)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(TRUNCATED_PROTOBUF)
    assert (caught.value.code(), [(r.levelno, r.exc_info) for r in _problems(caplog)]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        [(logging.WARNING, None)],
    )


async def test_malformed_protobuf_to_the_grpc_health_check_is_invalid_argument(
    telemetry: ServiceHandle,
) -> None:
    """grpc.health.v1 (kubelet's gRPC probe) goes through the same error mapping."""
    call = telemetry.channel.unary_unary("/grpc.health.v1.Health/Check")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(TRUNCATED_PROTOBUF)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_unparsable_http_request_is_400_with_one_warning(
    telemetry: ServiceHandle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    response = await raw_request(
        telemetry.running.http_port,
        b"GET /run-summary HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon here\r\n\r\n",
    )
    assert (response.status, [(r.levelno, r.exc_info) for r in _problems(caplog)]) == (
        400,
        [(logging.WARNING, None)],
    )
