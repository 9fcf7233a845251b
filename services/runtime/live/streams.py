"""What every live transport (SSE, gRPC) does: admit a subscriber, then follow its channel.

One admission for both, so the same request gets the same answer on HTTP and
gRPC (docs/SPEC.md §11): a missing or oversized channel or an out-of-range
resume point is invalid input, no or an invalid key unauthenticated, an
unknown channel or one the key may not see `CHANNEL_FORBIDDEN`, all before
the stream opens. One follow loop for both, so resume, deduplication by seq
and heartbeats cannot drift apart between transports.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from services.runtime.errors import Forbidden, InvalidInput
from services.runtime.keys.access import Access
from services.runtime.keys.principal import Principal
from services.runtime.live.bus import BACKPRESSURE_DROP, LiveBus, LiveSubscription
from services.runtime.live.channels import (
    MAX_CHANNEL_LENGTH,
    ChannelError,
    may_subscribe,
    validate_channel,
)
from services.runtime.live.envelope import Envelope

# The largest resume point accepted: 18 decimal digits, within Redis' INCR range.
MAX_LAST_EVENT_ID = 10**18 - 1


def requested_channel(raw: str | None) -> str:
    """The channel a subscriber asked for, or the error both transports answer."""
    if not raw:
        raise InvalidInput("MISSING_CHANNEL", "a channel is required", field="channel")
    if len(raw) > MAX_CHANNEL_LENGTH:
        raise InvalidInput(
            "INVALID_CHANNEL",
            f"channel must be at most {MAX_CHANNEL_LENGTH} characters",
            field="channel",
        )
    try:
        return validate_channel(raw)
    except ChannelError as exc:
        raise Forbidden("CHANNEL_FORBIDDEN", str(exc)) from exc


def checked_last_event_id(value: int, field: str) -> int:
    """`value` as a resume point (0: none); `INVALID_LAST_EVENT_ID` when out of range."""
    if not 0 <= value <= MAX_LAST_EVENT_ID:
        raise InvalidInput(
            "INVALID_LAST_EVENT_ID",
            f"{field} must be an integer between 0 and {MAX_LAST_EVENT_ID}",
            field=field,
        )
    return value


async def admit(access: Access, presented: str | None, channel: str) -> Principal:
    """The subscriber's principal if its key may open `channel` (already validated)."""
    principal = await access.authenticate(presented)
    if not may_subscribe(principal, channel):
        raise Forbidden("CHANNEL_FORBIDDEN", "this key may not subscribe to this channel")
    return principal


async def follow(
    bus: LiveBus, subscription: LiveSubscription, last_seq: int, heartbeat_seconds: float
) -> AsyncIterator[Envelope | None]:
    """The retained events after `last_seq`, then the subscription's, each seq once.

    None is a heartbeat: nothing arrived for `heartbeat_seconds`. Ends when the
    bus closes (shutdown). The subscription must be registered before this
    starts, so an event published during the resume read is in one of the two
    and the seq check drops the other copy. A drop warning is always passed on:
    its seq is that of the last event it stands for, not a new position.
    A Redis problem reading the retained list raises RedisError.
    """
    if last_seq:
        for kept in await bus.retained_after(subscription.channel, last_seq):
            yield kept
            last_seq = kept.seq
    while True:
        try:
            async with asyncio.timeout(heartbeat_seconds):
                envelope = await subscription.next()
        except TimeoutError:
            yield None
            continue
        if envelope is None:
            return
        if envelope.event != BACKPRESSURE_DROP:
            if envelope.seq <= last_seq:
                continue
            last_seq = envelope.seq
        yield envelope
