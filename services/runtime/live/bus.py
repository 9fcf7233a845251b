"""Publishing live events and fanning them out to this process's subscribers.

Publishing is one Lua call per channel, for one envelope or a batch: INCRBY the
channel's counter (so `seq` increases across replicas), append the envelopes to
the channel's capped retained list (for Last-Event-ID resume) and PUBLISH each.
Every process holds one pub/sub connection subscribed to exactly what it reads
(`subscriptions.py`): each channel with an open stream here, and a listener's
channel family while the listener has someone waiting. It hands each envelope
to its local subscribers, so a subscriber on any replica sees events published
by all, and a process with no reader receives nothing.

A subscriber's buffer is bounded: when full the oldest event is dropped and
counted, and the next read first delivers one `backpressure_drop` event with
that count. Offering never waits, so a slow subscriber never slows the
process's reader or any producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from services.runtime.config.operations import LiveSettings
from services.runtime.errors import Unavailable
from services.runtime.live.channels import validate_channel
from services.runtime.live.envelope import Envelope, EnvelopeError, parse_envelope
from services.runtime.live.metrics import LiveMetrics
from services.runtime.live.subscriptions import Kind, SubscriptionSync
from services.runtime.redis_client import RedisKeys
from services.runtime.supervision import cancellation_requested

log = logging.getLogger(__name__)

BACKPRESSURE_DROP = "live.backpressure_drop"
_RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)
_SEQ_PLACEHOLDER = ',"seq":0,'

# KEYS: seq counter, retained list, pub/sub channel. ARGV: the retained length, then
# for each envelope its JSON before and after the seq. Returns the last seq given.
_PUBLISH_SCRIPT = """
local n = (#ARGV - 1) / 2
local last = redis.call('INCRBY', KEYS[1], n)
local payloads = {}
for i = 1, n do
  payloads[i] = ARGV[2 * i] .. ',"seq":' .. (last - n + i) .. ',' .. ARGV[2 * i + 1]
end
redis.call('RPUSH', KEYS[2], unpack(payloads))
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[1]), -1)
for i = 1, n do
  redis.call('PUBLISH', KEYS[3], payloads[i])
end
return last
"""
# Envelopes per script call: Lua's unpack takes a few thousand values at most.
_MAX_PER_CALL = 500


class LiveSubscription:
    """One subscriber's bounded buffer on one channel; registered until `close()`."""

    def __init__(self, bus: LiveBus, channel: str, buffer: int) -> None:
        self._bus = bus
        self.channel = channel
        self._events: deque[Envelope] = deque()
        self._buffer = buffer
        self._dropped = 0
        self._last_dropped_seq = 0
        self._wake = asyncio.Event()
        self._closed = False

    def offer(self, envelope: Envelope) -> None:
        """Enqueue without waiting; a full buffer drops (and counts) its oldest event."""
        if len(self._events) >= self._buffer:
            oldest = self._events.popleft()
            self._dropped += 1
            self._bus.metrics.dropped(self.channel)
            self._last_dropped_seq = oldest.seq
        self._events.append(envelope)
        self._wake.set()

    def end(self) -> None:
        self._closed = True
        self._wake.set()

    async def next(self) -> Envelope | None:
        """The next envelope (a drop warning first if any were dropped); None once closed.

        Callers bound the wait with `asyncio.timeout` (a transport's heartbeat interval).
        """
        while True:
            if self._dropped:
                count, self._dropped = self._dropped, 0
                return Envelope(
                    event=BACKPRESSURE_DROP,
                    channel=self.channel,
                    seq=self._last_dropped_seq,
                    ts=datetime.now(UTC),
                    ok=False,
                    error_code="BACKPRESSURE_DROP",
                    data={"dropped": count},
                )
            if self._events:
                return self._events.popleft()
            if self._closed:
                return None
            self._wake.clear()
            await self._wake.wait()

    @property
    def pending(self) -> int:
        """Events waiting in the buffer (not counting a pending drop warning)."""
        return len(self._events)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._bus.unsubscribe(self)

    def __enter__(self) -> LiveSubscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@dataclass(frozen=True)
class Staged:
    """One envelope to publish: its event name, data, and outcome."""

    event: str
    data: dict[str, Any]
    ok: bool = True
    error_code: str | None = None


class LivePublisher:
    """Publishes envelopes on live channels: on its own, or staged on a caller's pipeline.

    A producer that already makes one pipelined Redis call (the worker's
    acknowledgement) stages its events there, so publishing adds no round trip,
    and a batch's events on one channel are one script call, not one each; the
    script is sent with EVAL so a pipeline needs no SCRIPT EXISTS first.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        keys: RedisKeys,
        settings: LiveSettings,
        metrics: LiveMetrics,
    ) -> None:
        self._client = client
        self._keys = keys
        self._settings = settings
        self._metrics = metrics
        self._script = client.register_script(_PUBLISH_SCRIPT)

    def _keys_of(self, channel: str) -> list[str]:
        return [
            self._keys.key("livemeta", channel, "seq"),
            self._keys.key("livemeta", channel, "retained"),
            self._keys.key("live", channel),
        ]

    @staticmethod
    def _drafts(channel: str, events: Sequence[Staged]) -> list[str]:
        """Each envelope's JSON before and after its seq, in order (a flat list)."""
        now = datetime.now(UTC)
        parts: list[str] = []
        for event in events:
            draft = Envelope(
                event=event.event,
                channel=channel,
                seq=0,
                ts=now,
                data=event.data,
                ok=event.ok,
                error_code=event.error_code,
            ).to_json()
            head, found, tail = draft.rpartition(_SEQ_PLACEHOLDER)
            if not found:
                raise EnvelopeError("could not place seq in the envelope")
            parts += (head, tail)
        return parts

    async def publish(
        self,
        channel: str,
        event: str,
        data: dict[str, Any],
        *,
        ok: bool = True,
        error_code: str | None = None,
    ) -> int:
        """Publish one envelope and answer its seq; a Redis problem raises RedisError."""
        channel = validate_channel(channel)
        drafts = self._drafts(channel, [Staged(event, data, ok, error_code)])
        seq = await self._script(
            keys=self._keys_of(channel), args=[self._settings.retained_per_channel, *drafts]
        )
        self._metrics.published(channel)
        return int(seq)

    async def last_event(self, channel: str) -> Envelope | None:
        """The newest retained envelope of `channel`, as every replica sees it in Redis.

        None when the channel has none yet (or its newest is unreadable); a Redis
        problem raises RedisError.
        """
        raw = await self._client.lindex(
            self._keys.key("livemeta", validate_channel(channel), "retained"), -1
        )
        if raw is None:
            return None
        try:
            return parse_envelope(raw)
        except EnvelopeError:
            return None

    def stage(self, pipe: Pipeline, events: Iterable[tuple[str, Staged]]) -> None:
        """Queue the publish of `events` (channel, envelope) on `pipe`, in order on each
        channel and one script call per channel; they are sent when the caller executes
        it."""
        by_channel: dict[str, list[Staged]] = {}
        for channel, event in events:
            by_channel.setdefault(validate_channel(channel), []).append(event)
        for channel, staged in by_channel.items():
            keys = self._keys_of(channel)
            for start in range(0, len(staged), _MAX_PER_CALL):
                drafts = self._drafts(channel, staged[start : start + _MAX_PER_CALL])
                pipe.eval(
                    _PUBLISH_SCRIPT, len(keys), *keys, self._settings.retained_per_channel, *drafts
                )
            self._metrics.published(channel, len(staged))


class ListenerInterest:
    """A listener's claim on its channel family: held while it has someone waiting.

    While any hold is taken the bus keeps the family's pattern subscribed; with
    none the process receives nothing for the listener (async intake has no
    waiters, so the pipeline API then gets no job events at all).
    """

    def __init__(self, subscriptions: SubscriptionSync, pattern: str) -> None:
        self._subscriptions = subscriptions
        self._pattern = pattern

    def acquire(self) -> None:
        self._subscriptions.want(Kind.PATTERN, self._pattern)

    def release(self) -> None:
        self._subscriptions.unwant(Kind.PATTERN, self._pattern)


class LiveBus:
    """Publishes envelopes on any live channel and fans out locally what this process reads."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: RedisKeys,
        settings: LiveSettings,
        metrics: LiveMetrics,
    ) -> None:
        self._client = client
        self._keys = keys
        self._settings = settings
        self.metrics = metrics
        self._channel_prefix = keys.key("live", "")
        self._pubsub = client.pubsub()
        self._subscriptions = SubscriptionSync(self._pubsub)
        self.publisher = LivePublisher(client, keys, settings, metrics)
        self._subscribers: dict[str, set[LiveSubscription]] = {}
        # pattern (as Redis reports it) -> the listeners of that channel family
        self._listeners: dict[str, list[Callable[[Envelope], None]]] = {}
        self._last_event_at: dict[str, datetime] = {}
        self._last_seq: dict[str, int] = {}
        self._closed = asyncio.Event()
        self._reading = False

    async def start(self) -> None:
        """Open the pub/sub connection before serving (a Redis problem raises RedisError).

        It is subscribed to one channel nobody publishes on for as long as it lives: a
        pub/sub connection with no subscription makes redis-py check its health with a
        PING whose answer it reads itself, while the reader task reads the same socket.
        """
        await self._pubsub.subscribe(self._keys.key("livemeta", "anchor"))

    async def publish(
        self,
        channel: str,
        event: str,
        data: dict[str, Any],
        *,
        ok: bool = True,
        error_code: str | None = None,
    ) -> int:
        """Publish one envelope and answer its seq; a Redis problem raises RedisError."""
        return await self.publisher.publish(channel, event, data, ok=ok, error_code=error_code)

    async def retained_after(self, channel: str, last_seq: int) -> list[Envelope]:
        """The retained envelopes of `channel` with seq > `last_seq`, oldest first."""
        raw = await self._client.lrange(self._keys.key("livemeta", channel, "retained"), 0, -1)
        found: list[Envelope] = []
        for item in raw:
            try:
                envelope = parse_envelope(item)
            except EnvelopeError:
                continue
            if envelope.seq > last_seq:
                found.append(envelope)
        return found

    def last_event_at(self, channel: str) -> datetime | None:
        """When this process last saw an event on `channel` (for `compute_staleness`); only
        channels someone in this process listens to are tracked."""
        return self._last_event_at.get(channel)

    def last_seq_seen(self, channel: str) -> int:
        """The seq of the last event this process received on `channel` (0: none yet); only
        channels someone in this process listens to are tracked."""
        return self._last_seq.get(channel, 0)

    async def run(self) -> None:
        """Background task: keep the subscriptions as wanted, read them, offer each envelope.

        The subscription's connection is closed here, by its reader, when the task
        ends (cancelled at shutdown or after `close`): closed from `close()` under a
        pending read, redis-py would fail that read and leave its socket unclosed.
        """
        self._reading = True
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._subscriptions.run(), name="live-subscriptions")
                await self._read_until_closed()
                self._subscriptions.close()
        finally:
            self._reading = False
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]

    async def _read_until_closed(self) -> None:
        failures = 0
        while not self._closed.is_set():
            try:
                message = await self._pubsub.get_message(timeout=1.0)
                failures = 0
                if cancellation_requested():
                    raise asyncio.CancelledError
            except (RedisError, OSError) as exc:
                if cancellation_requested():
                    raise asyncio.CancelledError from exc
                if self._closed.is_set():
                    return
                delay = _RETRY_SECONDS[min(failures, len(_RETRY_SECONDS) - 1)]
                failures += 1
                log.warning("live subscription failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(delay)
                continue
            if message is not None:
                self._handle(message)

    def _handle(self, message: dict[str, Any]) -> None:
        """One pub/sub message: a confirmation, a channel's event or a family's event."""
        kind = message["type"]
        if kind == "subscribe":
            self._subscriptions.acknowledged(Kind.CHANNEL, _text(message["channel"]))
        elif kind == "psubscribe":
            self._subscriptions.acknowledged(Kind.PATTERN, _text(message["channel"]))
        elif kind == "message":
            subscribers = self._subscribers.get(
                _text(message["channel"]).removeprefix(self._channel_prefix)
            )
            envelope = self._received(message["data"]) if subscribers else None
            if envelope is not None:
                for subscriber in tuple(subscribers or ()):
                    subscriber.offer(envelope)
        elif kind == "pmessage":
            listeners = self._listeners.get(_text(message["pattern"]), ())
            envelope = self._received(message["data"]) if listeners else None
            if envelope is not None:
                for listener in listeners:
                    listener(envelope)

    def _received(self, data: bytes | str) -> Envelope | None:
        try:
            envelope = parse_envelope(data)
        except EnvelopeError as exc:
            log.warning("ignored a malformed live message: %s", exc)
            return None
        self._last_event_at[envelope.channel] = envelope.ts
        self._last_seq[envelope.channel] = envelope.seq
        return envelope

    def add_listener(self, family: str, listener: Callable[[Envelope], None]) -> ListenerInterest:
        """Call `listener` with every envelope of the `family` channels (`jobs`: every
        tenant's) while its interest is held, so a process needs no second subscription
        of its own for its in-process readers (the pipeline's job waiters)."""
        pattern = self._keys.key("live", f"{family}.*")
        self._listeners.setdefault(pattern, []).append(listener)
        return ListenerInterest(self._subscriptions, pattern)

    async def subscribe(self, channel: str, buffer: int | None = None) -> LiveSubscription:
        """A subscription to events published on `channel` once this returns.

        Returns when Redis has confirmed this process's subscription to the channel;
        503 LIVE_STORE_UNAVAILABLE when it does not within the configured time.
        """
        size = self._settings.subscriber_buffer if buffer is None else buffer
        subscription = LiveSubscription(self, validate_channel(channel), size)
        if self._closed.is_set():
            subscription.end()
            return subscription
        self._subscribers.setdefault(channel, set()).add(subscription)
        self.metrics.stream_opened(channel)
        key = self._keys.key("live", channel)
        self._subscriptions.want(Kind.CHANNEL, key)
        try:
            await self._subscriptions.confirmed(
                Kind.CHANNEL, key, self._settings.subscribe_timeout_seconds
            )
        except BaseException as exc:
            self.unsubscribe(subscription)
            if isinstance(exc, TimeoutError):
                raise Unavailable(
                    "LIVE_STORE_UNAVAILABLE", "the live store could not be read; retry"
                ) from exc
            raise
        return subscription

    def unsubscribe(self, subscription: LiveSubscription) -> None:
        """Stop delivering to `subscription` (idempotent)."""
        group = self._subscribers.get(subscription.channel)
        if group is not None and subscription in group:
            group.discard(subscription)
            self.metrics.stream_closed(subscription.channel)
            self._subscriptions.unwant(Kind.CHANNEL, self._keys.key("live", subscription.channel))
            if not group:
                del self._subscribers[subscription.channel]

    @property
    def active_subscriptions(self) -> int:
        return sum(len(group) for group in self._subscribers.values())

    async def close(self) -> None:
        """End every subscriber's stream and drop the subscription; safe to call twice."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._subscriptions.close()
        for group in tuple(self._subscribers.values()):
            for subscriber in tuple(group):
                subscriber.end()
        if not self._reading:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]


def _text(name: bytes | str) -> str:
    return name.decode() if isinstance(name, bytes) else name
