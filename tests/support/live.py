"""A live bus as another process would hold it, for tests on the real test Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from opentelemetry.sdk.metrics import MeterProvider

from services.runtime.config.operations import LiveSettings
from services.runtime.live.bus import LiveBus
from services.runtime.live.metrics import LiveMetrics
from services.runtime.redis_client import RedisKeys, create_redis


def live_metrics() -> LiveMetrics:
    """Live metrics on a meter nothing reads: for buses whose counts a test ignores."""
    return LiveMetrics(MeterProvider().get_meter("test"))


@asynccontextmanager
async def running_bus(
    redis_url: str,
    prefix: str,
    settings: LiveSettings | None = None,
    metrics: LiveMetrics | None = None,
) -> AsyncIterator[LiveBus]:
    """One replica's bus on its own Redis connection, its fan-out reader running."""
    client: aioredis.Redis = create_redis(redis_url)
    bus = LiveBus(client, RedisKeys(prefix), settings or LiveSettings(), metrics or live_metrics())
    await bus.start()
    reader = asyncio.create_task(bus.run())
    try:
        yield bus
    finally:
        await bus.close()
        await reader
        await client.aclose()
