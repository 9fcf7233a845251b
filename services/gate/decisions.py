"""Live gate decisions over Redis pub/sub, so every replica's watchers see every decision.

A Check publishes one envelope (docs/SPEC.md §8: `v, event, channel, seq, ts, ok,
error_code, data`) on the `gate.decisions` channel; `seq` comes from one
Redis counter, so it increases across replicas. Each gate process holds one
subscription and fans messages out to its local watchers, each with a
bounded buffer: when a slow watcher's buffer is full the oldest event is
dropped (and counted) instead of slowing the publisher. `close()` ends every
watcher's stream, so an open WatchDecisions never holds up shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.runtime.redis_client import RedisKeys

log = logging.getLogger(__name__)

CHANNEL = "gate.decisions"
ENVELOPE_VERSION = 1
DEFAULT_BUFFER = 200
_RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True)
class DecisionNotice:
    """One published decision, as watchers receive it."""

    seq: int
    ts: datetime
    release: str
    verdict: str
    decision: str
    reasons: tuple[str, ...]
    override_result: str

    def envelope(self) -> dict[str, Any]:
        """The docs/SPEC.md §8 live envelope of this notice."""
        return {
            "v": ENVELOPE_VERSION,
            "event": "gate.decision",
            "channel": CHANNEL,
            "seq": self.seq,
            "ts": self.ts.isoformat(),
            "ok": True,
            "error_code": None,
            "data": {
                "release": self.release,
                "verdict": self.verdict,
                "decision": self.decision,
                "reasons": list(self.reasons),
                "override_result": self.override_result,
            },
        }

    @classmethod
    def from_envelope(cls, raw: bytes | str) -> DecisionNotice:
        """Parse a published envelope; raises `ValueError` on anything malformed."""
        try:
            message = json.loads(raw)
            data = message["data"]
            if message["v"] != ENVELOPE_VERSION or message["channel"] != CHANNEL:
                raise ValueError("unexpected envelope version or channel")
            return cls(
                seq=int(message["seq"]),
                ts=datetime.fromisoformat(message["ts"]),
                release=str(data["release"]),
                verdict=str(data["verdict"]),
                decision=str(data["decision"]),
                reasons=tuple(str(r) for r in data["reasons"]),
                override_result=str(data["override_result"]),
            )
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"malformed decision envelope: {exc}") from exc


class Subscription:
    """One watcher's bounded buffer; registered with the bus from creation until `close()`."""

    def __init__(self, bus: DecisionBus, buffer: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[DecisionNotice | None] = asyncio.Queue(maxsize=buffer)
        self._dropped = 0

    def offer(self, notice: DecisionNotice | None) -> None:
        """Enqueue without waiting; a full buffer drops its oldest event."""
        while True:
            try:
                self._queue.put_nowait(notice)
                return
            except asyncio.QueueFull:
                self._queue.get_nowait()
                self._dropped += 1

    async def next(self) -> DecisionNotice | None:
        """The next notice, or None once the bus has closed."""
        notice = await self._queue.get()
        if self._dropped:
            log.warning("a slow decision watcher dropped %d events", self._dropped)
            self._dropped = 0
        return notice

    def close(self) -> None:
        self._bus.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class DecisionBus:
    """Publishes decisions and fans the channel out to this process's watchers."""

    def __init__(
        self, client: aioredis.Redis, keys: RedisKeys, *, buffer: int = DEFAULT_BUFFER
    ) -> None:
        self._client = client
        self._channel = keys.key("live", CHANNEL)
        self._seq_key = keys.key("live", CHANNEL, "seq")
        self._buffer = buffer
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._watchers: set[Subscription] = set()
        self._closed = asyncio.Event()

    async def start(self) -> None:
        """Subscribe before the server accepts calls, so no early decision is missed."""
        await self._pubsub.subscribe(self._channel)

    async def publish(
        self,
        *,
        ts: datetime,
        release: str,
        verdict: str,
        decision: str,
        reasons: Sequence[str],
        override_result: str,
    ) -> None:
        """Publish one decision; fail-open (a Redis problem is logged, never raised)."""
        try:
            seq = int(await self._client.incr(self._seq_key))
            notice = DecisionNotice(
                seq, ts, release, verdict, decision, tuple(reasons), override_result
            )
            await self._client.publish(self._channel, json.dumps(notice.envelope()))
        except RedisError as exc:
            log.warning("could not publish a gate decision: %s", type(exc).__name__)

    async def run(self) -> None:
        """Background task: read the subscription and hand each notice to every watcher."""
        failures = 0
        while not self._closed.is_set():
            try:
                message = await self._pubsub.get_message(timeout=1.0)
                failures = 0
            except (RedisError, OSError) as exc:
                if self._closed.is_set():
                    return
                delay = _RETRY_SECONDS[min(failures, len(_RETRY_SECONDS) - 1)]
                failures += 1
                log.warning("decision subscription failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(delay)
                continue
            if message is None or message.get("type") != "message":
                continue
            try:
                notice = DecisionNotice.from_envelope(message["data"])
            except ValueError as exc:
                log.warning("ignored a malformed decision message: %s", exc)
                continue
            for watcher in tuple(self._watchers):
                watcher.offer(notice)

    def subscribe(self) -> Subscription:
        """A subscription receiving every notice published from now on, until the bus closes."""
        subscription = Subscription(self, self._buffer)
        if self._closed.is_set():
            subscription.offer(None)
        else:
            self._watchers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop delivering to `subscription` (idempotent)."""
        self._watchers.discard(subscription)

    async def close(self) -> None:
        """End every watcher's stream and drop the subscription; safe to call twice."""
        if self._closed.is_set():
            return
        self._closed.set()
        for watcher in tuple(self._watchers):
            watcher.offer(None)
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
