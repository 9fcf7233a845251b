"""Slow and idle clients are bounded by the config's HTTP timeouts, not waited on forever.

Probe: headers or a body sent at one byte a second were waited on
indefinitely and idle sockets were never closed. With the bounds of
`config.http` (short here through their env variables) the server closes a
connection without a complete request after the idle timeout and answers a
body still arriving after the body timeout with 408. The waits below are
bounded generously; nothing asserts how fast the server is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from services.pipeline.service import make_definition
from services.telemetry.service import DEFINITION as TELEMETRY
from tests.conftest import StartService
from tests.pipeline.service_support import NO_TELEMETRY, fast_settings
from tests.support.services import ServiceHandle

SHORT = {"PTF_HTTP_IDLE_TIMEOUT_SECONDS": "1", "PTF_HTTP_BODY_TIMEOUT_SECONDS": "1"}
WITHIN_SECONDS = 20.0


@pytest.fixture
async def strict_telemetry(
    start_service: StartService, tmp_path: object
) -> AsyncIterator[ServiceHandle]:
    async with start_service(TELEMETRY, PTF_METRICS_DIR=f"{tmp_path}/metrics", **SHORT) as svc:
        yield svc


@pytest.fixture
async def strict_pipeline(start_service: StartService) -> AsyncIterator[ServiceHandle]:
    """The pipeline: it has routes that read a body (resolve, here)."""
    async with start_service(
        make_definition(fast_settings()), PTF_TELEMETRY_ADDR=NO_TELEMETRY, **SHORT
    ) as svc:
        yield svc


@contextlib.asynccontextmanager
async def _connection(
    svc: ServiceHandle,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", svc.running.http_port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def _trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
    """One byte at a time, well below any human typing speed, until cancelled or done."""
    for index in range(len(data)):
        writer.write(data[index : index + 1])
        await writer.drain()
        await asyncio.sleep(0.5)


async def test_idle_socket_is_closed(strict_telemetry: ServiceHandle) -> None:
    async with _connection(strict_telemetry) as (reader, _):
        async with asyncio.timeout(WITHIN_SECONDS):
            assert await reader.read() == b""


async def test_headers_sent_one_byte_at_a_time_are_cut_off(
    strict_telemetry: ServiceHandle,
) -> None:
    request = b"GET /run-summary HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Pad: " + b"a" * 200
    async with _connection(strict_telemetry) as (reader, writer):
        trickling = asyncio.create_task(_trickle(writer, request))
        try:
            async with asyncio.timeout(WITHIN_SECONDS):
                assert await reader.read() == b""
        finally:
            trickling.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await trickling


async def test_body_sent_one_byte_at_a_time_is_408(strict_pipeline: ServiceHandle) -> None:
    body = b'{"resolution_reason": "' + b"x" * 200 + b'"}'
    head = (
        b"POST /admin/incidents/00000000-0000-4000-8000-000000000001/resolve HTTP/1.1\r\n"
        b"Host: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n"
        b"X-Admin-Key: dev-admin-key\r\n" + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    async with _connection(strict_pipeline) as (reader, writer):
        writer.write(head)
        trickling = asyncio.create_task(_trickle(writer, body))
        try:
            async with asyncio.timeout(WITHIN_SECONDS):
                status_line = await reader.readline()
                response = await reader.read()
        finally:
            trickling.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await trickling
    payload = json.loads(response.partition(b"\r\n\r\n")[2])
    assert (status_line.split()[1], payload["error_code"]) == (b"408", "REQUEST_TIMEOUT")
