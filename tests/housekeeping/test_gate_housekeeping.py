"""The gate's housekeeping loop deletes request-id answers past their window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from tests.housekeeping.rows import PLANTED, marker, settles_at
from tests.support.services import ServiceHandle


async def test_request_id_answers_past_the_window_are_expired(
    gate: ServiceHandle, pg: asyncpg.Pool
) -> None:
    """Fault: 60 request-id answers, 30 older than REQUEST_DEDUP_MINUTES. Expected: the loop
    deletes the old 30 and keeps the 30 inside the window (60 rows, then 30)."""
    prefix = marker()
    window = timedelta(minutes=gate.config.thresholds.Gate.REQUEST_DEDUP_MINUTES)
    now = datetime.now(UTC)
    ages = [window + timedelta(hours=1)] * PLANTED + [timedelta(0)] * PLANTED
    await pg.executemany(
        "INSERT INTO gate_request_dedup (method, request_id, fingerprint, response, created_at)"
        " VALUES ('Check', $1, 'f', '', $2)",
        [(f"{prefix}-{i}", now - age) for i, age in enumerate(ages)],
    )

    async def remaining() -> int:
        count: int = await pg.fetchval(
            "SELECT count(*) FROM gate_request_dedup WHERE request_id LIKE $1", prefix + "-%"
        )
        return count

    after = await settles_at(remaining, PLANTED)
    assert (len(ages), after) == (2 * PLANTED, PLANTED)
