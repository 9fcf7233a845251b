"""Redis token store: SET NX PX to issue, one Lua script to classify and consume atomically."""

from __future__ import annotations

import json
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.runtime.redis_client import RedisKeys
from services.runtime.tokens.errors import TokenError, token_hash
from services.runtime.tokens.store import (
    Clock,
    ConsumeResult,
    IssuedToken,
    TokenInfo,
    TokenStoreUnavailable,
    issue_fields,
    system_clock,
)

log = logging.getLogger(__name__)

# KEYS[1] token key; ARGV[1] purpose, ARGV[2] params hash, ARGV[3] now (seconds).
# A used token is rewritten with used_at and its remaining TTL kept, so it stays
# distinguishable from an unknown one until its retention ends.
_CONSUME = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 'TOKEN_INVALID' end
local record = cjson.decode(raw)
if record.purpose ~= ARGV[1] then return 'TOKEN_INVALID' end
if record.used_at ~= cjson.null and record.used_at ~= nil then return 'TOKEN_USED' end
if tonumber(ARGV[3]) >= tonumber(record.expires_at) then return 'TOKEN_EXPIRED' end
if record.params_hash ~= ARGV[2] then return 'TOKEN_PARAMS_MISMATCH' end
record.used_at = tonumber(ARGV[3])
redis.call('SET', KEYS[1], cjson.encode(record), 'KEEPTTL')
return 'OK'
"""


class RedisTokenStore:
    """Tokens as `<prefix>:ctok:<sha256>` JSON records with TTL = validity + retention."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: RedisKeys,
        *,
        retention_seconds: float,
        clock: Clock = system_clock,
    ) -> None:
        self._client = client
        self._keys = keys
        self._retention = retention_seconds
        self._clock = clock
        self._consume = client.register_script(_CONSUME)

    def _key(self, hashed: str) -> str:
        return self._keys.key("ctok", hashed)

    async def issue(self, purpose: str, params_hash: str, ttl_seconds: float) -> IssuedToken:
        raw, hashed, created_at, expires_at = issue_fields(ttl_seconds, self._clock)
        record = {
            "purpose": purpose,
            "params_hash": params_hash,
            "created_at": created_at,
            "expires_at": expires_at,
            "used_at": None,
        }
        try:
            stored = await self._client.set(
                self._key(hashed),
                json.dumps(record),
                nx=True,
                px=int((ttl_seconds + self._retention) * 1000),
            )
        except RedisError as exc:
            raise TokenStoreUnavailable("token store unreachable") from exc
        if not stored:
            raise TokenStoreUnavailable("token collision; retry")
        return IssuedToken(raw=raw, hash=hashed, expires_at=expires_at)

    async def consume(self, raw_token: str, purpose: str, params_hash: str) -> ConsumeResult:
        try:
            outcome = await self._consume(
                keys=[self._key(token_hash(raw_token))],
                args=[purpose, params_hash, repr(self._clock())],
            )
        except RedisError:
            log.warning("token store unreachable; consume fails closed")
            return ConsumeResult(TokenError.TOKEN_STORE_UNAVAILABLE)
        text = outcome.decode() if isinstance(outcome, bytes) else str(outcome)
        return ConsumeResult(None if text == "OK" else TokenError(text))

    async def describe(self, token_hash: str) -> TokenInfo | None:
        try:
            raw = await self._client.get(self._key(token_hash))
        except RedisError as exc:
            raise TokenStoreUnavailable("token store unreachable") from exc
        if raw is None:
            return None
        record = json.loads(raw)
        return TokenInfo(
            hash=token_hash,
            purpose=record["purpose"],
            params_hash=record["params_hash"],
            created_at=float(record["created_at"]),
            expires_at=float(record["expires_at"]),
            used_at=None if record["used_at"] is None else float(record["used_at"]),
        )
