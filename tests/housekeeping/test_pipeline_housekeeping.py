"""The pipeline's housekeeping loop: relayed outbox rows and acknowledged stream entries."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import redis.asyncio as aioredis

from services.pipeline.queue import GROUP
from tests.housekeeping.conftest import OUTBOX_RETENTION_SECONDS
from tests.housekeeping.rows import PLANTED, marker, settles_at
from tests.support.services import ServiceHandle


async def test_relayed_outbox_rows_past_retention_are_pruned(
    pipeline: ServiceHandle, pg: asyncpg.Pool
) -> None:
    """Fault: 90 outbox rows: 30 relayed before the retention (1 h), 30 relayed just now, 30
    two days old but never relayed. Expected: only the first 30 go (90 rows, then 60); a
    pending row is kept whatever its age."""
    tenant = marker()
    ages = [timedelta(seconds=2 * OUTBOX_RETENTION_SECONDS)] * PLANTED + [timedelta(0)] * PLANTED
    await pg.executemany(
        "INSERT INTO pipeline_outbox"
        " (event_id, tenant_id, event_type, occurred_at, payload, delivered_at)"
        " VALUES ($1, $2, 'TEST', now(), '{}', now() - $3::interval)",
        [(uuid.uuid4(), tenant, age) for age in ages],
    )
    await pg.executemany(
        "INSERT INTO pipeline_outbox"
        " (event_id, tenant_id, event_type, occurred_at, payload, created_at)"
        " VALUES ($1, $2, 'TEST', now(), '{}', now() - interval '2 days')",
        [(uuid.uuid4(), tenant) for _ in range(PLANTED)],
    )

    async def remaining() -> int:
        count: int = await pg.fetchval(
            "SELECT count(*) FROM pipeline_outbox WHERE tenant_id = $1", tenant
        )
        return count

    try:
        after = await settles_at(remaining, 2 * PLANTED)
        pending: int = await pg.fetchval(
            "SELECT count(*) FROM pipeline_outbox WHERE tenant_id = $1 AND delivered_at IS NULL",
            tenant,
        )
    finally:
        # The never-relayed rows would otherwise be sent by every later test's relay.
        await pg.execute("DELETE FROM pipeline_outbox WHERE tenant_id = $1", tenant)
    assert (3 * PLANTED, after, pending) == (90, 60, PLANTED)


async def test_job_stream_is_trimmed_to_unacknowledged_entries(
    pipeline: ServiceHandle, redis_client: aioredis.Redis
) -> None:
    """Fault: 40 stream entries: 25 acknowledged without XDEL (a worker that died between
    the two), 10 delivered but pending, 5 not yet delivered. Expected: the loop trims the 25
    and keeps the 15 a worker may still need (XLEN 40, then 15)."""
    stream = f"{pipeline.config.redis_prefix}:pipeline:jobs"
    for _ in range(40):
        await redis_client.xadd(stream, {"job_id": str(uuid.uuid4()), "tenant_id": "hk"})
    reply = await redis_client.xreadgroup(GROUP, "gone-worker", {stream: ">"}, count=35)
    delivered = [message_id for message_id, _fields in reply[0][1]]
    await redis_client.xack(stream, GROUP, *delivered[:25])

    async def length() -> int:
        return int(await redis_client.xlen(stream))

    after = await settles_at(length, 15)
    pending = await redis_client.xpending(stream, GROUP)
    assert (after, pending["pending"]) == (15, 10)
