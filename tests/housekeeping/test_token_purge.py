"""Both token users' housekeeping purges confirmation tokens past their retention."""

from __future__ import annotations

import asyncpg

from tests.housekeeping.rows import PLANTED, count_tokens, marker, plant_tokens, settles_at
from tests.support.services import ServiceHandle


async def test_expired_confirmation_tokens_are_purged(
    token_user: ServiceHandle, pg: asyncpg.Pool
) -> None:
    """Fault: 60 tokens planted while the service runs, 30 past `retain_until`. Expected: its
    scheduled loop (every 0.2 s) deletes those 30 and keeps the retained 30 (60 rows, then 30)."""
    purpose = marker()
    before = await plant_tokens(pg, purpose)
    after = await settles_at(lambda: count_tokens(pg, purpose), PLANTED)
    assert (before, after) == (2 * PLANTED, PLANTED)
