"""A worker's batch claim is planned once per connection, not on every batch.

Left to choose, PostgreSQL gives a statement five custom plans and then keeps
custom plans for good if they were cheaper than its generic plan. Against a jobs
table of some thousands of rows a claim of a few jobs is, so a worker started under
light traffic re-planned its claim on every batch. Workers claim on their own pool, whose
connections always use the generic plan (docs/performance.md).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import asyncpg

from services.pipeline.documents import json_submission
from services.pipeline.jobs import _CLAIM_MANY, JobStore
from services.pipeline.service import claim_pool
from tests.pipeline.service_support import document

CLAIMS = 8


async def _claim_one_at_a_time(store: JobStore, pg: asyncpg.Pool, tenant_id: str) -> None:
    """CLAIMS claims of a single job each, as a worker under light traffic makes them."""
    for _ in range(CLAIMS):
        job, _ = await JobStore(pg).create(
            tenant_id, json_submission(json.dumps(document())), datetime.now(UTC)
        )
        claimed = await store.claim_many([(job.job_id, tenant_id)], "worker-a", 30.0, 3)
        assert list(claimed) == [job.job_id]


async def _claim_plans(pool: asyncpg.Pool) -> tuple[int, int]:
    """(generic, custom) plans of the claim on the pool's one connection."""
    row = await pool.fetchrow(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
        _CLAIM_MANY,
    )
    assert row is not None
    return row["generic_plans"], row["custom_plans"]


async def test_claims_on_the_claim_pool_use_one_generic_plan(
    pg: asyncpg.Pool, database_url: str, tenant_id: str
) -> None:
    claims = await claim_pool(database_url, loops=1)
    try:
        await _claim_one_at_a_time(JobStore(pg, claims), pg, tenant_id)
        assert await _claim_plans(claims) == (CLAIMS, 0)
    finally:
        await claims.close()
