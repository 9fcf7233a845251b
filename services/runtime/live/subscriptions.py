"""The Redis pub/sub subscriptions of one process, kept equal to what its readers want.

A process subscribes to a live channel only while something in it reads that
channel: one SUBSCRIBE per channel with an open stream, and one pattern per
channel family (`jobs.*`) while a listener of that family has someone waiting.
Redis then sends a process only messages it reads. One pattern on every channel
made the gate and the pipeline API receive, and drop, every job event the
workers publish: about 45 µs of CPU per invoice between them
(docs/performance.md).

One task sends the changes, so a quick unsubscribe and resubscribe cannot reach
Redis in the wrong order. Redis confirms each (P)SUBSCRIBE with a message that
the pub/sub reader hands to `acknowledged`; a subscription counts as live once
every SUBSCRIBE sent for it is confirmed, which is what a stream waits for
before it tells its client it is registered.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from enum import Enum

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

_RETRY_SECONDS = 1.0


class Kind(Enum):
    """What a Redis subscription names: one channel, or a glob pattern of channels."""

    CHANNEL = "channel"
    PATTERN = "pattern"


_Name = tuple[Kind, str]


class SubscriptionSync:
    """Wanted subscriptions (by reference count) → the pub/sub connection's, by one task."""

    def __init__(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub
        self._wanted: Counter[_Name] = Counter()
        self._sent: set[_Name] = set()
        # SUBSCRIBEs sent whose confirmation has not arrived yet.
        self._unconfirmed: Counter[_Name] = Counter()
        self._waiters: dict[_Name, list[asyncio.Future[None]]] = {}
        self._changed = asyncio.Event()
        self._closed = False

    def want(self, kind: Kind, name: str) -> None:
        """One more reader of `name`; the first makes the task subscribe."""
        key = (kind, name)
        self._wanted[key] += 1
        if self._wanted[key] == 1:
            self._changed.set()

    def unwant(self, kind: Kind, name: str) -> None:
        """One reader fewer; the last makes the task unsubscribe."""
        key = (kind, name)
        if self._wanted[key] <= 1:
            del self._wanted[key]
            self._changed.set()
        else:
            self._wanted[key] -= 1

    async def confirmed(self, kind: Kind, name: str, timeout_seconds: float) -> None:
        """Return once Redis has confirmed the subscription to `name` (want it first).

        Raises TimeoutError when no confirmation comes within `timeout_seconds`.
        """
        key = (kind, name)
        if self._is_live(key):
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(waiter)
        try:
            async with asyncio.timeout(timeout_seconds):
                await waiter
        finally:
            waiting = self._waiters.get(key, [])
            if waiter in waiting:
                waiting.remove(waiter)
            if not waiting:
                self._waiters.pop(key, None)

    def acknowledged(self, kind: Kind, name: str) -> None:
        """Redis confirmed one (P)SUBSCRIBE of `name` (the reader saw its message).

        A reconnect makes redis-py subscribe again to everything, so confirmations
        may outnumber the SUBSCRIBEs sent here; they never count below zero.
        """
        key = (kind, name)
        if self._unconfirmed[key] > 0:
            self._unconfirmed[key] -= 1
        self._wake_if_live(key)

    def _is_live(self, key: _Name) -> bool:
        return key in self._sent and self._unconfirmed[key] == 0

    def _wake_if_live(self, key: _Name) -> None:
        if self._is_live(key):
            for waiter in self._waiters.pop(key, []):
                if not waiter.done():
                    waiter.set_result(None)

    def close(self) -> None:
        """Stop the task; waiters still waiting time out."""
        self._closed = True
        self._changed.set()

    async def run(self) -> None:
        """Background task: send the differences between wanted and sent until closed."""
        while not self._closed:
            await self._changed.wait()
            self._changed.clear()
            if self._closed:
                return
            try:
                await self._send_changes()
            except (RedisError, OSError) as exc:
                log.warning("live subscriptions not updated (%s); retrying", type(exc).__name__)
                self._changed.set()
                await asyncio.sleep(_RETRY_SECONDS)

    async def _send_changes(self) -> None:
        for kind, subscribe, unsubscribe in (
            (Kind.CHANNEL, self._pubsub.subscribe, self._pubsub.unsubscribe),
            (Kind.PATTERN, self._pubsub.psubscribe, self._pubsub.punsubscribe),
        ):
            wanted = {name for k, name in self._wanted if k is kind}
            sent = {name for k, name in self._sent if k is kind}
            if dropped := sorted(sent - wanted):
                await unsubscribe(*dropped)
                self._sent.difference_update((kind, name) for name in dropped)
            if added := sorted(wanted - sent):
                # Counted before sending: the reader may see a confirmation before the
                # send returns.
                self._unconfirmed.update((kind, name) for name in added)
                try:
                    await subscribe(*added)
                except BaseException:
                    self._unconfirmed.subtract((kind, name) for name in added)
                    raise
                for name in added:
                    self._sent.add((kind, name))
                    self._wake_if_live((kind, name))
