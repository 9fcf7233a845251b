"""Gate `Preflight` with cached signals vs a bare grpc.aio echo server (SPEC §12).

Same Python client, same concurrency, same request count: throughput must be
≥ 0.8× the echo server's and p99 ≤ 1.5× its p99.
"""

from __future__ import annotations

import asyncio
import sys

import grpc
from ptf.gate.v1 import gate_pb2, gate_pb2_grpc

from bench.echo_server import METHOD
from bench.load import LoadResult, Operation, run_closed_loop
from bench.report import BenchRow
from services.runtime.devservers import free_port

CONCURRENCY = 16
REQUESTS = 4000
SPEC = """
release: bench-release
build: git:bench
tenant_id: pilot
window: 1h
facts: [tests_passed, smoke_passed]
"""


async def _measure(call: Operation) -> LoadResult:
    """Warm up, then measure REQUESTS calls at CONCURRENCY."""
    await run_closed_loop([call] * 200, CONCURRENCY)
    return await run_closed_loop([call] * REQUESTS, CONCURRENCY)


async def _echo_baseline(payload: bytes) -> LoadResult:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.echo_server", str(port), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        await process.stdout.readline()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            echo = channel.unary_unary(METHOD)
            return await _measure(lambda: echo(payload))
    finally:
        process.terminate()
        await process.wait()


SERVICE_KEY = (("x-api-key", "dev-service-key"),)


async def bench_gate(gate_target: str) -> list[BenchRow]:
    request = gate_pb2.PreflightRequest(
        spec_yaml=SPEC, facts={"tests_passed": "true", "smoke_passed": "true"}
    )
    async with grpc.aio.insecure_channel(gate_target) as channel:
        stub = gate_pb2_grpc.GateServiceStub(channel)
        # A release pipeline's call: the development stack's service key, sent as metadata.
        gate = await _measure(lambda: stub.Preflight(request, metadata=SERVICE_KEY))
    echo = await _echo_baseline(request.SerializeToString())
    rate, base = gate.ops_per_second, echo.ops_per_second
    p99, base_p99 = gate.percentile(0.99), echo.percentile(0.99)
    return [
        BenchRow(
            "gate Preflight (cached signals) vs echo",
            rate,
            "/s",
            base,
            "≥ 0.8×",
            rate >= 0.8 * base,
        ),
        BenchRow(
            "gate Preflight p99 vs echo p99", p99, "ms", base_p99, "≤ 1.5×", p99 <= 1.5 * base_p99
        ),
    ]
