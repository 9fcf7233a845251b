"""Probe-storm protection: one evaluation per cache window, shared by concurrent callers."""

from __future__ import annotations

import asyncio

import pytest

from services.health.single_flight import SingleFlightCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_callers_share_one_evaluation() -> None:
    calls = 0
    gate = asyncio.Event()

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return calls

    cache = SingleFlightCache(compute, ttl_seconds=1.0)
    waiters = [asyncio.create_task(cache.get()) for _ in range(100)]
    await asyncio.sleep(0)
    gate.set()
    assert set(await asyncio.gather(*waiters)) == {1}
    assert calls == 1


async def test_value_is_reused_within_the_window_and_refreshed_after() -> None:
    clock = Clock()
    calls = 0

    async def compute() -> int:
        nonlocal calls
        calls += 1
        return calls

    cache = SingleFlightCache(compute, ttl_seconds=1.0, clock=clock)
    assert await cache.get() == 1
    clock.now = 0.99
    assert await cache.get() == 1
    clock.now = 1.0
    assert await cache.get() == 2


async def test_failed_evaluation_is_not_cached() -> None:
    attempts = 0

    async def compute() -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("boom")
        return attempts

    cache = SingleFlightCache(compute, ttl_seconds=1.0)
    with pytest.raises(RuntimeError, match="boom"):
        await cache.get()
    assert await cache.get() == 2
