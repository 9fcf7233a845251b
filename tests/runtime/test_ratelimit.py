"""Sliding-window limits shared through Redis: exact admission, Retry-After, expiry."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from services.runtime.ratelimit import SlidingWindowLimiter
from services.runtime.redis_client import RedisKeys


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _limiter(
    client: aioredis.Redis, prefix: str, clock: Clock, limit: int = 3, window: int = 60
) -> SlidingWindowLimiter:
    return SlidingWindowLimiter(
        client, RedisKeys(prefix), "invoices", limit=limit, window_seconds=window, clock=clock
    )


async def test_admits_up_to_the_limit_then_refuses(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    limiter = _limiter(redis_client, redis_prefix, Clock())
    results = [await limiter.acquire("pilot") for _ in range(4)]
    assert [r.admitted for r in results] == [True, True, True, False]
    assert results[2].usage.remaining == 0


async def test_refusal_says_when_the_oldest_slot_frees(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    clock = Clock()
    limiter = _limiter(redis_client, redis_prefix, clock, limit=2, window=60)
    await limiter.acquire("pilot")
    clock.now += 20
    await limiter.acquire("pilot")
    clock.now += 5
    refused = await limiter.acquire("pilot")
    assert not refused.admitted
    assert refused.retry_after_seconds == 35


async def test_slots_free_up_as_the_window_slides(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    clock = Clock()
    limiter = _limiter(redis_client, redis_prefix, clock, limit=1, window=60)
    assert (await limiter.acquire("pilot")).admitted
    clock.now += 60.001
    assert (await limiter.acquire("pilot")).admitted


async def test_subjects_have_separate_windows(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    limiter = _limiter(redis_client, redis_prefix, Clock(), limit=1)
    assert (await limiter.acquire("pilot")).admitted
    assert (await limiter.acquire("default")).admitted


async def test_concurrent_acquires_never_exceed_the_limit(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    limiter = _limiter(redis_client, redis_prefix, Clock(), limit=50)
    results = await asyncio.gather(*(limiter.acquire("pilot") for _ in range(120)))
    assert sum(r.admitted for r in results) == 50


async def test_usage_reads_without_taking_a_slot(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    limiter = _limiter(redis_client, redis_prefix, Clock(), limit=5)
    await limiter.acquire("pilot")
    await limiter.acquire("pilot")
    usage = await limiter.usage("pilot")
    assert usage.as_json() == {"current": 2, "limit": 5, "remaining": 3, "window_seconds": 60}
    assert (await limiter.usage("pilot")).current == 2


async def test_a_released_slot_is_free_again(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    limiter = _limiter(redis_client, redis_prefix, Clock(), limit=1)
    taken = await limiter.acquire("pilot")
    await limiter.release(taken)
    assert (await limiter.acquire("pilot")).admitted


async def test_releasing_a_refusal_frees_nothing(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    limiter = _limiter(redis_client, redis_prefix, Clock(), limit=1)
    await limiter.acquire("pilot")
    await limiter.release(await limiter.acquire("pilot"))
    assert (await limiter.usage("pilot")).current == 1
