"""The shared single-flight TTL cache: one fetch per key and window, shared by all waiters."""

from __future__ import annotations

import asyncio

import pytest

from services.runtime.cache import SingleFlightCache, TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Source:
    """Counts fetches; each answers `<key>:<call number>`."""

    def __init__(self) -> None:
        self.calls = 0

    async def fetch(self, key: str) -> str:
        self.calls += 1
        return f"{key}:{self.calls}"


async def test_concurrent_callers_share_one_evaluation() -> None:
    calls = 0
    gate = asyncio.Event()

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return calls

    cache = SingleFlightCache(compute, ttl_seconds=1.0)
    waiters = [asyncio.create_task(cache.get()) for _ in range(100)]
    await asyncio.sleep(0)
    gate.set()
    assert set(await asyncio.gather(*waiters)) == {1}
    assert calls == 1


async def test_value_is_reused_within_the_window_and_refreshed_after() -> None:
    clock = Clock()
    calls = 0

    async def compute() -> int:
        nonlocal calls
        calls += 1
        return calls

    cache = SingleFlightCache(compute, ttl_seconds=1.0, clock=clock)
    assert await cache.get() == 1
    clock.now = 0.99
    assert await cache.get() == 1
    clock.now = 1.0
    assert await cache.get() == 2


async def test_failed_evaluation_is_not_cached() -> None:
    attempts = 0

    async def compute() -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("boom")
        return attempts

    cache = SingleFlightCache(compute, ttl_seconds=1.0)
    with pytest.raises(RuntimeError, match="boom"):
        await cache.get()
    assert await cache.get() == 2


async def test_keys_are_cached_apart() -> None:
    source = Source()
    cache: TtlCache[str, str] = TtlCache(1.0, clock=Clock())
    assert await cache.get("a", lambda: source.fetch("a")) == "a:1"
    assert await cache.get("b", lambda: source.fetch("b")) == "b:2"
    assert await cache.get("a", lambda: source.fetch("a")) == "a:1"


async def test_concurrent_misses_of_one_key_share_one_fetch() -> None:
    gate = asyncio.Event()
    calls = 0

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return calls

    cache: TtlCache[str, int] = TtlCache(1.0)
    waiters = [asyncio.create_task(cache.get("k", fetch)) for _ in range(50)]
    await asyncio.sleep(0)
    gate.set()
    assert set(await asyncio.gather(*waiters)) == {1}
    assert calls == 1


async def test_a_caller_that_gives_up_does_not_cancel_the_others_fetch() -> None:
    gate = asyncio.Event()

    async def fetch() -> str:
        await gate.wait()
        return "value"

    cache: TtlCache[str, str] = TtlCache(1.0)
    impatient = asyncio.create_task(cache.get("k", fetch))
    patient = asyncio.create_task(cache.get("k", fetch))
    await asyncio.sleep(0)
    impatient.cancel()
    gate.set()
    assert await patient == "value"
    assert impatient.cancelled()


async def test_zero_ttl_reuses_nothing_but_still_shares_a_running_fetch() -> None:
    source = Source()
    cache: TtlCache[str, str] = TtlCache(0.0)
    first, second = await asyncio.gather(
        cache.get("k", lambda: source.fetch("k")), cache.get("k", lambda: source.fetch("k"))
    )
    assert first == second == "k:1"
    assert await cache.get("k", lambda: source.fetch("k")) == "k:2"


async def test_fresh_answers_only_from_the_cache() -> None:
    clock = Clock()
    source = Source()
    cache: TtlCache[str, str] = TtlCache(1.0, clock=clock)
    assert cache.fresh("k") is None
    await cache.get("k", lambda: source.fetch("k"))
    assert cache.fresh("k") == "k:1"
    clock.now = 1.0
    assert cache.fresh("k") is None
    assert source.calls == 1


async def test_the_oldest_entry_leaves_when_the_bound_is_reached() -> None:
    source = Source()
    cache: TtlCache[str, str] = TtlCache(10.0, max_entries=2, clock=Clock())
    await cache.get("a", lambda: source.fetch("a"))
    await cache.get("b", lambda: source.fetch("b"))
    await cache.get("c", lambda: source.fetch("c"))
    assert cache.fresh("a") is None
    assert cache.fresh("b") == "b:2"
    assert cache.fresh("c") == "c:3"


async def test_update_changes_a_cached_value_and_keeps_its_expiry() -> None:
    clock = Clock()
    source = Source()
    cache: TtlCache[str, str] = TtlCache(1.0, clock=clock)
    await cache.get("k", lambda: source.fetch("k"))
    cache.update("k", lambda value: value + "+own write")
    cache.update("absent", lambda value: value + "+own write")
    assert cache.fresh("k") == "k:1+own write"
    assert cache.fresh("absent") is None
    clock.now = 1.0
    assert cache.fresh("k") is None


async def test_forget_makes_the_next_get_fetch() -> None:
    source = Source()
    cache: TtlCache[str, str] = TtlCache(10.0, clock=Clock())
    await cache.get("k", lambda: source.fetch("k"))
    cache.forget("k")
    assert await cache.get("k", lambda: source.fetch("k")) == "k:2"


async def _settled() -> None:
    """Let background fetches run to completion (they never wait on anything here)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_refresh_ahead_serves_a_value_in_its_second_half_and_refetches_it_behind() -> None:
    clock = Clock()
    source = Source()
    cache: TtlCache[str, str] = TtlCache(1.0, clock=clock, refresh_ahead=True)
    assert await cache.get("k", lambda: source.fetch("k")) == "k:1"
    clock.now = 0.4
    assert await cache.get("k", lambda: source.fetch("k")) == "k:1"
    await _settled()
    assert source.calls == 1
    clock.now = 0.6
    assert await cache.get("k", lambda: source.fetch("k")) == "k:1"
    await _settled()
    assert source.calls == 2
    assert await cache.get("k", lambda: source.fetch("k")) == "k:2"


async def test_refresh_ahead_runs_one_refetch_however_many_read_meanwhile() -> None:
    clock = Clock()
    release = asyncio.Event()
    calls = 0

    async def slow() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return calls

    cache: TtlCache[str, int] = TtlCache(1.0, clock=clock, refresh_ahead=True)
    release.set()
    assert await cache.get("k", slow) == 1
    release.clear()
    clock.now = 0.7
    assert [await cache.get("k", slow) for _ in range(10)] == [1] * 10
    assert cache.fresh("k", slow) == 1
    release.set()
    await _settled()
    assert calls == 2


async def test_refresh_ahead_never_serves_a_value_past_its_ttl_when_refetches_fail() -> None:
    clock = Clock()
    failing = False
    calls = 0

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        if failing:
            raise RuntimeError("source down")
        return calls

    cache: TtlCache[str, int] = TtlCache(1.0, clock=clock, refresh_ahead=True)
    assert await cache.get("k", fetch) == 1
    failing = True
    clock.now = 0.8
    assert await cache.get("k", fetch) == 1
    await _settled()
    clock.now = 1.0
    assert cache.fresh("k") is None
    with pytest.raises(RuntimeError):
        await cache.get("k", fetch)


async def test_without_refresh_ahead_a_value_is_refetched_only_once_expired() -> None:
    clock = Clock()
    source = Source()
    cache: TtlCache[str, str] = TtlCache(1.0, clock=clock)
    await cache.get("k", lambda: source.fetch("k"))
    clock.now = 0.9
    assert await cache.get("k", lambda: source.fetch("k")) == "k:1"
    await _settled()
    assert source.calls == 1
