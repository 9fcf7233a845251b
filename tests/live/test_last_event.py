"""`LivePublisher.last_event`: a channel's newest retained envelope, read from Redis."""

from __future__ import annotations

import redis.asyncio as aioredis
from opentelemetry.sdk.metrics import MeterProvider

from services.runtime.config.operations import LiveSettings
from services.runtime.live.bus import LivePublisher
from services.runtime.live.metrics import LiveMetrics
from services.runtime.redis_client import RedisKeys


def _publisher(client: aioredis.Redis, prefix: str) -> LivePublisher:
    metrics = LiveMetrics(MeterProvider().get_meter("test"))
    return LivePublisher(client, RedisKeys(prefix), LiveSettings(), metrics)


async def test_last_event_is_the_newest_published_envelope_of_the_channel(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    publisher = _publisher(redis_client, redis_prefix)
    await publisher.publish("health", "health.status", {"n": 1})
    newest = await publisher.publish("health", "health.status", {"n": 2})
    await publisher.publish("jobs.acme", "job.state", {"n": 3})
    last = await publisher.last_event("health")
    assert last is not None
    assert (last.seq, last.data) == (newest, {"n": 2})


async def test_last_event_of_a_channel_with_no_event_is_none(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    assert await _publisher(redis_client, redis_prefix).last_event("health") is None


async def test_an_unreadable_newest_entry_counts_as_no_event(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    await redis_client.rpush(RedisKeys(redis_prefix).key("livemeta", "health", "retained"), "{")
    assert await _publisher(redis_client, redis_prefix).last_event("health") is None
