"""`GET /live?channel=…`: a live channel as Server-Sent Events, for any service's HTTP server.

The caller is authenticated and checked against the channel allowlist before
the response starts (`streams.admit`, as for gRPC), so a refused subscription
is a plain 400/401/403 JSON error. `Last-Event-ID` resumes from the channel's
retained buffer; events the resume and the live subscription both hold are
sent once (by seq). An idle stream carries a comment line every heartbeat
interval so proxies keep it open.
"""

from __future__ import annotations

from aiohttp import web

from services.runtime.config.operations import LiveSettings
from services.runtime.errors import InvalidInput
from services.runtime.keys import key_from_headers
from services.runtime.keys.access import Access
from services.runtime.live.bus import BACKPRESSURE_DROP, LiveBus
from services.runtime.live.envelope import Envelope
from services.runtime.live.streams import (
    MAX_LAST_EVENT_ID,
    admit,
    checked_last_event_id,
    follow,
    requested_channel,
)

_LAST_EVENT_ID = "Last-Event-ID"


def sse_frame(envelope: Envelope) -> bytes:
    """One SSE event; a drop warning carries no id, so it never moves the resume point."""
    lines = [] if envelope.event == BACKPRESSURE_DROP else [f"id: {envelope.seq}"]
    lines += [f"event: {envelope.event}", f"data: {envelope.to_json()}", "", ""]
    return "\n".join(lines).encode()


def _last_event_id(raw: str | None) -> int:
    if raw is None or raw == "":
        return 0
    if not raw.isdigit() or len(raw) > len(str(MAX_LAST_EVENT_ID)):
        raise InvalidInput(
            "INVALID_LAST_EVENT_ID",
            "Last-Event-ID must be a non-negative integer",
            field=_LAST_EVENT_ID,
        )
    return checked_last_event_id(int(raw), _LAST_EVENT_ID)


class LiveHttp:
    """The SSE route of one service's live bus."""

    def __init__(self, bus: LiveBus, access: Access, settings: LiveSettings) -> None:
        self._bus = bus
        self._access = access
        self._settings = settings

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/live", self.live)]

    async def live(self, request: web.Request) -> web.StreamResponse:
        channel = requested_channel(request.query.get("channel"))
        last_seq = _last_event_id(request.headers.get(_LAST_EVENT_ID))
        await admit(self._access, key_from_headers(request.headers), channel)
        with await self._bus.subscribe(channel) as subscription:
            response = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",
                }
            )
            await response.prepare(request)
            await response.write(b": open\n\n")
            heartbeat = self._settings.heartbeat_seconds
            async for envelope in follow(self._bus, subscription, last_seq, heartbeat):
                await response.write(
                    b": heartbeat\n\n" if envelope is None else sse_frame(envelope)
                )
            return response
