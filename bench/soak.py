"""`python -m bench.soak`: a fixed-rate mixed load against a running stack, for operators.

Submissions (asynchronous `/full-process`), admin reads (incidents, feedback
statistics), gate checks (`Preflight` with the service key) and health probes
(`/health/ready`) are started open-loop at `--rate` operations per second for
`--duration` seconds, whatever the answers, so a slow stack shows as latency
and a backlog instead of a lower rate. While it runs it prints the pipeline's
queue depth (from `GetReadinessStatus`); at the end the errors by kind, the
latency percentiles per operation and whether the queue drained. Exit status 0
only when no operation failed and the queue drained within `--drain-timeout`.

Every address and key has an environment default (`PTF_SOAK_*`), the
development stack's (`make run`) when unset.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc
from ptf.gate.v1 import gate_pb2, gate_pb2_grpc
from ptf.pipeline.v1 import pipeline_pb2, pipeline_pb2_grpc

from bench.gate import SPEC
from bench.pipeline import invoice_document

# One cycle of the mix: four submissions, two of each other kind.
MIX = (
    "submission",
    "gate-check",
    "submission",
    "admin-read",
    "health-probe",
    "submission",
    "gate-check",
    "admin-read",
    "submission",
    "health-probe",
)
PERCENTILES = (0.5, 0.95, 0.99)


@dataclass(frozen=True)
class Target:
    """Where the stack is and the keys the load presents."""

    pipeline_url: str
    pipeline_addr: str
    gate_addr: str
    health_url: str
    tenant: str
    tenant_key: str
    admin_key: str
    service_key: str
    timeout: float


class Failure(Exception):
    """An operation's answer that counts as an error; its text is the error's kind."""


@dataclass
class Totals:
    """What the run saw: latencies by operation, errors by kind, queue depth over time."""

    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    depth: list[tuple[float, int]] = field(default_factory=list)
    drained_after: float | None = None

    def record(self, operation: str, started: float, error: str | None) -> None:
        self.latencies_ms.setdefault(operation, []).append((time.perf_counter() - started) * 1000)
        if error is not None:
            self.errors[f"{operation}: {error}"] += 1

    def summary(self) -> dict[str, object]:
        return {
            "operations": {op: len(values) for op, values in self.latencies_ms.items()},
            "errors": dict(self.errors),
            "latency_ms": {
                op: {f"p{round(q * 100)}": _percentile(values, q) for q in PERCENTILES}
                | {"max": max(values)}
                for op, values in self.latencies_ms.items()
            },
            "queue_depth": [[round(t, 1), depth] for t, depth in self.depth],
            "drained_after_seconds": self.drained_after,
        }


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 2)


class Load:
    """The four operations against one stack, over one HTTP session and two channels."""

    def __init__(
        self, target: Target, session: aiohttp.ClientSession, gate: grpc.aio.Channel
    ) -> None:
        self._target = target
        self._session = session
        self._gate: gate_pb2_grpc.GateServiceAsyncStub = gate_pb2_grpc.GateServiceStub(gate)
        self._preflight = gate_pb2.PreflightRequest(
            spec_yaml=SPEC, facts={"tests_passed": "true", "smoke_passed": "true"}
        )
        self.operations: dict[str, Callable[[], Awaitable[None]]] = {
            "submission": self.submit,
            "admin-read": self.admin_read,
            "gate-check": self.gate_check,
            "health-probe": self.health_probe,
        }
        self._reads = 0

    async def _http(
        self,
        method: str,
        url: str,
        expected: int,
        *,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> None:
        async with self._session.request(method, url, headers=headers, data=data) as response:
            await response.read()
            if response.status != expected:
                raise Failure(f"HTTP {response.status}")

    async def submit(self) -> None:
        target = self._target
        await self._http(
            "POST",
            f"{target.pipeline_url}/full-process?tenant_id={target.tenant}&async=true",
            202,
            data=invoice_document(),
            headers={"X-API-Key": target.tenant_key, "Content-Type": "application/json"},
        )

    async def admin_read(self) -> None:
        """Incidents and feedback statistics of the tenant, in turn."""
        self._reads += 1
        path = "/admin/incidents?limit=20&" if self._reads % 2 else "/admin/feedback-stats?"
        await self._http(
            "GET",
            f"{self._target.pipeline_url}{path}tenant_id={self._target.tenant}",
            200,
            headers={"X-Admin-Key": self._target.admin_key},
        )

    async def gate_check(self) -> None:
        await self._gate.Preflight(
            self._preflight,
            metadata=(("x-api-key", self._target.service_key),),
            timeout=self._target.timeout,
        )

    async def health_probe(self) -> None:
        await self._http("GET", f"{self._target.health_url}/health/ready", 200)


async def _timed(totals: Totals, operation: str, run: Callable[[], Awaitable[None]]) -> None:
    started = time.perf_counter()
    error: str | None = None
    try:
        await run()
    except Failure as exc:
        error = str(exc)
    except grpc.aio.AioRpcError as exc:
        error = exc.code().name
    except TimeoutError:
        error = "timeout"
    except (aiohttp.ClientError, OSError) as exc:
        error = type(exc).__name__
    totals.record(operation, started, error)


async def _queue_depth(pipeline: pipeline_pb2_grpc.PipelineServiceAsyncStub, target: Target) -> int:
    status = await pipeline.GetReadinessStatus(
        pipeline_pb2.GetReadinessStatusRequest(),
        metadata=(("x-api-key", target.service_key),),
        timeout=target.timeout,
    )
    return status.queue.depth


async def _sample_depth(
    pipeline: pipeline_pb2_grpc.PipelineServiceAsyncStub,
    target: Target,
    totals: Totals,
    began: float,
    every: float,
) -> None:
    """Queue depth every `every` seconds, printed as it is read."""
    while True:
        try:
            depth = await _queue_depth(pipeline, target)
        except grpc.aio.AioRpcError as exc:
            totals.errors[f"queue-depth: {exc.code().name}"] += 1
        else:
            elapsed = time.perf_counter() - began
            totals.depth.append((elapsed, depth))
            print(f"  t={elapsed:6.1f}s  queue depth {depth}", flush=True)
        await asyncio.sleep(every)


async def soak(target: Target, duration: float, rate: float, drain_timeout: float) -> Totals:
    """Run the mix at `rate`/s for `duration` s, then wait for the queue to drain."""
    totals = Totals()
    timeout = aiohttp.ClientTimeout(total=target.timeout)
    connector = aiohttp.TCPConnector(limit=256)
    async with (
        aiohttp.ClientSession(timeout=timeout, connector=connector) as session,
        grpc.aio.insecure_channel(target.gate_addr) as gate,
        grpc.aio.insecure_channel(target.pipeline_addr) as pipeline_channel,
    ):
        load = Load(target, session, gate)
        pipeline: pipeline_pb2_grpc.PipelineServiceAsyncStub = (
            pipeline_pb2_grpc.PipelineServiceStub(pipeline_channel)
        )
        began = time.perf_counter()
        sampler = asyncio.create_task(
            _sample_depth(pipeline, target, totals, began, max(1.0, duration / 10))
        )
        tasks: list[asyncio.Task[None]] = []
        for i in range(int(duration * rate)):
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            operation = MIX[i % len(MIX)]
            tasks.append(asyncio.create_task(_timed(totals, operation, load.operations[operation])))
        await asyncio.gather(*tasks)
        sampler.cancel()
        totals.drained_after = await _drain(pipeline, target, totals, drain_timeout)
    return totals


async def _drain(
    pipeline: pipeline_pb2_grpc.PipelineServiceAsyncStub,
    target: Target,
    totals: Totals,
    drain_timeout: float,
) -> float | None:
    """Seconds until the queue was empty after the load, or None if it never was."""
    started = time.perf_counter()
    while time.perf_counter() - started <= drain_timeout:
        try:
            if await _queue_depth(pipeline, target) == 0:
                return round(time.perf_counter() - started, 2)
        except grpc.aio.AioRpcError as exc:
            totals.errors[f"queue-depth: {exc.code().name}"] += 1
        await asyncio.sleep(0.2)
    return None


def render(totals: Totals, duration: float, rate: float) -> str:
    """The report an operator reads: totals, errors by kind, latency percentiles, the drain."""
    latencies = totals.latencies_ms
    lines = [
        f"soak: {sum(map(len, latencies.values()))} operations in {duration:g} s at {rate:g}/s",
        "errors by kind:" if totals.errors else "errors: 0",
        *(f"  {kind:<40} {count}" for kind, count in sorted(totals.errors.items())),
        f"{'operation':<14} {'count':>6} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} {'max ms':>9}",
    ]
    for op in sorted(latencies):
        values = latencies[op]
        shown = " ".join(f"{_percentile(values, q):>9.1f}" for q in PERCENTILES)
        lines.append(f"{op:<14} {len(values):>6} {shown} {max(values):>9.1f}")
    if totals.drained_after is None:
        lines.append("queue: NOT drained within the drain timeout")
    else:
        lines.append(f"queue: drained {totals.drained_after:g} s after the load")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Fixed-rate mixed load against a running ptf-admin stack; exit 1 on any error.",
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=20.0, help="operations per second")
    parser.add_argument("--drain-timeout", type=float, default=60.0, help="seconds for the queue")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-operation timeout (s)")
    parser.add_argument(
        "--pipeline-url", default=env("PTF_SOAK_PIPELINE_URL", "http://127.0.0.1:8083")
    )
    parser.add_argument("--pipeline-addr", default=env("PTF_SOAK_PIPELINE_ADDR", "127.0.0.1:50053"))
    parser.add_argument("--gate-addr", default=env("PTF_SOAK_GATE_ADDR", "127.0.0.1:50051"))
    parser.add_argument("--health-url", default=env("PTF_SOAK_HEALTH_URL", "http://127.0.0.1:8084"))
    parser.add_argument("--tenant", default=env("PTF_SOAK_TENANT", "default"))
    parser.add_argument("--tenant-key", default=env("PTF_SOAK_TENANT_KEY", "dev-tenant-key"))
    parser.add_argument("--admin-key", default=env("PTF_SOAK_ADMIN_KEY", "dev-admin-key"))
    parser.add_argument("--service-key", default=env("PTF_SOAK_SERVICE_KEY", "dev-service-key"))
    parser.add_argument("--summary-json", type=Path, help="also write the totals here as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    target = Target(
        pipeline_url=args.pipeline_url.rstrip("/"),
        pipeline_addr=args.pipeline_addr,
        gate_addr=args.gate_addr,
        health_url=args.health_url.rstrip("/"),
        tenant=args.tenant,
        tenant_key=args.tenant_key,
        admin_key=args.admin_key,
        service_key=args.service_key,
        timeout=args.timeout,
    )
    print(f"soak: {args.rate:g} operations/s for {args.duration:g} s", flush=True)
    totals = asyncio.run(soak(target, args.duration, args.rate, args.drain_timeout))
    print(render(totals, args.duration, args.rate), flush=True)
    if args.summary_json is not None:
        args.summary_json.write_text(json.dumps(totals.summary(), indent=2))
    return 0 if not totals.errors and totals.drained_after is not None else 1


if __name__ == "__main__":
    sys.exit(main())
