"""Sliding-window rate limits shared by every replica through Redis (docs/SPEC.md §3.6).

Each window is a sorted set of admission timestamps; one Lua script trims it,
counts, and admits or refuses atomically, so two replicas can never both take
the last slot. Time is passed in (injectable) rather than read inside Redis.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from services.runtime.redis_client import RedisKeys

# KEYS[1] window; ARGV: now_ms, window_ms, limit, member.
# Returns {admitted (0/1), count after, retry_after_ms}.
_ACQUIRE = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, count + 1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local retry = window
if oldest[2] then retry = tonumber(oldest[2]) + window - now end
return {0, count, retry}
"""


@dataclass(frozen=True)
class WindowUsage:
    """Usage of one window, in the shape `/health/ready` shows (`pilot.rate_limit`)."""

    current: int
    limit: int
    window_seconds: int

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.current)

    def as_json(self) -> dict[str, int]:
        return {
            "current": self.current,
            "limit": self.limit,
            "remaining": self.remaining,
            "window_seconds": self.window_seconds,
        }


@dataclass(frozen=True)
class Admission:
    """The answer of `acquire`; `slot` names the admission so it can be handed back."""

    admitted: bool
    usage: WindowUsage
    retry_after_seconds: int
    subject: str
    slot: str


class SlidingWindowLimiter:
    """At most `limit` admissions per `window_seconds` for each subject (e.g. a tenant)."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: RedisKeys,
        name: str,
        *,
        limit: int,
        window_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._keys = keys
        self._name = name
        self._limit = limit
        self._window_seconds = window_seconds
        self._clock = clock
        self._acquire = client.register_script(_ACQUIRE)

    def _key(self, subject: str) -> str:
        return self._keys.key("ratelimit", self._name, subject)

    async def acquire(self, subject: str) -> Admission:
        """Take one slot if the window has room; otherwise say when the next one frees up."""
        now_ms = int(self._clock() * 1000)
        slot = f"{now_ms}-{uuid.uuid4().hex}"
        admitted, count, retry_ms = await self._acquire(
            keys=[self._key(subject)],
            args=[now_ms, self._window_seconds * 1000, self._limit, slot],
        )
        usage = WindowUsage(int(count), self._limit, self._window_seconds)
        retry_after = 0 if admitted else max(1, math.ceil(int(retry_ms) / 1000))
        return Admission(bool(admitted), usage, retry_after, subject, slot)

    async def release(self, admission: Admission) -> None:
        """Hand back a slot whose work did not happen (a duplicate, a failed write)."""
        if admission.admitted:
            await self._client.zrem(self._key(admission.subject), admission.slot)

    async def usage(self, subject: str) -> WindowUsage:
        """Current usage without taking a slot."""
        now_ms = int(self._clock() * 1000)
        count = await self._client.zcount(
            self._key(subject), f"({now_ms - self._window_seconds * 1000}", "+inf"
        )
        return WindowUsage(int(count), self._limit, self._window_seconds)
