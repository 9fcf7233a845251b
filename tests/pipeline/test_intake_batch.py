"""Group-commit intake (docs/SPEC.md §3.5): concurrent submissions in one write."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import asyncpg
import pytest
import redis.asyncio as aioredis

from services.pipeline.documents import Submission, json_submission
from services.pipeline.intake_batch import IntakeBatcher, Stored
from services.pipeline.jobs import JobStore
from services.pipeline.queue import JobQueue
from services.pipeline.service import migrate
from services.runtime.devservers import free_port
from services.runtime.redis_client import RedisKeys
from tests.pipeline.service_support import document

TENANT = "intake-batch"


class _Statements:
    """Counts the statements PostgreSQL ran on a pool's connections (asyncpg's query logger)."""

    def __init__(self) -> None:
        self.count = 0
        self.on_tables = 0

    def __call__(self, record: object) -> None:
        self.count += 1
        if "pipeline_" in getattr(record, "query", ""):
            self.on_tables += 1

    async def attach(self, conn: asyncpg.Connection) -> None:
        conn.add_query_logger(self)


@pytest.fixture
async def statements() -> _Statements:
    return _Statements()


@pytest.fixture
async def counted_pool(
    database_url: str, pg: asyncpg.Pool, statements: _Statements
) -> AsyncIterator[asyncpg.Pool]:
    await migrate(pg)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2, init=statements.attach)
    yield pool
    await pool.close()


@pytest.fixture
def queue(redis_client: aioredis.Redis, redis_prefix: str) -> JobQueue:
    return JobQueue(redis_client, RedisKeys(redis_prefix))


def _batcher(pool: asyncpg.Pool, queue: JobQueue, max_batch_size: int = 256) -> IntakeBatcher:
    return IntakeBatcher(pool, JobStore(pool), queue, max_batch_size)


def _submission() -> Submission:
    return json_submission(json.dumps(document()))


async def _store_all(
    batcher: IntakeBatcher, submissions: list[Submission]
) -> list[Stored | BaseException]:
    now = datetime.now(UTC)
    return await asyncio.gather(
        *(batcher.store(TENANT, s, now, uuid.uuid4()) for s in submissions),
        return_exceptions=True,
    )


async def _stored_hashes(pg: asyncpg.Pool, submissions: list[Submission]) -> set[str]:
    rows = await pg.fetch(
        "SELECT content_hash FROM pipeline_invoices WHERE tenant_id = $1"
        " AND content_hash = ANY($2::text[])",
        TENANT,
        [s.content_hash for s in submissions],
    )
    return {r["content_hash"] for r in rows}


async def test_concurrent_submissions_are_written_by_fewer_statements_than_submissions(
    counted_pool: asyncpg.Pool, queue: JobQueue, statements: _Statements
) -> None:
    """Must: 40 concurrent submissions are stored, each as its own new job, by far fewer
    statements than 40 (one insert per flush)."""
    submissions = [_submission() for _ in range(40)]
    statements.count = 0
    results = await _store_all(_batcher(counted_pool, queue), submissions)
    assert all(isinstance(r, Stored) and r.created for r in results)
    assert len({r.job.job_id for r in results if isinstance(r, Stored)}) == 40
    assert statements.count < 40


async def test_a_batch_of_new_documents_is_one_statement_with_no_lookup(
    counted_pool: asyncpg.Pool, queue: JobQueue, statements: _Statements
) -> None:
    """Must: the insert returns the new jobs, so a flush of only new documents runs one
    statement (the lookup is for documents stored by an earlier batch)."""
    batcher = _batcher(counted_pool, queue)
    results = await _store_all(batcher, [_submission() for _ in range(5)])
    assert all(isinstance(r, Stored) and r.created for r in results)
    assert statements.on_tables == batcher.flushes


async def test_a_new_job_is_answered_as_its_row_reads_back(
    counted_pool: asyncpg.Pool, queue: JobQueue
) -> None:
    """Must: the job a caller gets from the insert is the job a later read returns."""
    (result,) = await _store_all(_batcher(counted_pool, queue), [_submission()])
    assert isinstance(result, Stored)
    assert await JobStore(counted_pool).get(result.job.job_id, TENANT) == result.job


async def test_a_lone_submission_is_written_at_once_and_queued_after_its_commit(
    counted_pool: asyncpg.Pool, queue: JobQueue, redis_client: aioredis.Redis
) -> None:
    """Must: one submission is flushed without waiting for company, its row exists, and
    its stream message names the committed job."""
    await queue.ensure_group()
    (result,) = await _store_all(_batcher(counted_pool, queue), [_submission()])
    assert isinstance(result, Stored)
    assert result.created
    messages = await redis_client.xrange(queue.stream)
    assert str(result.job.job_id).encode() in {m[1][b"job_id"] for m in messages}


async def test_identical_documents_in_one_batch_become_one_job_that_every_caller_gets(
    counted_pool: asyncpg.Pool, queue: JobQueue
) -> None:
    """Must: three callers submitting the same document in one batch get the same job;
    exactly one of them created it."""
    same = _submission()
    results = await _store_all(_batcher(counted_pool, queue), [same, same, same])
    stored = [r for r in results if isinstance(r, Stored)]
    assert len({r.job.job_id for r in stored}) == 1
    assert len(stored) == 3
    assert [r.created for r in stored].count(True) == 1


async def test_a_document_stored_by_an_earlier_batch_returns_its_existing_job(
    counted_pool: asyncpg.Pool, queue: JobQueue
) -> None:
    """Must: idempotency across batches: resubmitting a stored document returns its job,
    not a new one, while a new document in the same batch gets its own."""
    batcher = _batcher(counted_pool, queue)
    old = _submission()
    (first,) = await _store_all(batcher, [old])
    again, fresh = await _store_all(batcher, [old, _submission()])
    assert isinstance(first, Stored)
    assert isinstance(again, Stored)
    assert isinstance(fresh, Stored)
    assert (again.job.job_id, again.created) == (first.job.job_id, False)
    assert fresh.created
    assert fresh.job.job_id != first.job.job_id


async def test_a_row_the_database_refuses_fails_alone_and_its_neighbours_are_stored(
    counted_pool: asyncpg.Pool, queue: JobQueue, pg: asyncpg.Pool
) -> None:
    """Fault: one document of a batch is refused by PostgreSQL (not valid jsonb). Must:
    only its caller gets the error; the other documents of the batch are stored."""
    good = [_submission() for _ in range(4)]
    bad = replace(_submission(), document_json="{not json")
    results = await _store_all(_batcher(counted_pool, queue), [good[0], good[1], bad, *good[2:]])
    assert isinstance(results[2], asyncpg.PostgresError)
    assert all(isinstance(r, Stored) and r.created for i, r in enumerate(results) if i != 2)
    assert await _stored_hashes(pg, good) == {s.content_hash for s in good}


async def test_database_down_fails_each_caller_of_the_batch_and_writes_nothing(
    database_url: str, pg: asyncpg.Pool, queue: JobQueue
) -> None:
    """Fault: the database is unreachable during a flush. Must: every caller of the batch
    gets the connection error (which intake answers as 503 DATABASE_UNAVAILABLE) and none
    of the documents is stored."""
    await migrate(pg)
    dead = await asyncpg.create_pool(f"postgresql://127.0.0.1:{free_port()}/x", min_size=0)
    submissions = [_submission() for _ in range(5)]
    try:
        results = await _store_all(_batcher(dead, queue), submissions)
    finally:
        await dead.close()
    assert all(isinstance(r, OSError) for r in results)
    assert await _stored_hashes(pg, submissions) == set()


async def test_a_cancelled_caller_does_not_cancel_the_batch_of_the_others(
    counted_pool: asyncpg.Pool, queue: JobQueue, pg: asyncpg.Pool
) -> None:
    """Fault: one caller is cancelled (its client went away) while its batch is written.
    Must: the other callers still get their jobs and every document is stored."""
    batcher = _batcher(counted_pool, queue)
    submissions = [_submission() for _ in range(3)]
    now = datetime.now(UTC)
    tasks = [asyncio.create_task(batcher.store(TENANT, s, now, uuid.uuid4())) for s in submissions]
    await asyncio.sleep(0)
    tasks[0].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert all(isinstance(r, Stored) for r in results[1:])
    assert await _stored_hashes(pg, submissions) == {s.content_hash for s in submissions}


async def test_a_batch_is_at_most_the_configured_size(
    counted_pool: asyncpg.Pool, queue: JobQueue
) -> None:
    """Must: with max batch size 4, ten gathered submissions are written by three flushes
    (4 + 4 + 2) and all of them are stored."""
    batcher = _batcher(counted_pool, queue, max_batch_size=4)
    results = await _store_all(batcher, [_submission() for _ in range(10)])
    assert all(isinstance(r, Stored) and r.created for r in results)
    assert batcher.flushes == 3
