"""Run every benchmark against embedded stores, print one table and write bench/results.json.

The stack runs as `make run` lays it out: the pipeline API without worker loops
and separate `ptf-pipeline worker` processes (one; a second stack with two for
the scaling row).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from bench.backtest import bench_backtest
from bench.cpu import CpuMeter
from bench.gate import bench_gate
from bench.health import bench_health_ready
from bench.pipeline import (
    REPETITIONS,
    bench_sync_latency,
    measure_throughput,
    throughput_rows,
    warm_up,
)
from bench.processes import bench_idle_processes, running_stack
from bench.raw_baseline import raw_http_rate, raw_rate
from bench.report import RESULTS, render, write_results
from bench.telemetry import bench_run_summary
from bench.tokens import bench_tokens
from services.runtime.devservers import EmbeddedPostgres, EmbeddedRedis
from services.runtime.stack import ChildService


def _pipeline_ports(stack: dict[str, ChildService]) -> list[int]:
    """HTTP ports of the pipeline API (first) and of every worker process."""
    return [
        child.http_port
        for name, child in stack.items()
        if name == "pipeline" or name.startswith("pipeline-worker")
    ]


def _cpu_meter(
    stack: dict[str, ChildService], postgres: EmbeddedPostgres, redis: EmbeddedRedis
) -> CpuMeter:
    """Every service process of the stack, PostgreSQL (with its backends) and Redis."""
    assert postgres.process is not None
    assert redis.process is not None
    pids = {name: child.process.pid for name, child in stack.items()}
    pids.update(postgres=postgres.process.pid, redis=redis.process.pid)
    return CpuMeter(pids, trees=frozenset({"postgres"}))


def main() -> None:
    Path(".data").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=".data", prefix="bench-") as folder:
        postgres = EmbeddedPostgres(Path(folder) / "postgres")
        redis_server = EmbeddedRedis(Path(folder) / "redis")
        env = dict(os.environ)
        env.update(
            DATABASE_URL=postgres.start(),
            REDIS_URL=redis_server.start(),
            PTF_METRICS_DIR=str(Path(folder) / "metrics"),
            BUILD_ID="bench",
        )
        try:
            rows = asyncio.run(bench_tokens(env["REDIS_URL"]))
            with running_stack(env, workers=1) as stack:
                rows += bench_idle_processes(stack)
                rows += asyncio.run(bench_gate(f"127.0.0.1:{stack['gate'].grpc_port}"))
                rows += asyncio.run(bench_health_ready(stack["health"].http_port))
                asyncio.run(warm_up(_pipeline_ports(stack), env["DATABASE_URL"]))
                one_worker = asyncio.run(
                    measure_throughput(
                        _pipeline_ports(stack), _cpu_meter(stack, postgres, redis_server)
                    )
                )
                raw_rates = [
                    asyncio.run(raw_rate(env["DATABASE_URL"], env["REDIS_URL"]))
                    for _ in range(REPETITIONS)
                ]
                raw_http_rates = [
                    asyncio.run(raw_http_rate(env["DATABASE_URL"], env["REDIS_URL"]))
                    for _ in range(REPETITIONS)
                ]
                rows += asyncio.run(
                    bench_sync_latency(
                        stack["pipeline"].http_port, _cpu_meter(stack, postgres, redis_server)
                    )
                )
                rows += asyncio.run(bench_run_summary(stack, env))
                rows += asyncio.run(bench_backtest(stack, env))
            with running_stack(env, workers=2) as stack:
                two_workers = asyncio.run(
                    measure_throughput(
                        _pipeline_ports(stack), _cpu_meter(stack, postgres, redis_server)
                    )
                )
            rows += throughput_rows(one_worker, two_workers, raw_rates, raw_http_rates)
        finally:
            redis_server.stop()
            postgres.stop()
    write_results(rows)
    print(render(rows))
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
