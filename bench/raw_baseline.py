"""The same-run raw baseline of the pipeline bench: the same rows and statements, no service code.

A minimal batched asyncpg + Redis loop on the pipeline's own tables. Intake (this
process): CONCURRENCY submitters hand documents to a group commit that writes
each gathered batch of invoices and jobs in one multi-row INSERT, then XADDs
them in one pipeline. The worker (`python -m bench.raw_baseline worker ...`, a
process of its own as the pipeline's is): XREADGROUP COUNT BATCH, one
`UPDATE … FROM unnest` claim, one commit transaction (the job/invoice UPDATE
and the outbox INSERT), then XACK + PUBLISH in one pipeline.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
import uuid

import asyncpg
import redis.asyncio as aioredis

from bench.pipeline import CONCURRENCY, FINISH_TIMEOUT_SECONDS, INVOICES, invoice_document

TENANT = "raw-baseline"
BATCH = 64
GROUP = "raw"

_INSERT = """
WITH invoices AS (
    INSERT INTO pipeline_invoices (invoice_id, tenant_id, content_hash, source_kind, document)
    SELECT i, $1, h, 'json', d::jsonb FROM unnest($2::uuid[], $3::text[], $4::text[]) AS t(i, h, d)
    RETURNING invoice_id
)
INSERT INTO pipeline_jobs (job_id, tenant_id, invoice_id, state)
SELECT j, $1, i, 'QUEUED' FROM unnest($5::uuid[], $2::uuid[]) AS t(j, i)
"""
_CLAIM = """
UPDATE pipeline_jobs j SET state = 'RUNNING', attempts = attempts + 1, lease_owner = $2,
    lease_expires_at = now() + interval '30 seconds', updated_at = now()
FROM unnest($1::uuid[]) AS t(id)
WHERE j.job_id = t.id AND j.state = 'QUEUED'
RETURNING j.job_id, j.invoice_id
"""
_COMPLETE = """
WITH done AS (
    UPDATE pipeline_jobs j SET state = 'DONE', finished_at = now(), finished_by = $2,
        lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    FROM unnest($1::uuid[]) AS t(id)
    WHERE j.job_id = t.id AND j.lease_owner = $2
    RETURNING j.invoice_id
)
UPDATE pipeline_invoices v SET result = $3::jsonb, processed_at = now()
FROM done WHERE v.invoice_id = done.invoice_id
"""
_OUTBOX = """
INSERT INTO pipeline_outbox (event_id, tenant_id, event_type, occurred_at, payload)
SELECT e, $1, 'INVOICE_PROCESSED', now(), $3::jsonb FROM unnest($2::uuid[]) AS t(e)
"""


async def _intake(pool: asyncpg.Pool, redis: aioredis.Redis, stream: str) -> None:
    """INVOICES submissions, CONCURRENCY at a time, group-committed."""
    pending: list[tuple[bytes, asyncio.Future[None]]] = []
    wake = asyncio.Event()
    remaining = INVOICES

    async def flusher() -> None:
        nonlocal pending
        while remaining or pending:
            await wake.wait()
            wake.clear()
            batch, pending = pending, []
            if not batch:
                continue
            invoices = [uuid.uuid4() for _ in batch]
            jobs = [uuid.uuid4() for _ in batch]
            docs = [doc.decode() for doc, _ in batch]
            hashes = [hashlib.sha256(doc).hexdigest() for doc, _ in batch]
            await pool.execute(_INSERT, TENANT, invoices, hashes, docs, jobs)
            async with redis.pipeline(transaction=False) as pipe:
                for job in jobs:
                    pipe.xadd(stream, {"job_id": str(job)})
                await pipe.execute()
            for _, done in batch:
                done.set_result(None)

    async def submitter() -> None:
        nonlocal remaining
        while remaining:
            remaining -= 1
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            pending.append((invoice_document(), done))
            wake.set()
            await done
        wake.set()

    flush = asyncio.create_task(flusher())
    await asyncio.gather(*(submitter() for _ in range(CONCURRENCY)))
    wake.set()
    await flush


async def _worker(database_url: str, redis_url: str, stream: str) -> None:
    """Consume the stream in batches until it has been idle for a second after the run."""
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=2)
    redis = aioredis.Redis.from_url(redis_url)
    owner = f"raw-{uuid.uuid4().hex[:8]}"
    result = json.dumps({"status": "ok"})
    idle_since = time.monotonic()
    print("ready", flush=True)
    while time.monotonic() - idle_since < FINISH_TIMEOUT_SECONDS:
        reply = await redis.xreadgroup(GROUP, owner, {stream: ">"}, count=BATCH, block=100)
        if not reply:
            continue
        idle_since = time.monotonic()
        entries = reply[0][1]
        ids = [uuid.UUID(fields[b"job_id"].decode()) for _, fields in entries]
        claimed = await pool.fetch(_CLAIM, ids, owner)
        jobs = [row["job_id"] for row in claimed]
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(_COMPLETE, jobs, owner, result)
            await conn.execute(_OUTBOX, TENANT, [uuid.uuid4() for _ in jobs], result)
        async with redis.pipeline(transaction=False) as pipe:
            pipe.xack(stream, GROUP, *[entry_id for entry_id, _ in entries])
            for job in jobs:
                pipe.publish(f"{stream}:done", str(job))
            await pipe.execute()


async def _done_count(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM pipeline_jobs WHERE tenant_id = $1 AND state = 'DONE'", TENANT
    )
    return count


async def raw_rate(database_url: str, redis_url: str) -> float:
    """Invoices/s of one raw run: intake here, the worker in a process of its own."""
    stream = f"raw-baseline:{uuid.uuid4().hex[:8]}"
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=4)
    redis = aioredis.Redis.from_url(redis_url)
    await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.raw_baseline",
        "worker",
        database_url,
        redis_url,
        stream,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert worker.stdout is not None
        await worker.stdout.readline()
        before = await _done_count(pool)
        started = time.perf_counter()
        await _intake(pool, redis, stream)
        while await _done_count(pool) - before < INVOICES:
            if time.perf_counter() - started > FINISH_TIMEOUT_SECONDS:
                raise RuntimeError("the raw worker did not finish in time")
            await asyncio.sleep(0.05)
        return INVOICES / (time.perf_counter() - started)
    finally:
        worker.terminate()
        await worker.wait()
        await redis.delete(stream)
        await redis.aclose()
        await pool.close()


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    asyncio.run(_worker(*sys.argv[2:5]))
