"""The worker's live events ride its acknowledgement pipeline: no Redis round trip more."""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis
from opentelemetry.sdk.metrics import MeterProvider

from services.pipeline.jobs import JobState
from services.pipeline.notifications import JobNotifier
from services.runtime.config.operations import LiveSettings
from services.runtime.live.bus import LivePublisher, Staged
from services.runtime.live.envelope import parse_envelope
from services.runtime.live.metrics import LiveMetrics
from services.runtime.redis_client import RedisKeys, create_redis
from services.runtime.traffic import StoreTraffic


async def test_a_batch_of_job_events_staged_on_a_pipeline_costs_one_round_trip(
    redis_url: str, redis_prefix: str
) -> None:
    traffic = StoreTraffic()
    client: aioredis.Redis = create_redis(redis_url, traffic=traffic)
    keys = RedisKeys(redis_prefix)
    publisher = LivePublisher(
        client, keys, LiveSettings(), LiveMetrics(MeterProvider().get_meter("test"))
    )
    notifier = JobNotifier(publisher)
    changes = [("acme", uuid.uuid4(), JobState.FAILED, None) for _ in range(10)]
    try:
        before = traffic.redis_round_trips
        async with client.pipeline(transaction=False) as pipe:
            notifier.stage(pipe, changes)
            await pipe.execute()
        assert traffic.redis_round_trips - before == 1
        retained = await client.lrange(keys.key("livemeta", "jobs.acme", "retained"), 0, -1)
        events = [parse_envelope(raw) for raw in retained]
        assert [e.data["job_id"] for e in events] == [str(c[1]) for c in changes]
        assert [e.seq for e in events] == list(range(1, 11))
    finally:
        await client.aclose()


async def test_a_batch_of_job_events_is_one_script_call_per_tenant_channel_with_consecutive_seqs(
    redis_url: str, redis_prefix: str
) -> None:
    traffic = StoreTraffic()
    client: aioredis.Redis = create_redis(redis_url, traffic=traffic)
    keys = RedisKeys(redis_prefix)
    publisher = LivePublisher(
        client, keys, LiveSettings(), LiveMetrics(MeterProvider().get_meter("test"))
    )
    notifier = JobNotifier(publisher)
    tenants = ["acme", "beta", "acme", "acme", "beta"]
    changes = [(tenant, uuid.uuid4(), JobState.DONE, None) for tenant in tenants]
    try:
        await publisher.publish("jobs.acme", "job.state", {"before": True})
        before = traffic.redis_commands
        async with client.pipeline(transaction=False) as pipe:
            notifier.stage(pipe, changes)
            await pipe.execute()
        assert traffic.redis_commands - before == 2
        for tenant, first_seq in (("acme", 2), ("beta", 1)):
            retained = await client.lrange(
                keys.key("livemeta", f"jobs.{tenant}", "retained"), 0, -1
            )
            events = [parse_envelope(raw) for raw in retained][-tenants.count(tenant) :]
            assert [e.data["job_id"] for e in events] == [
                str(job_id) for t, job_id, _, _ in changes if t == tenant
            ]
            assert [e.seq for e in events] == list(range(first_seq, first_seq + len(events)))
    finally:
        await client.aclose()


async def test_a_staged_batch_keeps_only_the_retained_number_of_newest_events(
    redis_url: str, redis_prefix: str
) -> None:
    client: aioredis.Redis = create_redis(redis_url)
    keys = RedisKeys(redis_prefix)
    publisher = LivePublisher(
        client,
        keys,
        LiveSettings(retained_per_channel=3),
        LiveMetrics(MeterProvider().get_meter("test")),
    )
    try:
        async with client.pipeline(transaction=False) as pipe:
            publisher.stage(pipe, "jobs.acme", [Staged("job.state", {"n": n}) for n in range(7)])
            await pipe.execute()
        retained = await client.lrange(keys.key("livemeta", "jobs.acme", "retained"), 0, -1)
        events = [parse_envelope(raw) for raw in retained]
        assert [(e.data["n"], e.seq) for e in events] == [(4, 5), (5, 6), (6, 7)]
    finally:
        await client.aclose()
