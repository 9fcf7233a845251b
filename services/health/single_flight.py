"""A value cached for a short time and computed by at most one task at a time.

Under a probe storm every caller within the cache window gets the same answer
and concurrent callers after it expires share one in-flight evaluation, so
the database sees a few queries per second however many probes arrive.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlightCache(Generic[T]):
    def __init__(
        self,
        compute: Callable[[], Awaitable[T]],
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._compute = compute
        self._ttl = ttl_seconds
        self._clock = clock
        self._value: T | None = None
        self._computed_at = float("-inf")
        self._in_flight: asyncio.Task[T] | None = None

    async def get(self) -> T:
        if self._value is not None and self._clock() - self._computed_at < self._ttl:
            return self._value
        if self._in_flight is None:
            self._in_flight = asyncio.create_task(self._refresh())
        return await asyncio.shield(self._in_flight)

    async def _refresh(self) -> T:
        try:
            value = await self._compute()
            self._value = value
            self._computed_at = self._clock()
            return value
        finally:
            self._in_flight = None
