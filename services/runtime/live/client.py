"""Client side of `LiveService/Subscribe`: a live channel as an async iterator of envelopes.

Every event is rebuilt into the envelope and checked by `parse_envelope`, the
same rules the publisher applied, so a consumer (gatectl watch, a test, a
dashboard feeder) never reads fields the contract does not promise.
Heartbeats are consumed here. Usage:

    async with live_stream(channel, "jobs.acme", metadata=(("x-api-key", key),)) as stream:
        async for envelope in stream:
            ...

Entering waits until the server has registered the subscription (nothing
published afterwards is missed) and raises `grpc.aio.AioRpcError` when the
subscription is refused (its `ptf-error-code` trailer says why, e.g.
CHANNEL_FORBIDDEN); leaving cancels the call. Iteration ends when the server
ends the stream (its shutdown); resume elsewhere with `last_event_id=stream.last_seq`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc
from ptf.live.v1 import live_pb2, live_pb2_grpc

from services.runtime.live.bus import BACKPRESSURE_DROP
from services.runtime.live.envelope import Envelope, EnvelopeError, parse_envelope

log = logging.getLogger(__name__)

InvalidHandler = Callable[[EnvelopeError], None]


def envelope_of(event: live_pb2.LiveEvent) -> Envelope:
    """The envelope `event` carries, or `EnvelopeError` naming what is wrong."""
    try:
        data = json.loads(event.data_json)
    except json.JSONDecodeError as exc:
        raise EnvelopeError("data is not JSON") from exc
    return parse_envelope(
        {
            "v": event.v,
            "event": event.event,
            "channel": event.channel,
            "seq": event.seq,
            "ts": event.ts,
            "ok": event.ok,
            "error_code": event.error_code if event.HasField("error_code") else None,
            "data": data,
        }
    )


def _log_invalid(error: EnvelopeError) -> None:
    log.warning("skipped an invalid live event: %s", error)


class LiveStream:
    """One open Subscribe call; iterate it for validated envelopes."""

    def __init__(self, call: Any, on_invalid: InvalidHandler = _log_invalid) -> None:
        self._call = call
        self._on_invalid = on_invalid
        self.last_seq = 0
        self.heartbeats = 0

    async def opened(self) -> None:
        """Wait for the server's registration; AioRpcError when it refused the subscription."""
        await self._call.initial_metadata()
        # Raises the call's error if it already ended with one (a refusal).
        await self._call.wait_for_connection()

    def __aiter__(self) -> AsyncIterator[Envelope]:
        return self._envelopes()

    async def _envelopes(self) -> AsyncIterator[Envelope]:
        async for response in self._call:
            if response.WhichOneof("item") != "event":
                self.heartbeats += 1
                continue
            try:
                envelope = envelope_of(response.event)
            except EnvelopeError as exc:
                self._on_invalid(exc)
                continue
            if envelope.event != BACKPRESSURE_DROP:
                self.last_seq = envelope.seq
            yield envelope

    def cancel(self) -> None:
        self._call.cancel()


@asynccontextmanager
async def live_stream(
    channel: grpc.aio.Channel,
    name: str,
    *,
    last_event_id: int = 0,
    metadata: Sequence[tuple[str, str]] = (),
    on_invalid: InvalidHandler = _log_invalid,
) -> AsyncIterator[LiveStream]:
    """An open subscription to live channel `name` over `channel` (see the module doc).

    `metadata` carries the key (`x-api-key` or `x-admin-key`) unless `channel`
    adds it itself (services.runtime.keys.channels); an invalid event is given
    to `on_invalid` (default: a WARNING log line) and skipped.
    """
    request = live_pb2.SubscribeRequest(channel=name, last_event_id=last_event_id)
    call = live_pb2_grpc.LiveServiceStub(channel).Subscribe(request, metadata=tuple(metadata))
    stream = LiveStream(call, on_invalid)
    try:
        await stream.opened()
        yield stream
    finally:
        call.cancel()
