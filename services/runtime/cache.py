"""Per-process TTL caches whose misses are fetched once however many callers wait (single flight).

Readiness under a probe storm, the gate's signal and escalation reads, the
pipeline's market lookups and the key store all read something that changes
rarely and costs a network round trip; each used to carry its own cache. This
is the one they share:

- a value is reused for `ttl_seconds` after it was fetched (0 disables
  reuse, leaving only the single flight);
- concurrent misses of one key share one fetch, run as its own task, so a
  caller that gives up (timeout, cancelled RPC) does not cancel the others';
- a fetch that raises is not cached: every waiter gets the exception and the
  next call tries again (a source that wants its failures cached returns
  them as values, as the gate's signals do);
- the number of entries is bounded (oldest first out), so a flood of
  distinct keys cannot grow the process without limit;
- with `refresh_ahead`, a value read in the second half of its life is
  refetched by one background task while it is still served, so under
  steady reads no caller waits for a refetch (the gate's Preflight used to
  stall every call in flight for a signal refresh's round trips), and no
  value is served past its TTL: a refresh that fails leaves the value to
  expire and the next read to fetch as without it.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_MAX_ENTRIES = 1024


class TtlCache(Generic[K, V]):
    """Values by key for `ttl_seconds`, each miss fetched by one task; bounded, per instance."""

    def __init__(
        self,
        ttl_seconds: float,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
        refresh_ahead: bool = False,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._refresh_ahead = refresh_ahead
        # key -> (expires_at, value), oldest store first.
        self._values: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._in_flight: dict[K, asyncio.Task[V]] = {}

    def fresh(self, key: K, refresh: Callable[[], Awaitable[V]] | None = None) -> V | None:
        """The cached value of `key` while it is fresh, else None; never waits.

        With `refresh` (and `refresh_ahead`), a value in the second half of its life
        starts its background refetch, as `get` does."""
        cached = self._values.get(key)
        if cached is not None and self._live(key, cached[0], refresh):
            return cached[1]
        return None

    async def get(self, key: K, fetch: Callable[[], Awaitable[V]]) -> V:
        """The fresh value of `key`, or the result of the one `fetch()` running for it."""
        cached = self._values.get(key)
        if cached is not None and self._live(key, cached[0], fetch):
            return cached[1]
        return await asyncio.shield(self._in_flight.get(key) or self._start_fetch(key, fetch))

    def _live(self, key: K, expires_at: float, refresh: Callable[[], Awaitable[V]] | None) -> bool:
        """Whether a value expiring at `expires_at` may be served; starts its refresh-ahead."""
        remaining = expires_at - self._clock()
        if remaining <= 0:
            return False
        if (
            self._refresh_ahead
            and refresh is not None
            and remaining < self._ttl / 2
            and key not in self._in_flight
        ):
            self._start_fetch(key, refresh)
        return True

    def _start_fetch(self, key: K, fetch: Callable[[], Awaitable[V]]) -> asyncio.Task[V]:
        task = asyncio.create_task(self._fetch_and_store(key, fetch))
        # Retrieve a failure even when every waiter has gone (or, refreshing ahead, none
        # waits), so it is not reported as "never retrieved"; waiters still get it raised.
        task.add_done_callback(_retrieve)
        self._in_flight[key] = task
        return task

    def update(self, key: K, change: Callable[[V], V]) -> None:
        """Apply `change` to the cached value of `key`, if any, keeping its expiry.

        For a process's own writes: folding them in keeps its cached state
        current without a re-read (other processes see them a TTL later).
        """
        cached = self._values.get(key)
        if cached is not None:
            self._values[key] = (cached[0], change(cached[1]))

    def forget(self, key: K) -> None:
        """Drop the cached value of `key` (e.g. a revoked key), so the next get fetches."""
        self._values.pop(key, None)

    async def _fetch_and_store(self, key: K, fetch: Callable[[], Awaitable[V]]) -> V:
        try:
            value = await fetch()
        finally:
            del self._in_flight[key]
        self._store(key, value)
        return value

    def _store(self, key: K, value: V) -> None:
        if self._ttl <= 0:
            return
        now = self._clock()
        for stale in [k for k, (expires, _) in self._values.items() if expires <= now]:
            del self._values[stale]
        self._values[key] = (now + self._ttl, value)
        self._values.move_to_end(key)
        while len(self._values) > self._max_entries:
            self._values.popitem(last=False)


class SingleFlightCache(Generic[V]):
    """One value (no key) from `compute`, reused for `ttl_seconds`; readiness's evaluation."""

    def __init__(
        self,
        compute: Callable[[], Awaitable[V]],
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._compute = compute
        self._cache: TtlCache[tuple[()], V] = TtlCache(ttl_seconds, max_entries=1, clock=clock)

    async def get(self) -> V:
        return await self._cache.get((), self._compute)


def _retrieve(task: asyncio.Task[object]) -> None:
    if not task.cancelled():
        task.exception()
