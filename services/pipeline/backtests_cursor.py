"""The opaque, HMAC-signed cursor of a backtest's diff pages.

A cursor names the backtest and the last replay position a page returned; it is
signed so a client cannot edit it to read another backtest's diffs or skip into
the middle of a page, and a forged or edited cursor is 400 INVALID_CURSOR.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from services.runtime.errors import InvalidInput

_MAX_CURSOR_LENGTH = 512


def cursor_key(secret: str, database_url: str) -> bytes:
    """The HMAC key: the configured secret, else one derived from the database URL
    (every replica of one deployment shares it, and it is never sent to a client)."""
    material = secret or f"ptf-backtest-cursor:{database_url}"
    return hashlib.sha256(material.encode()).digest()


class CursorSigner:
    """Makes and checks diff cursors with one key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:16]

    def make(self, backtest_id: str, after_seq: int) -> str:
        payload = json.dumps({"b": backtest_id, "s": after_seq}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(payload + self._mac(payload)).decode().rstrip("=")

    def read(self, cursor: str, backtest_id: str) -> int:
        """The position after which the next page starts; 400 INVALID_CURSOR unless genuine."""
        invalid = InvalidInput("INVALID_CURSOR", "the cursor is not valid", field="cursor")
        if len(cursor) > _MAX_CURSOR_LENGTH:
            raise invalid
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError) as exc:
            raise invalid from exc
        payload, mac = raw[:-16], raw[-16:]
        if len(raw) <= 16 or not hmac.compare_digest(mac, self._mac(payload)):
            raise invalid
        data = json.loads(payload)
        if data.get("b") != backtest_id or not isinstance(data.get("s"), int):
            raise invalid
        return int(data["s"])
