"""The one Redis client of a process and the one place where key names are built."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from services.runtime.traffic import StoreTraffic


class _CountingPipeline(Pipeline):
    """A pipeline whose `execute()` counts one round trip carrying its queued commands."""

    traffic: StoreTraffic

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        if self.command_stack:
            self.traffic.redis_round_trip(len(self.command_stack))
        return await super().execute(raise_on_error)


class _CountingRedis(aioredis.Redis):
    """A client that counts each command it sends (one round trip each) and its pipelines.

    Commands issued through a pub/sub object (SUBSCRIBE, and the messages it
    reads) are not counted: a listener's connection carries no request load.
    """

    traffic: StoreTraffic

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.traffic.redis_round_trip(1)
        return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        pipe = _CountingPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
        pipe.traffic = self.traffic
        return pipe


def create_redis(
    url: str, *, max_connections: int = 100, traffic: StoreTraffic | None = None
) -> aioredis.Redis:
    """A client that returns `bytes`; callers decode what they need.

    The pool blocks (up to the socket timeout) instead of failing when a burst
    needs more than `max_connections` at once. With `traffic`, the commands and
    round trips sent are counted there (the service's `/metrics`).
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=5,
        health_check_interval=30,
        socket_timeout=5,
    )
    if traffic is None:
        return aioredis.Redis.from_pool(pool)
    # What `Redis.from_pool` does: the client owns the pool and closes it with itself.
    client = _CountingRedis(connection_pool=pool)
    client.auto_close_connection_pool = True
    client.traffic = traffic
    return client


class RedisKeys:
    """Builds every Redis key with a per-deployment prefix, so environments never collide."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix

    def key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))
