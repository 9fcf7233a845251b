"""Closed-loop load: N concurrent workers drain a list of operations; ops/s and latencies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

Operation = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class LoadResult:
    ops_per_second: float
    latencies_ms: list[float]

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, round(q * (len(ordered) - 1)))
        return ordered[index]


async def run_closed_loop(operations: Sequence[Operation], concurrency: int) -> LoadResult:
    """Run every operation once, `concurrency` at a time; measure each and the whole."""
    queue = iter(operations)
    latencies: list[float] = []

    async def worker() -> None:
        for operation in queue:
            started = time.perf_counter()
            await operation()
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return LoadResult(len(operations) / elapsed, latencies)
