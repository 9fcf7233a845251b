"""The one live envelope `{v, event, channel, seq, ts, ok, error_code, data}`.

Publishers build it with `Envelope(...)` and send `to_json()`; every reader
(the gateway before it forwards, the client helper when it receives) goes
through `parse_envelope`, so a malformed event is refused at both ends with
the same rules instead of each consumer guessing at fields.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.runtime.live.channels import validate_channel

ENVELOPE_VERSION = 1
_EVENT_PATTERN = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
_ERROR_CODE_PATTERN = re.compile(r"[A-Z][A-Z0-9_]*")
_FIELDS = frozenset({"v", "event", "channel", "seq", "ts", "ok", "error_code", "data"})


class EnvelopeError(ValueError):
    """An envelope that breaks the contract; the message names the field."""


@dataclass(frozen=True)
class Envelope:
    """One live event. Construction validates it, so an invalid one never leaves a publisher."""

    event: str
    channel: str
    seq: int
    ts: datetime
    data: dict[str, Any] = field(default_factory=dict)
    ok: bool = True
    error_code: str | None = None
    v: int = ENVELOPE_VERSION

    def __post_init__(self) -> None:
        if self.v != ENVELOPE_VERSION:
            raise EnvelopeError(f"v must be {ENVELOPE_VERSION}")
        if not isinstance(self.event, str) or not _EVENT_PATTERN.fullmatch(self.event):
            raise EnvelopeError("event must be a dotted lower-case name")
        try:
            validate_channel(self.channel)
        except ValueError as exc:
            raise EnvelopeError(str(exc)) from exc
        if isinstance(self.seq, bool) or not isinstance(self.seq, int) or self.seq < 0:
            raise EnvelopeError("seq must be an integer >= 0")
        if not isinstance(self.ts, datetime) or self.ts.tzinfo is None:
            raise EnvelopeError("ts must be a timezone-aware timestamp")
        if not isinstance(self.ok, bool):
            raise EnvelopeError("ok must be a boolean")
        if self.ok and self.error_code is not None:
            raise EnvelopeError("error_code must be null when ok is true")
        if not self.ok and (
            not isinstance(self.error_code, str)
            or not _ERROR_CODE_PATTERN.fullmatch(self.error_code)
        ):
            raise EnvelopeError("error_code must be an UPPER_SNAKE code when ok is false")
        if not isinstance(self.data, dict):
            raise EnvelopeError("data must be an object")

    def as_dict(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "event": self.event,
            "channel": self.channel,
            "seq": self.seq,
            "ts": self.ts.isoformat(),
            "ok": self.ok,
            "error_code": self.error_code,
            "data": self.data,
        }

    def to_json(self) -> str:
        """Compact JSON; `data` must be JSON-serializable (a TypeError otherwise)."""
        return json.dumps(self.as_dict(), separators=(",", ":"), sort_keys=True)


def parse_envelope(raw: bytes | str | dict[str, Any]) -> Envelope:
    """The envelope in `raw`, or `EnvelopeError` naming what is wrong."""
    if isinstance(raw, dict):
        message: Any = raw
    else:
        try:
            message = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EnvelopeError(f"envelope is not JSON: {exc.__class__.__name__}") from exc
    if not isinstance(message, dict):
        raise EnvelopeError("envelope must be a JSON object")
    keys = set(message)
    if keys != _FIELDS:
        missing = sorted(_FIELDS - keys)
        extra = sorted(keys - _FIELDS)
        raise EnvelopeError(f"envelope fields wrong: missing {missing}, unexpected {extra}")
    ts_raw = message["ts"]
    if not isinstance(ts_raw, str):
        raise EnvelopeError("ts must be an ISO-8601 string")
    try:
        ts = datetime.fromisoformat(ts_raw)
    except ValueError as exc:
        raise EnvelopeError("ts must be an ISO-8601 string") from exc
    return Envelope(
        v=message["v"],
        event=message["event"],
        channel=message["channel"],
        seq=message["seq"],
        ts=ts,
        ok=message["ok"],
        error_code=message["error_code"],
        data=message["data"],
    )
