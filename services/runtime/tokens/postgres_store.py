"""Postgres token store: `UPDATE ... WHERE used_at IS NULL AND expires_at > now RETURNING`.

The row lock taken by the UPDATE makes exactly one concurrent consumer win;
the losers' zero-row result is then classified with a plain SELECT.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from services.runtime.db import DATABASE_DOWN, MigrationSet
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

TOKEN_MIGRATIONS = MigrationSet("tokens", Path(__file__).parent / "migrations")


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class PostgresTokenStore:
    """Tokens in `confirmation_tokens` (migration in services/runtime/tokens/migrations)."""

    def __init__(
        self, pool: asyncpg.Pool, *, retention_seconds: float, clock: Clock = system_clock
    ) -> None:
        self._pool = pool
        self._retention = retention_seconds
        self._clock = clock

    async def issue(self, purpose: str, params_hash: str, ttl_seconds: float) -> IssuedToken:
        raw, hashed, created_at, expires_at = issue_fields(ttl_seconds, self._clock)
        try:
            await self._pool.execute(
                "INSERT INTO confirmation_tokens"
                " (token_hash, purpose, params_hash, created_at, expires_at, retain_until)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                hashed,
                purpose,
                params_hash,
                _ts(created_at),
                _ts(expires_at),
                _ts(expires_at + self._retention),
            )
        except DATABASE_DOWN as exc:
            raise TokenStoreUnavailable("token store unreachable") from exc
        return IssuedToken(raw=raw, hash=hashed, expires_at=expires_at)

    async def consume(self, raw_token: str, purpose: str, params_hash: str) -> ConsumeResult:
        hashed = token_hash(raw_token)
        now = _ts(self._clock())
        try:
            async with self._pool.acquire() as conn:
                won = await conn.fetchval(
                    "UPDATE confirmation_tokens SET used_at = $4"
                    " WHERE token_hash = $1 AND purpose = $2 AND params_hash = $3"
                    " AND used_at IS NULL AND expires_at > $4 AND retain_until > $4"
                    " RETURNING true",
                    hashed,
                    purpose,
                    params_hash,
                    now,
                )
                if won:
                    return ConsumeResult(None)
                row = await conn.fetchrow(
                    "SELECT purpose, params_hash, expires_at, used_at, retain_until"
                    " FROM confirmation_tokens WHERE token_hash = $1",
                    hashed,
                )
        except DATABASE_DOWN:
            log.warning("token store unreachable; consume fails closed")
            return ConsumeResult(TokenError.TOKEN_STORE_UNAVAILABLE)
        if row is None or row["purpose"] != purpose or row["retain_until"] <= now:
            return ConsumeResult(TokenError.TOKEN_INVALID)
        if row["used_at"] is not None:
            return ConsumeResult(TokenError.TOKEN_USED)
        if row["expires_at"] <= now:
            return ConsumeResult(TokenError.TOKEN_EXPIRED)
        return ConsumeResult(TokenError.TOKEN_PARAMS_MISMATCH)

    async def describe(self, token_hash: str) -> TokenInfo | None:
        try:
            row = await self._pool.fetchrow(
                "SELECT purpose, params_hash, created_at, expires_at, used_at"
                " FROM confirmation_tokens WHERE token_hash = $1 AND retain_until > $2",
                token_hash,
                _ts(self._clock()),
            )
        except DATABASE_DOWN as exc:
            raise TokenStoreUnavailable("token store unreachable") from exc
        if row is None:
            return None
        return TokenInfo(
            hash=token_hash,
            purpose=row["purpose"],
            params_hash=row["params_hash"],
            created_at=row["created_at"].timestamp(),
            expires_at=row["expires_at"].timestamp(),
            used_at=None if row["used_at"] is None else row["used_at"].timestamp(),
        )

    async def purge_expired(self) -> int:
        """Delete records past their retention; returns how many were removed."""
        result = await self._pool.execute(
            "DELETE FROM confirmation_tokens WHERE retain_until <= $1", _ts(self._clock())
        )
        return int(result.split()[-1])
