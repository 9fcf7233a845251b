"""`ptf.live.v1.LiveService/Subscribe`: a live channel as gRPC server streaming.

The gRPC twin of SSE `GET /live`, for any service that holds a LiveBus: the
same admission before the stream opens (`streams.admit`; the error mapping
turns its errors into INVALID_ARGUMENT, UNAUTHENTICATED and PERMISSION_DENIED
with the SSE's error codes), the same resume, deduplication and heartbeats
(`streams.follow`), the same subscription and so the same active-streams gauge.

Backpressure: the subscription's bounded buffer sits between the bus and the
gRPC write. A client that reads nothing fills its HTTP/2 flow-control window;
the write this handler is awaiting then does not complete, so it takes nothing
more from the buffer, which drops its oldest and counts them; the client's
next reads get what the window held, one `live.backpressure_drop` with the
count, then the newest events. The producer only ever offers to the buffer.

Heartbeats are stream messages, not only HTTP/2 PINGs: a PING ends at the
first proxy, whose stream idle timeout counts only data.

Shutdown: the service's `on_shutdown` closes the bus, which ends every
subscription, so each stream finishes with OK before the server stops. A
stream whose client reads nothing cannot finish: its status waits behind data
the client's window does not take, and cancelling the handler task does not
change that (tried: gRPC core still holds the call). Only the server's stop
cancels such a call, after its grace period, as for any other call.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
from ptf.live.v1 import live_pb2, live_pb2_grpc
from redis.exceptions import RedisError

from services.runtime.config.operations import LiveSettings
from services.runtime.errors import Unavailable
from services.runtime.keys import key_from_metadata
from services.runtime.keys.access import Access
from services.runtime.live.bus import LiveBus
from services.runtime.live.envelope import Envelope
from services.runtime.live.streams import admit, checked_last_event_id, follow, requested_channel

LIVE_SERVICE_NAME = live_pb2.DESCRIPTOR.services_by_name["LiveService"].full_name
_HEARTBEAT = live_pb2.SubscribeResponse(heartbeat=live_pb2.Heartbeat())


def live_event(envelope: Envelope) -> live_pb2.LiveEvent:
    """The envelope field for field; `client.envelope_of` is the inverse."""
    event = live_pb2.LiveEvent(
        v=envelope.v,
        event=envelope.event,
        channel=envelope.channel,
        seq=envelope.seq,
        ts=envelope.ts.isoformat(),
        ok=envelope.ok,
        data_json=json.dumps(envelope.data, separators=(",", ":"), sort_keys=True),
    )
    if envelope.error_code is not None:
        event.error_code = envelope.error_code
    return event


class LiveServicer(live_pb2_grpc.LiveServiceServicer):
    """Subscribe on one process's LiveBus, with the key store of its service."""

    def __init__(self, bus: LiveBus, access: Access, settings: LiveSettings) -> None:
        self._bus = bus
        self._access = access
        self._settings = settings

    async def Subscribe(
        self, request: live_pb2.SubscribeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[live_pb2.SubscribeResponse]:
        channel = requested_channel(request.channel)
        last_seq = checked_last_event_id(request.last_event_id, "last_event_id")
        await admit(self._access, key_from_metadata(context.invocation_metadata()), channel)
        with await self._bus.subscribe(channel) as subscription:
            # Initial metadata tells the client its subscription is registered.
            await context.send_initial_metadata(())
            heartbeat = self._settings.heartbeat_seconds
            try:
                async for envelope in follow(self._bus, subscription, last_seq, heartbeat):
                    if envelope is None:
                        yield _HEARTBEAT
                    else:
                        yield live_pb2.SubscribeResponse(event=live_event(envelope))
            except RedisError as exc:
                raise Unavailable(
                    "LIVE_STORE_UNAVAILABLE", "the live store could not be read; retry"
                ) from exc


def register_live(
    server: grpc.aio.Server, bus: LiveBus, access: Access, settings: LiveSettings
) -> None:
    """Serve LiveService on `server`; list `LIVE_SERVICE_NAME` in the service's names."""
    live_pb2_grpc.add_LiveServiceServicer_to_server(LiveServicer(bus, access, settings), server)
