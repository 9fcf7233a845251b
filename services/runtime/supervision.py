"""Background tasks owned by a service process: started, watched, cancelled at shutdown.

A bare `asyncio.create_task` that dies of an unexpected exception is lost: asyncio
only mentions it when the task is garbage-collected, and the process keeps
answering as if its workers, relay or sampler were still running. The supervisor
logs such a crash once, records it (liveness reports it) and calls `on_crash`,
which the server uses to turn grpc.health.v1 NOT_SERVING. Its `aclose()` goes on
the process's exit stack, so every task is cancelled and awaited on shutdown and
on a failed start alike.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

CrashHandler = Callable[[], Awaitable[None]]


def cancellation_requested() -> bool:
    """True once the running task has been asked to stop.

    redis-py can swallow the cancellation of a call in flight (a stream trim or a
    pub/sub read at shutdown) and return as if Redis had answered; a loop around
    such a call checks this and raises `CancelledError` itself, or the service's
    stop waits on a task that never ends.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Supervisor:
    """Owns a process's background tasks; `failures` maps a crashed task to its exception."""

    def __init__(self, on_crash: CrashHandler | None = None) -> None:
        self.failures: dict[str, str] = {}
        self._on_crash = on_crash
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    def spawn(self, name: str, work: Callable[[], Awaitable[object]]) -> asyncio.Task[None]:
        """Run `work()` as the task `name` until it returns, crashes or the supervisor closes."""
        if self._closed:
            raise RuntimeError(f"cannot start {name!r}: the process is shutting down")
        task = asyncio.create_task(self._guard(name, work), name=name)
        self._tasks.append(task)
        return task

    async def _guard(self, name: str, work: Callable[[], Awaitable[object]]) -> None:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Not re-raised: it is logged and recorded here, once, and nobody awaits the task.
            log.exception("background task %s crashed", name, extra={"task": name})
            self.failures[name] = type(exc).__name__
            if self._on_crash is not None:
                await self._on_crash()

    async def aclose(self) -> None:
        """Cancel every task and wait for them; later calls return at once."""
        self._closed = True
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(*tasks)


async def cancel_and_wait(*tasks: asyncio.Task[None]) -> None:
    """Cancel `tasks` and wait until they have ended (already ended ones are left as they are)."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
