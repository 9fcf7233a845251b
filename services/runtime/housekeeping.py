"""One housekeeping loop per service: delete what has outlived its use, on a schedule.

Expired confirmation tokens, the gate's request-id answers past their window,
relayed outbox rows past their retention and acknowledged stream entries would
otherwise grow without bound. Each service names its chores (a coroutine that
deletes and returns how many items it removed); `spawn_housekeeping` runs them
all every `config.housekeeping.interval_seconds` as one background task. A
store that is down skips that chore for the round instead of crashing the loop:
the next round catches up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from redis.exceptions import RedisError

from services.runtime.db import DATABASE_DOWN
from services.runtime.server import Runtime
from services.runtime.supervision import cancellation_requested

log = logging.getLogger(__name__)

Chore = Callable[[], Awaitable[int]]

_STORE_DOWN: tuple[type[Exception], ...] = (*DATABASE_DOWN, RedisError)


class Housekeeping:
    """Named chores run in order, one round at a time."""

    def __init__(self, chores: Mapping[str, Chore], interval_seconds: float) -> None:
        self._chores = dict(chores)
        self._interval = interval_seconds

    async def run_once(self) -> dict[str, int]:
        """One round: every chore once; returns items removed by chore (skipped ones absent)."""
        removed: dict[str, int] = {}
        for name, chore in self._chores.items():
            try:
                removed[name] = await chore()
            except _STORE_DOWN as exc:
                log.warning(
                    "housekeeping %s skipped: store unavailable (%s)", name, type(exc).__name__
                )
            if cancellation_requested():
                # A stream trim in flight at shutdown, its cancellation swallowed by
                # redis-py: without this the loop would sleep a whole interval.
                raise asyncio.CancelledError
            if removed.get(name):
                log.info("housekeeping %s removed %d item(s)", name, removed[name])
        return removed

    async def run(self) -> None:
        """Rounds forever, `interval_seconds` apart (the first at start-up)."""
        while True:
            await self.run_once()
            await asyncio.sleep(self._interval)


def spawn_housekeeping(runtime: Runtime, chores: Mapping[str, Chore]) -> Housekeeping:
    """Build the service's housekeeping and run it as `<service>-housekeeping`."""
    housekeeping = Housekeeping(chores, runtime.config.housekeeping.interval_seconds)
    runtime.spawn(f"{runtime.config.service}-housekeeping", housekeeping.run)
    return housekeeping
