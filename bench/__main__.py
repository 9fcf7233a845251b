"""Run every benchmark against embedded stores and print one table."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from bench.gate import bench_gate
from bench.health import bench_health_ready
from bench.pipeline import bench_pipeline
from bench.processes import bench_idle_processes, running_stack
from bench.report import render
from bench.tokens import bench_tokens
from services.runtime.devservers import EmbeddedPostgres, EmbeddedRedis


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
            with running_stack(env) as stack:
                rows += bench_idle_processes(stack)
                rows += asyncio.run(bench_gate(f"127.0.0.1:{stack['gate'].grpc_port}"))
                rows += asyncio.run(bench_health_ready(stack["health"].http_port))
                rows += asyncio.run(bench_pipeline(stack["pipeline"].http_port))
        finally:
            redis_server.stop()
            postgres.stop()
    print(render(rows))


if __name__ == "__main__":
    main()
