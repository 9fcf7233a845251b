"""`GET /live?channel=…`: a live channel as Server-Sent Events, for any service's HTTP server.

The caller is authenticated and checked against the channel allowlist before
the response starts, so a refused subscription is a plain 400/401/403 JSON
error. `Last-Event-ID` resumes from the channel's retained buffer; events the
resume and the live subscription both hold are sent once (by seq). An idle
stream carries a comment line every heartbeat interval so proxies keep it open.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from services.runtime.config.operations import LiveSettings
from services.runtime.errors import Forbidden, InvalidInput
from services.runtime.keys import key_from_headers
from services.runtime.keys.access import Access
from services.runtime.live.bus import BACKPRESSURE_DROP, LiveBus
from services.runtime.live.channels import (
    MAX_CHANNEL_LENGTH,
    ChannelError,
    may_subscribe,
    validate_channel,
)
from services.runtime.live.envelope import Envelope

_MAX_EVENT_ID_DIGITS = 18


def sse_frame(envelope: Envelope) -> bytes:
    """One SSE event; a drop warning carries no id, so it never moves the resume point."""
    lines = [] if envelope.event == BACKPRESSURE_DROP else [f"id: {envelope.seq}"]
    lines += [f"event: {envelope.event}", f"data: {envelope.to_json()}", "", ""]
    return "\n".join(lines).encode()


def _last_event_id(raw: str | None) -> int:
    if raw is None or raw == "":
        return 0
    if not raw.isdigit() or len(raw) > _MAX_EVENT_ID_DIGITS:
        raise InvalidInput(
            "INVALID_LAST_EVENT_ID",
            "Last-Event-ID must be a non-negative integer",
            field="Last-Event-ID",
        )
    return int(raw)


def _channel(raw: str | None) -> str:
    if not raw:
        raise InvalidInput(
            "MISSING_CHANNEL", "the query parameter channel is required", field="channel"
        )
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


class LiveHttp:
    """The SSE route of one service's live bus."""

    def __init__(self, bus: LiveBus, access: Access, settings: LiveSettings) -> None:
        self._bus = bus
        self._access = access
        self._settings = settings

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/live", self.live)]

    async def live(self, request: web.Request) -> web.StreamResponse:
        channel = _channel(request.query.get("channel"))
        last_seq = _last_event_id(request.headers.get("Last-Event-ID"))
        principal = await self._access.authenticate(key_from_headers(request.headers))
        if not may_subscribe(principal, channel):
            raise Forbidden("CHANNEL_FORBIDDEN", "this key may not subscribe to this channel")
        with self._bus.subscribe(channel) as subscription:
            response = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",
                }
            )
            await response.prepare(request)
            await response.write(b": open\n\n")
            if last_seq:
                for kept in await self._bus.retained_after(channel, last_seq):
                    await response.write(sse_frame(kept))
                    last_seq = kept.seq
            while True:
                try:
                    async with asyncio.timeout(self._settings.heartbeat_seconds):
                        envelope = await subscription.next()
                except TimeoutError:
                    await response.write(b": heartbeat\n\n")
                    continue
                if envelope is None:
                    break
                if envelope.event != BACKPRESSURE_DROP:
                    if envelope.seq <= last_seq:
                        continue
                    last_seq = envelope.seq
                await response.write(sse_frame(envelope))
            return response
