"""Gate `Preflight` with cached signals vs a bare grpc.aio echo server (SPEC §12).

Same Python client, same concurrency, same request count and the same call
metadata (the service key the gate checks; the echo ignores it), at concurrency 1,
16 and 64; gate and echo runs alternate so machine noise hits both alike.
Each figure is the median of REPETITIONS runs, with the spread (max - min).
The targets (throughput ≥ 0.8× the echo server's, p99 ≤ 1.5× its p99) apply
at concurrency 16; 1 and 64 are printed against the same targets.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
from ptf.gate.v1 import gate_pb2, gate_pb2_grpc

from bench.echo_server import METHOD
from bench.load import LoadResult, Operation, run_closed_loop
from bench.report import BenchRow
from services.runtime.devservers import free_port

CONCURRENCIES = (1, 16, 64)
REPETITIONS = 3
REQUESTS = 3000
WARMUP = 200
SPEC = """
release: bench-release
build: git:bench
tenant_id: pilot
window: 1h
facts: [tests_passed, smoke_passed]
"""
SERVICE_KEY = (("x-api-key", "dev-service-key"),)


async def _measure(call: Operation, concurrency: int) -> LoadResult:
    """Warm up, then measure REQUESTS calls at `concurrency`."""
    await run_closed_loop([call] * WARMUP, concurrency)
    return await run_closed_loop([call] * REQUESTS, concurrency)


@asynccontextmanager
async def _echo_server() -> AsyncIterator[str]:
    """A bare grpc.aio echo server in its own process; yields its target."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.echo_server", str(port), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        await process.stdout.readline()
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        await process.wait()


def _median_and_spread(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), max(values) - min(values)


def _rows(concurrency: int, gate: list[LoadResult], echo: list[LoadResult]) -> list[BenchRow]:
    rate, rate_spread = _median_and_spread([r.ops_per_second for r in gate])
    base, _ = _median_and_spread([r.ops_per_second for r in echo])
    p99, p99_spread = _median_and_spread([r.percentile(0.99) for r in gate])
    base_p99, _ = _median_and_spread([r.percentile(0.99) for r in echo])
    note = "" if concurrency == 16 else " (report only)"
    return [
        BenchRow(
            name=f"gate Preflight vs echo, concurrency {concurrency}",
            figure=rate,
            unit="/s",
            baseline=base,
            target="≥ 0.8×" + note,
            met=rate >= 0.8 * base,
            spread=rate_spread,
        ),
        BenchRow(
            name=f"gate Preflight p99 vs echo p99, concurrency {concurrency}",
            figure=p99,
            unit="ms",
            baseline=base_p99,
            target="≤ 1.5×" + note,
            met=p99 <= 1.5 * base_p99,
            spread=p99_spread,
        ),
    ]


async def bench_gate(gate_target: str) -> list[BenchRow]:
    request = gate_pb2.PreflightRequest(
        spec_yaml=SPEC, facts={"tests_passed": "true", "smoke_passed": "true"}
    )
    payload = request.SerializeToString()
    rows: list[BenchRow] = []
    async with (
        _echo_server() as echo_target,
        grpc.aio.insecure_channel(gate_target) as gate_channel,
        grpc.aio.insecure_channel(echo_target) as echo_channel,
    ):
        stub = gate_pb2_grpc.GateServiceStub(gate_channel)
        echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = echo_channel.unary_unary(METHOD)

        # A release pipeline's call: the development stack's service key, sent as metadata.
        preflight: Operation = lambda: stub.Preflight(request, metadata=SERVICE_KEY)  # noqa: E731
        for concurrency in CONCURRENCIES:
            gate_runs: list[LoadResult] = []
            echo_runs: list[LoadResult] = []
            for _ in range(REPETITIONS):
                gate_runs.append(await _measure(preflight, concurrency))
                echo_runs.append(
                    await _measure(lambda: echo(payload, metadata=SERVICE_KEY), concurrency)
                )
            rows += _rows(concurrency, gate_runs, echo_runs)
    return rows
