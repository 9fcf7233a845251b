"""Idle RSS of each service process and `/metrics` scrape latency (SPEC §12)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from bench.report import BenchRow
from services.runtime.devservers import free_port
from services.runtime.stack import (
    SERVICES,
    ChildService,
    spawn_service,
    stop_children,
    wait_serving,
)

SCRAPES = 200
RSS_LIMIT_MB = 100.0
SCRAPE_LIMIT_MS = 20.0


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


def bench_processes(env: dict[str, str]) -> list[BenchRow]:
    children: list[ChildService] = []
    try:
        children = [spawn_service(n, env, (free_port(), free_port()), quiet=True) for n in SERVICES]
        for child in children:
            asyncio.run(wait_serving(child))
        time.sleep(2)
        rows = []
        for child in children:
            rss = rss_mb(child.process.pid)
            rows.append(
                BenchRow(
                    f"{child.name}: idle RSS", rss, "MB", None, "≤ 100 MB", rss <= RSS_LIMIT_MB
                )
            )
        for child in children:
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
    finally:
        stop_children(children)
