"""The worker's live events ride its acknowledgement pipeline: no Redis round trip more."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import redis.asyncio as aioredis
from opentelemetry.sdk.metrics import MeterProvider

from services.pipeline.jobs import JobState
from services.pipeline.notifications import JobNotifier
from services.runtime.config.operations import LiveSettings
from services.runtime.live.bus import LivePublisher, Staged
from services.runtime.live.envelope import Envelope, parse_envelope
from services.runtime.live.metrics import LiveMetrics
from services.runtime.redis_client import RedisKeys, create_redis
from services.runtime.traffic import StoreTraffic


@dataclass
class _Publishing:
    client: aioredis.Redis
    keys: RedisKeys
    publisher: LivePublisher
    traffic: StoreTraffic

    async def retained(self, channel: str) -> list[Envelope]:
        raw = await self.client.lrange(self.keys.key("livemeta", channel, "retained"), 0, -1)
        return [parse_envelope(item) for item in raw]


@asynccontextmanager
async def _publishing(
    redis_url: str, prefix: str, settings: LiveSettings | None = None
) -> AsyncIterator[_Publishing]:
    """A publisher on its own counted Redis client, closed at the end."""
    traffic = StoreTraffic()
    client: aioredis.Redis = create_redis(redis_url, traffic=traffic)
    keys = RedisKeys(prefix)
    publisher = LivePublisher(
        client, keys, settings or LiveSettings(), LiveMetrics(MeterProvider().get_meter("test"))
    )
    try:
        yield _Publishing(client, keys, publisher, traffic)
    finally:
        await client.aclose()


async def test_a_batch_of_job_events_staged_on_a_pipeline_costs_one_round_trip(
    redis_url: str, redis_prefix: str
) -> None:
    async with _publishing(redis_url, redis_prefix) as live:
        notifier = JobNotifier(live.publisher)
        changes = [("acme", uuid.uuid4(), JobState.FAILED, None) for _ in range(10)]
        before = live.traffic.redis_round_trips
        async with live.client.pipeline(transaction=False) as pipe:
            notifier.stage(pipe, changes)
            await pipe.execute()
        assert live.traffic.redis_round_trips - before == 1
        events = await live.retained("jobs.acme")
        assert [e.data["job_id"] for e in events] == [str(c[1]) for c in changes]
        assert [e.seq for e in events] == list(range(1, 11))


async def test_a_batch_of_job_events_is_one_script_call_per_tenant_channel_with_consecutive_seqs(
    redis_url: str, redis_prefix: str
) -> None:
    async with _publishing(redis_url, redis_prefix) as live:
        notifier = JobNotifier(live.publisher)
        tenants = ["acme", "beta", "acme", "acme", "beta"]
        changes = [(tenant, uuid.uuid4(), JobState.DONE, None) for tenant in tenants]
        await live.publisher.publish("jobs.acme", "job.state", {"before": True})
        before = live.traffic.redis_commands
        async with live.client.pipeline(transaction=False) as pipe:
            notifier.stage(pipe, changes)
            await pipe.execute()
        assert live.traffic.redis_commands - before == 2
        for tenant, first_seq in (("acme", 2), ("beta", 1)):
            events = (await live.retained(f"jobs.{tenant}"))[-tenants.count(tenant) :]
            assert [e.data["job_id"] for e in events] == [
                str(job_id) for t, job_id, _, _ in changes if t == tenant
            ]
            assert [e.seq for e in events] == list(range(first_seq, first_seq + len(events)))


async def test_a_staged_batch_keeps_only_the_retained_number_of_newest_events(
    redis_url: str, redis_prefix: str
) -> None:
    async with _publishing(redis_url, redis_prefix, LiveSettings(retained_per_channel=3)) as live:
        async with live.client.pipeline(transaction=False) as pipe:
            live.publisher.stage(
                pipe, [("jobs.acme", Staged("job.state", {"n": n})) for n in range(7)]
            )
            await pipe.execute()
        events = await live.retained("jobs.acme")
        assert [(e.data["n"], e.seq) for e in events] == [(4, 5), (5, 6), (6, 7)]
