"""The OpenAPI path of `GET /live` (sse.py), merged into each service that serves it."""

from __future__ import annotations

from services.runtime.live.channels import MAX_CHANNEL_LENGTH
from services.runtime.openapi import Paths, error, operation, parameter

_CHANNEL_PATTERN = r"^((jobs|incidents)\.[a-z0-9][a-z0-9_-]{0,62}|gate\.decisions|health)$"

LIVE_PATHS: Paths = {
    "/live": {
        "get": operation(
            "live",
            "A live channel as Server-Sent Events (envelope {v, event, channel, seq, ts, ok,"
            " error_code, data} per event, `id` = seq, comment heartbeats).",
            {
                "200": {
                    "description": "The event stream; it stays open until the client leaves.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "400": error("MISSING_CHANNEL, INVALID_CHANNEL or INVALID_LAST_EVENT_ID."),
                "403": error("CHANNEL_FORBIDDEN: unknown channel, or not this key's."),
            },
            parameters=[
                parameter(
                    "query",
                    "channel",
                    {
                        "type": "string",
                        "maxLength": MAX_CHANNEL_LENGTH,
                        "pattern": _CHANNEL_PATTERN,
                    },
                    "jobs.<tenant>, incidents.<tenant>, gate.decisions or health.",
                    required=True,
                ),
                parameter(
                    "header",
                    "Last-Event-ID",
                    {"type": "string", "pattern": "^[0-9]{1,18}$"},
                    "Resume after this seq, within the channel's retained events.",
                ),
            ],
            keyed=True,
        )
    }
}
