"""The housekeeping loop stops when its service stops, even if a driver swallows the cancel."""

from __future__ import annotations

import asyncio

import pytest

from services.runtime.housekeeping import Housekeeping


async def test_a_chore_that_swallows_its_cancellation_does_not_keep_the_loop_alive() -> None:
    """Fault: redis-py sometimes turns the cancellation of a call in flight into a normal
    return (seen with the stream trim at shutdown). The loop must still end at once instead
    of sleeping its interval (an hour here)."""
    started = asyncio.Event()

    async def swallowing_chore() -> int:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            return 0
        return 0

    loop = asyncio.create_task(Housekeeping({"trim": swallowing_chore}, 3600).run())
    await started.wait()
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(loop, timeout=5)
