"""The job row's own invariant (migration 0006): a job is unfinished, `finished_at`
NULL, exactly while it is QUEUED or RUNNING. The unfinished-jobs index, the
sweeper and the queue status pick waiting jobs by `finished_at IS NULL`, so a row
breaking it would be lost to them or counted forever; PostgreSQL refuses it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.pipeline.jobs import Connection
from tests.pipeline.service_support import new_tenant_id
from tests.support.services import ServiceHandle


@pytest.fixture
async def conn(pipeline: ServiceHandle, pg: asyncpg.Pool) -> AsyncIterator[Connection]:
    """A connection in a transaction rolled back afterwards: the suite shares the database,
    and a waiting job left behind would count in other tests' queue depth."""
    async with pg.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        try:
            yield connection
        finally:
            await transaction.rollback()


async def _insert_job(conn: Connection, state: str, finished: bool) -> uuid.UUID:
    tenant, invoice_id, job_id = new_tenant_id(), uuid.uuid4(), uuid.uuid4()
    await conn.execute(
        "INSERT INTO pipeline_invoices (invoice_id, tenant_id, content_hash, source_kind)"
        " VALUES ($1, $2, $3, 'json')",
        invoice_id,
        tenant,
        uuid.uuid4().hex,
    )
    await conn.execute(
        "INSERT INTO pipeline_jobs (job_id, tenant_id, invoice_id, state, finished_at)"
        " VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN now() END)",
        job_id,
        tenant,
        invoice_id,
        state,
        finished,
    )
    return job_id


@pytest.mark.parametrize("state", ["DONE", "FAILED", "EXHAUSTED", "SKIPPED"])
async def test_a_final_job_without_finished_at_is_refused(conn: Connection, state: str) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await _insert_job(conn, state, finished=False)


@pytest.mark.parametrize("state", ["QUEUED", "RUNNING"])
async def test_a_waiting_job_with_finished_at_is_refused(conn: Connection, state: str) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await _insert_job(conn, state, finished=True)


@pytest.mark.parametrize(("state", "finished"), [("QUEUED", False), ("DONE", True)])
async def test_a_job_whose_finished_at_matches_its_state_is_stored(
    conn: Connection, state: str, finished: bool
) -> None:
    job_id = await _insert_job(conn, state, finished)
    stored = await conn.fetchval("SELECT state FROM pipeline_jobs WHERE job_id = $1", job_id)
    assert stored == state
