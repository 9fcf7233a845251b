"""A waiting intake hears a job's state change through its process's one live subscription."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import redis.asyncio as aioredis
from opentelemetry.sdk.metrics import MeterProvider

from services.pipeline.jobs import JobState
from services.pipeline.notifications import JobNotifier
from services.runtime.config.operations import LiveSettings
from services.runtime.live.bus import LiveBus, LivePublisher
from services.runtime.live.metrics import LiveMetrics
from services.runtime.redis_client import RedisKeys


async def test_a_state_change_another_process_publishes_reaches_a_subscription_via_the_bus(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    """Must: with the notifier listening on the LiveBus (no subscription of its own), a
    job.state published by another process's notifier arrives at this process's waiter."""
    keys = RedisKeys(redis_prefix)
    metrics = LiveMetrics(MeterProvider().get_meter("test"))
    bus = LiveBus(redis_client, keys, LiveSettings(), metrics)
    here = JobNotifier(bus.publisher)
    elsewhere = JobNotifier(LivePublisher(redis_client, keys, LiveSettings(), metrics))
    here.read_from(bus)
    await bus.start()
    reader = asyncio.create_task(bus.run())
    job_id = uuid.uuid4()
    try:
        with here.subscribe(job_id) as subscription:
            # The waiter's subscription to the jobs channels is taken in the background:
            # publish until it has arrived (a waiter in production also polls the row).
            published = None
            for _ in range(300):
                await elsewhere.publish("acme", job_id, JobState.FAILED)
                if (published := await subscription.next(0.1)) is not None:
                    break
        assert published is not None
        assert published.state == JobState.FAILED.value
    finally:
        await bus.close()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
