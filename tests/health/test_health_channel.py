"""The `health` live channel (docs/SPEC.md §8): health publishes its readiness verdict there
and `/health/ready` shows the channel's staleness, read back from Redis.

Real health and pipeline services, the real test Redis; the subscriber is a
runtime LiveBus on its own connection, as another process would hold it.
Staleness tests shorten PTF_LIVE_STALE_AFTER_SECONDS / PTF_LIVE_DEAD_AFTER_SECONDS
and poll readiness until the state shows, never timing an assertion.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from services.health.live_feed import STATUS_EVENT, HealthFeed
from services.health.report import CheckResult, CheckStatus, ReadinessReport
from services.runtime.config.operations import LiveSettings
from services.runtime.live.bus import LiveBus, LivePublisher, LiveSubscription
from services.runtime.live.channels import HEALTH
from services.runtime.live.envelope import Envelope
from services.runtime.redis_client import RedisKeys, create_redis
from tests.health.support import Peers, StartHealth
from tests.support.live import live_metrics, running_bus
from tests.support.polling import eventually
from tests.support.services import ServiceHandle

# No periodic publish within a test unless it asks for one.
NO_REFRESH = {"PTF_THRESHOLD__HEALTH__REFRESH_SECONDS": "3600"}


@asynccontextmanager
async def _subscribed(redis_url: str, prefix: str) -> AsyncIterator[LiveSubscription]:
    async with running_bus(redis_url, prefix) as bus:
        with await bus.subscribe(HEALTH) as subscription:
            yield subscription


async def _next(subscription: LiveSubscription) -> Envelope:
    async with asyncio.timeout(15):
        envelope = await subscription.next()
    assert envelope is not None
    return envelope


async def _ready(svc: ServiceHandle) -> tuple[int, dict[str, Any]]:
    async with svc.http.get("/health/ready") as response:
        return response.status, await response.json()


async def _live_health(svc: ServiceHandle) -> dict[str, Any]:
    _, body = await _ready(svc)
    block = body["live"]["health"]
    assert isinstance(block, dict)
    return block


async def _until_staleness(svc: ServiceHandle, wanted: str) -> tuple[int, dict[str, Any]]:
    async def probe() -> tuple[int, dict[str, Any]] | None:
        status, body = await _ready(svc)
        return (status, body) if body["live"]["health"]["staleness"] == wanted else None

    return await eventually(probe, within=15)


async def test_a_readiness_evaluation_publishes_health_status_on_the_health_channel(
    start_health: StartHealth, redis_url: str, redis_prefix: str
) -> None:
    async with (
        start_health(**NO_REFRESH) as (svc, _),
        _subscribed(redis_url, redis_prefix) as subscription,
    ):
        await _ready(svc)
        envelope = await _next(subscription)
    assert (envelope.event, envelope.channel, envelope.ok) == (STATUS_EVENT, HEALTH, True)
    assert envelope.data["status"] == "ready"
    assert envelope.data["failing_checks"] == []
    assert envelope.data["checks"]["database"] in {"ok", "warning"}


async def test_a_verdict_change_is_published_at_once(
    start_health: StartHealth, peers: Peers, redis_url: str, redis_prefix: str
) -> None:
    async with (
        start_health(**NO_REFRESH) as (svc, _),
        _subscribed(redis_url, redis_prefix) as subscription,
    ):
        await _ready(svc)
        first = await _next(subscription)
        await peers.set_serving(False)

        async def not_ready() -> bool:
            return (await _ready(svc))[0] == 503

        await eventually(not_ready, within=10)
        changed = await _next(subscription)
    assert changed.seq > first.seq
    assert (changed.data["status"], changed.data["failing_checks"]) == ("not_ready", ["services"])


async def test_an_unprobed_health_publishes_its_unchanged_verdict_every_refresh_interval(
    start_health: StartHealth, redis_url: str, redis_prefix: str
) -> None:
    async with (
        start_health(PTF_THRESHOLD__HEALTH__REFRESH_SECONDS="0.1") as _,
        _subscribed(redis_url, redis_prefix) as subscription,
    ):
        events = [await _next(subscription) for _ in range(2)]
    assert [e.data["status"] for e in events] == ["ready", "ready"]
    assert events[0].seq < events[1].seq


async def test_readiness_shows_the_health_channel_fresh_after_a_publish(
    start_health: StartHealth,
) -> None:
    async with start_health(**NO_REFRESH) as (svc, _):
        status, body = await _ready(svc)
    block = body["live"]["health"]
    assert status == 200
    assert block["staleness"] == "fresh"
    assert block["last_seq"] >= 1
    assert block["age_seconds"] >= 0


async def test_readiness_shows_stale_once_the_last_event_is_older_than_stale_after(
    start_health: StartHealth,
) -> None:
    env = {**NO_REFRESH, "PTF_LIVE_STALE_AFTER_SECONDS": "0.2"}
    async with start_health(**env) as (svc, _):
        await _ready(svc)
        status, body = await _until_staleness(svc, "stale")
    assert status == 200
    assert 0.2 <= body["live"]["health"]["age_seconds"] < 300


async def test_a_dead_health_channel_is_shown_but_does_not_fail_readiness(
    start_health: StartHealth,
) -> None:
    env = {
        **NO_REFRESH,
        "PTF_LIVE_STALE_AFTER_SECONDS": "0.1",
        "PTF_LIVE_DEAD_AFTER_SECONDS": "0.3",
    }
    async with start_health(**env) as (svc, _):
        await _ready(svc)
        status, body = await _until_staleness(svc, "dead")
    assert (status, body["status"]) == (200, "ready")
    assert body["live"]["health"]["age_seconds"] >= 0.3
    assert "failing_checks" not in body


async def test_readiness_reads_the_channels_newest_event_from_redis(
    start_health: StartHealth, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    """An event another process published is the one readiness ages: staleness comes
    from the retained list in Redis, which every replica shares, not from memory."""
    publisher = LivePublisher(redis_client, RedisKeys(redis_prefix), LiveSettings(), live_metrics())
    async with start_health(**NO_REFRESH) as (svc, _):
        own = (await _live_health(svc))["last_seq"]
        other = await publisher.publish(HEALTH, STATUS_EVENT, {"status": "ready"})
        block = await _live_health(svc)
    assert other > own
    assert block["last_seq"] == other


async def test_published_health_events_are_counted_by_family_on_metrics(
    start_health: StartHealth,
) -> None:
    async with start_health(**NO_REFRESH) as (svc, _):
        await _ready(svc)
        async with svc.http.get("/metrics") as response:
            text = await response.text()
    assert 'ptf_live_events_published_total{family="health"} 1.0' in text


async def test_staleness_is_null_with_a_reason_when_the_live_store_is_unreachable() -> None:
    client: aioredis.Redis = create_redis("redis://127.0.0.1:1/0")
    feed = HealthFeed(
        LivePublisher(client, RedisKeys("unreachable"), LiveSettings(), live_metrics()),
        LiveSettings(),
        refresh_seconds=15,
        clock=lambda: datetime.now(UTC),
    )
    try:
        block = await feed.staleness()
    finally:
        await client.aclose()
    assert block["staleness"] is None
    assert block["message"].startswith("live store unreachable")


def _report(*failing: str) -> ReadinessReport:
    checks = {"database": CheckResult(CheckStatus.OK)}
    checks.update({name: CheckResult(CheckStatus.ERROR) for name in failing})
    return ReadinessReport(
        timestamp=datetime.now(UTC),
        build_id="test",
        config_hash="sha256:test",
        checks=checks,
        pilot=None,
        last_activity={},
    )


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def _published_seqs(client: aioredis.Redis, prefix: str) -> list[int]:
    bus = LiveBus(client, RedisKeys(prefix), LiveSettings(), live_metrics())
    return [e.seq for e in await bus.retained_after(HEALTH, 0)]


async def test_an_unchanged_verdict_within_the_refresh_interval_is_not_published_again(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    clock = _Clock()
    publisher = LivePublisher(redis_client, RedisKeys(redis_prefix), LiveSettings(), live_metrics())
    feed = HealthFeed(publisher, LiveSettings(), refresh_seconds=15, clock=clock)
    await feed.publish(_report())
    clock.now += timedelta(seconds=14)
    await feed.publish(_report())
    assert await _published_seqs(redis_client, redis_prefix) == [1]


async def test_a_changed_verdict_within_the_refresh_interval_is_published(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    clock = _Clock()
    publisher = LivePublisher(redis_client, RedisKeys(redis_prefix), LiveSettings(), live_metrics())
    feed = HealthFeed(publisher, LiveSettings(), refresh_seconds=15, clock=clock)
    await feed.publish(_report())
    await feed.publish(_report("queue"))
    await feed.publish(_report("queue", "services"))
    assert await _published_seqs(redis_client, redis_prefix) == [1, 2, 3]
