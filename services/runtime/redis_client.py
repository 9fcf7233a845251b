"""The one Redis client of a process and the one place where key names are built."""

from __future__ import annotations

import redis.asyncio as aioredis


def create_redis(url: str, *, max_connections: int = 100) -> aioredis.Redis:
    """A client that returns `bytes`; callers decode what they need.

    The pool blocks (up to the socket timeout) instead of failing when a burst
    needs more than `max_connections` at once.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=5,
        health_check_interval=30,
        socket_timeout=5,
    )
    return aioredis.Redis.from_pool(pool)


class RedisKeys:
    """Builds every Redis key with a per-deployment prefix, so environments never collide."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix

    def key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))
