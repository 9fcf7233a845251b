"""Live fan-out through real Redis: replicas, per-subscriber backpressure, resume."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest
import redis.asyncio as aioredis
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from services.runtime.config.operations import LiveSettings
from services.runtime.errors import Unavailable
from services.runtime.live.bus import BACKPRESSURE_DROP, LiveBus, LiveSubscription
from services.runtime.live.envelope import Envelope
from services.runtime.live.metrics import LiveMetrics
from services.runtime.redis_client import RedisKeys
from tests.support.live import live_metrics, running_bus
from tests.support.polling import eventually


async def _next(subscription: LiveSubscription) -> Envelope | None:
    async with asyncio.timeout(10):
        return await subscription.next()


async def test_a_subscriber_on_each_replica_sees_events_published_through_the_other(
    redis_url: str, redis_prefix: str
) -> None:
    settings = LiveSettings()
    async with (
        running_bus(redis_url, redis_prefix, settings) as one,
        running_bus(redis_url, redis_prefix, settings) as two,
    ):
        with (
            await one.subscribe("jobs.acme") as on_one,
            await two.subscribe("jobs.acme") as on_two,
        ):
            first = await one.publish("jobs.acme", "job.done", {"job_id": "a"})
            second = await two.publish("jobs.acme", "job.done", {"job_id": "b"})
            assert second > first
            for subscriber in (on_one, on_two):
                got = [await _next(subscriber), await _next(subscriber)]
                assert [e.data["job_id"] for e in got if e] == ["a", "b"]
                assert [e.seq for e in got if e] == [first, second]


async def _publish_latencies(bus: LiveBus, channel: str, count: int) -> list[float]:
    latencies: list[float] = []
    for n in range(count):
        started = time.perf_counter()
        await bus.publish(channel, "job.done", {"n": n})
        latencies.append(time.perf_counter() - started)
    return latencies


async def test_a_subscriber_that_reads_nothing_gets_the_newest_200_and_one_drop_count(
    redis_url: str, redis_prefix: str
) -> None:
    """The producer is not slowed by the full buffer. The test prints the median publish
    latency of 1,000 publishes without a subscriber and with the idle one; three runs here
    (2 shared cores, embedded Redis): 0.78/0.49, 0.49/0.43, 0.28/0.31 ms, i.e. the same
    within noise. No timed assertion."""
    settings = LiveSettings(subscriber_buffer=200)
    async with running_bus(redis_url, redis_prefix, settings) as bus:
        baseline = await _publish_latencies(bus, "jobs.other", 1000)
        with await bus.subscribe("jobs.acme") as idle:
            loaded = await _publish_latencies(bus, "jobs.acme", 1000)
            print(
                f"median publish: {statistics.median(baseline) * 1e3:.3f} ms without a"
                f" subscriber, {statistics.median(loaded) * 1e3:.3f} ms with an idle one"
            )

            async def last_arrived() -> bool:
                return bus.last_seq_seen("jobs.acme") == 1000

            await eventually(last_arrived, within=30)
            warning = await _next(idle)
            assert warning is not None
            assert warning.event == BACKPRESSURE_DROP
            assert warning.data == {"dropped": 800}
            rest = [await _next(idle) for _ in range(200)]
            assert [e.data["n"] for e in rest if e] == list(range(800, 1000))
            assert idle.pending == 0


async def test_resume_delivers_only_events_after_the_last_seen_seq(
    redis_url: str, redis_prefix: str
) -> None:
    async with running_bus(redis_url, redis_prefix, LiveSettings(retained_per_channel=5)) as bus:
        seqs = [await bus.publish("health", "health.sample", {"n": n}) for n in range(8)]
        later = await bus.retained_after("health", seqs[4])
        assert [e.seq for e in later] == seqs[5:]
        capped = await bus.retained_after("health", 0)
        assert [e.seq for e in capped] == seqs[3:]


def _values(reader: InMemoryMetricReader, name: str) -> dict[str, float]:
    """The exported points of instrument `name`, by their `family` label."""
    found: dict[str, float] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        found[str(point.attributes["family"])] = point.value  # type: ignore[index,union-attr]
    return found


async def test_metrics_count_events_published_and_dropped_and_open_streams_by_family(
    redis_url: str, redis_prefix: str
) -> None:
    reader = InMemoryMetricReader()
    metrics = LiveMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"))
    settings = LiveSettings(subscriber_buffer=2)
    async with running_bus(redis_url, redis_prefix, settings, metrics) as bus:
        with await bus.subscribe("jobs.acme"), await bus.subscribe("incidents.acme"):
            for n in range(5):
                await bus.publish("jobs.acme", "job.done", {"n": n})

            async def all_arrived() -> bool:
                return bus.last_seq_seen("jobs.acme") == 5

            await eventually(all_arrived, within=30)
            streams = _values(reader, "ptf_live_active_streams")
            assert (streams["jobs"], streams["incidents"], streams["health"]) == (1, 1, 0)
        streams = _values(reader, "ptf_live_active_streams")
        assert (streams["jobs"], streams["incidents"]) == (0, 0)
    published = _values(reader, "ptf_live_events_published")
    assert (published["jobs"], published["incidents"]) == (5, 0)
    assert _values(reader, "ptf_live_events_dropped")["jobs"] == 3


async def _subscribers_in_redis(client: aioredis.Redis, prefix: str, channel: str) -> int:
    """How many connections Redis has subscribed to the live channel (exactly, not by pattern)."""
    [(_, count)] = await client.pubsub_numsub(RedisKeys(prefix).key("live", channel))
    return int(count)


async def test_a_stream_subscription_is_confirmed_by_redis_when_subscribe_returns(
    redis_url: str, redis_prefix: str, redis_client: aioredis.Redis
) -> None:
    async with running_bus(redis_url, redis_prefix) as bus:
        assert await _subscribers_in_redis(redis_client, redis_prefix, "jobs.acme") == 0
        with await bus.subscribe("jobs.acme"):
            assert await _subscribers_in_redis(redis_client, redis_prefix, "jobs.acme") == 1
            with await bus.subscribe("jobs.acme"):
                assert await _subscribers_in_redis(redis_client, redis_prefix, "jobs.acme") == 1

        async def unsubscribed() -> bool:
            return await _subscribers_in_redis(redis_client, redis_prefix, "jobs.acme") == 0

        await eventually(unsubscribed, within=30)


async def test_a_process_with_no_reader_of_a_channel_receives_nothing_published_on_it(
    redis_url: str, redis_prefix: str
) -> None:
    """Redis sends a process only what it reads: an event on a channel with no stream
    here and no listener waiting is never received (nor parsed)."""
    heard: list[Envelope] = []
    async with running_bus(redis_url, redis_prefix) as bus:
        bus.add_listener("jobs", heard.append)
        await bus.publish("jobs.acme", "job.done", {"n": 0})
        with await bus.subscribe("incidents.acme") as incidents:
            await bus.publish("incidents.acme", "incident.created", {"n": 1})
            assert (await _next(incidents)) is not None
    assert bus.last_seq_seen("jobs.acme") == 0
    assert heard == []


async def test_a_listener_hears_its_family_only_while_its_interest_is_held(
    redis_url: str, redis_prefix: str
) -> None:
    heard: list[Envelope] = []
    async with running_bus(redis_url, redis_prefix) as bus:
        interest = bus.add_listener("jobs", heard.append)
        interest.acquire()

        async def heard_one() -> bool:
            await bus.publish("jobs.acme", "job.done", {"n": 1})
            return bool(heard)

        await eventually(heard_one, within=30)
        assert {e.channel for e in heard} == {"jobs.acme"}
        await bus.publish("incidents.acme", "incident.created", {"n": 2})
        interest.release()

        async def deaf() -> bool:
            before = len(heard)
            await bus.publish("jobs.beta", "job.done", {"n": 3})
            await asyncio.sleep(0.2)
            return len(heard) == before

        await eventually(deaf, within=30)
    assert "incidents.acme" not in {e.channel for e in heard}


async def test_a_subscription_redis_does_not_confirm_in_time_is_live_store_unavailable(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    """Without its reader running the bus never sees a confirmation: the stream is refused
    with 503 and leaves no subscriber behind."""
    settings = LiveSettings(subscribe_timeout_seconds=0.2)
    bus = LiveBus(redis_client, RedisKeys(redis_prefix), settings, live_metrics())
    await bus.start()
    try:
        with pytest.raises(Unavailable) as refused:
            await bus.subscribe("jobs.acme")
        assert refused.value.error_code == "LIVE_STORE_UNAVAILABLE"
        assert bus.active_subscriptions == 0
    finally:
        await bus.close()
