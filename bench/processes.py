"""The stack as separate processes for benchmarks; idle RSS and `/metrics` scrape latency."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from bench.report import BenchRow
from services.runtime.devservers import free_port
from services.runtime.stack import (
    SERVICES,
    ChildService,
    spawn_stack,
    stop_children,
    wait_serving,
)

SCRAPES = 200
RSS_LIMIT_MB = 100.0
SCRAPE_LIMIT_MS = 20.0


@contextmanager
def running_stack(env: dict[str, str], workers: int = 1) -> Iterator[dict[str, ChildService]]:
    """All four services on free ports, wired to each other, until the block ends.

    As `make run` lays it out: the pipeline API without worker loops and `workers`
    worker processes (`pipeline-worker`, `pipeline-worker-2`, ...) doing the jobs.
    """
    ports = {name: (free_port(), free_port()) for name in SERVICES}
    wired = dict(env)
    for name, (grpc_port, _) in ports.items():
        wired[f"PTF_{name.upper()}_ADDR"] = f"127.0.0.1:{grpc_port}"
    children: list[ChildService] = []
    try:
        children = spawn_stack(wired, ports, [free_port() for _ in range(workers)], quiet=True)
        for child in children:
            asyncio.run(wait_serving(child))
        named = {}
        for child in children:
            name = child.name
            while name in named:
                name = f"{child.name}-{len([n for n in named if n.startswith(child.name)]) + 1}"
            named[name] = child
        yield named
    finally:
        stop_children(children)


def rss_mb(pid: int) -> float:
    """Resident set size from /proc (Linux), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def _scrape_p99(http_port: int) -> float:
    latencies = []
    async with aiohttp.ClientSession() as session:
        for _ in range(SCRAPES):
            started = time.perf_counter()
            async with session.get(f"http://127.0.0.1:{http_port}/metrics") as response:
                await response.read()
            latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    return latencies[int(0.99 * (len(latencies) - 1))]


def bench_idle_processes(children: dict[str, ChildService]) -> list[BenchRow]:
    time.sleep(2)
    rows = []
    for child in children.values():
        rss = rss_mb(child.process.pid)
        limit_met = rss <= RSS_LIMIT_MB
        rows.append(BenchRow(f"{child.name}: idle RSS", rss, "MB", None, "≤ 100 MB", limit_met))
    for child in children.values():
        p99 = asyncio.run(_scrape_p99(child.http_port))
        rows.append(
            BenchRow(
                f"{child.name}: /metrics scrape p99",
                p99,
                "ms",
                None,
                "≤ 20 ms",
                p99 <= SCRAPE_LIMIT_MS,
            )
        )
    return rows
