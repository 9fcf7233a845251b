"""`/health/ready` at 500 requests/s: p99 ≤ 10 ms and ≤ 2 database queries/s (SPEC §12)."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from bench.report import BenchRow
from bench.scrape import counter_total

RATE = 500
SECONDS = 6


async def bench_health_ready(http_port: int) -> list[BenchRow]:
    """Open-loop: one request every 1/RATE s regardless of answers, for SECONDS seconds."""
    base = f"http://127.0.0.1:{http_port}"
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def probe() -> None:
            started = time.perf_counter()
            async with session.get(f"{base}/health/ready") as response:
                await response.read()
            latencies.append((time.perf_counter() - started) * 1000)

        # Steady state: a warm cache at the start, so the count is not off by the
        # one extra evaluation a cold start adds to any window.
        await probe()
        latencies.clear()
        before = await counter_total(session, base, "ptf_db_statements")
        started = time.perf_counter()
        tasks = []
        for i in range(RATE * SECONDS):
            delay = started + i / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(probe()))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        queries_per_second = (
            await counter_total(session, base, "ptf_db_statements") - before
        ) / elapsed
    latencies.sort()
    p99 = latencies[int(0.99 * (len(latencies) - 1))]
    achieved = len(latencies) / elapsed
    return [
        BenchRow("/health/ready p99 at 500 req/s", p99, "ms", None, "≤ 10 ms", p99 <= 10),
        BenchRow("/health/ready achieved rate", achieved, "/s", None, "≈ 500/s", achieved >= 450),
        BenchRow(
            "/health/ready database queries",
            queries_per_second,
            "/s",
            None,
            "≤ 2/s",
            queries_per_second <= 2,
        ),
    ]
