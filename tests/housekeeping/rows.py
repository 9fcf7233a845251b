"""Rows the housekeeping tests plant: half past their retention, half still alive.

Every row carries a marker of its test, so rows other tests leave in the shared
database never enter a count.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from tests.support.polling import eventually

PLANTED = 30  # rows of each kind: this many past retention and this many alive


def marker() -> str:
    return f"hk-{uuid.uuid4().hex[:10]}"


async def plant_tokens(pg: asyncpg.Pool, purpose: str) -> int:
    """`PLANTED` tokens past their retention and `PLANTED` still retained; returns the total."""
    now = datetime.now(UTC)
    rows = [
        (secrets.token_hex(32), purpose, "p", now - timedelta(days=3), now + offset, now + offset)
        for offset in [timedelta(days=-1)] * PLANTED + [timedelta(days=1)] * PLANTED
    ]
    await pg.executemany(
        "INSERT INTO confirmation_tokens"
        " (token_hash, purpose, params_hash, created_at, expires_at, retain_until)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        rows,
    )
    return len(rows)


async def count_tokens(pg: asyncpg.Pool, purpose: str) -> int:
    count: int = await pg.fetchval(
        "SELECT count(*) FROM confirmation_tokens WHERE purpose = $1", purpose
    )
    return count


async def settles_at(count: Callable[[], Awaitable[int]], expected: int) -> int:
    """Wait (bounded) until the housekeeping loop has brought `count()` to `expected`."""

    async def reached() -> bool:
        return await count() == expected

    await eventually(reached)
    return await count()
