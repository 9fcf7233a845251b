"""The same-run raw baseline of the pipeline bench: the same rows and statements, no service code.

A minimal batched asyncpg + Redis loop on the pipeline's own tables. Intake (this
process): CONCURRENCY submitters hand documents to a group commit that writes
each gathered batch of invoices and jobs in one multi-row INSERT, then XADDs
them in one pipeline. Its HTTP variant puts the same group commit behind a bare
aiohttp handler in a process of its own (`... http-intake ...`), posted to by the
bench's load client as the pipeline is: what the HTTP hop alone costs. The worker
(`python -m bench.raw_baseline worker ...`, a process of its own as the
pipeline's is): XREADGROUP COUNT BATCH, one `UPDATE … FROM unnest` claim, one
commit transaction (the job/invoice UPDATE and the outbox INSERT), then XACK +
PUBLISH in one pipeline.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from bench.http_client import KeepAliveClient
from bench.load import run_closed_loop
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


class _GroupCommit:
    """Documents handed in while the previous flush runs are written by the next one.

    One multi-row INSERT of invoices and jobs per gathered batch, then their XADDs in
    one pipeline; each submitter's future resolves once its message exists.
    """

    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, stream: str) -> None:
        self._pool, self._redis, self._stream = pool, redis, stream
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()

    async def submit(self, document: bytes) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((document, done))
        self._wake.set()
        await done

    async def run(self) -> None:
        """Flush until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if batch:
                await self._flush(batch)

    async def _flush(self, batch: list[tuple[bytes, asyncio.Future[None]]]) -> None:
        invoices = [uuid.uuid4() for _ in batch]
        jobs = [uuid.uuid4() for _ in batch]
        docs = [doc.decode() for doc, _ in batch]
        hashes = [hashlib.sha256(doc).hexdigest() for doc, _ in batch]
        await self._pool.execute(_INSERT, TENANT, invoices, hashes, docs, jobs)
        async with self._redis.pipeline(transaction=False) as pipe:
            for job in jobs:
                pipe.xadd(self._stream, {"job_id": str(job)})
            await pipe.execute()
        for _, done in batch:
            done.set_result(None)


async def _intake(pool: asyncpg.Pool, redis: aioredis.Redis, stream: str) -> None:
    """INVOICES submissions, CONCURRENCY at a time, group-committed in this process."""
    group = _GroupCommit(pool, redis, stream)
    flusher = asyncio.create_task(group.run())
    documents = [invoice_document() for _ in range(INVOICES)]
    try:
        await run_closed_loop([partial(group.submit, doc) for doc in documents], CONCURRENCY)
    finally:
        flusher.cancel()


async def _http_intake(database_url: str, redis_url: str, stream: str) -> None:
    """The same group commit behind a bare aiohttp POST handler, until terminated.

    Prints its port once it listens: the HTTP variant's submitters are the bench's
    own load client, as the pipeline's are.
    """
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=4)
    redis = aioredis.Redis.from_url(redis_url)
    group = _GroupCommit(pool, redis, stream)
    flusher = asyncio.create_task(group.run())

    async def submit(request: web.Request) -> web.Response:
        await group.submit(await request.read())
        return web.json_response({"accepted": True}, status=202)

    app = web.Application()
    app.router.add_post("/submit", submit)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(runner.addresses[0][1], flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        flusher.cancel()


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


@asynccontextmanager
async def _raw_run(
    database_url: str, redis_url: str
) -> AsyncIterator[tuple[asyncpg.Pool, aioredis.Redis, str]]:
    """A fresh stream and consumer group with the raw worker process consuming it."""
    stream = f"raw-baseline:{uuid.uuid4().hex[:8]}"
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=4)
    redis = aioredis.Redis.from_url(redis_url)
    await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    worker = await _spawn("worker", database_url, redis_url, stream)
    try:
        assert worker.stdout is not None
        await worker.stdout.readline()
        yield pool, redis, stream
    finally:
        worker.terminate()
        await worker.wait()
        await redis.delete(stream)
        await redis.aclose()
        await pool.close()


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.raw_baseline", *args, stdout=asyncio.subprocess.PIPE
    )


async def _until_done(pool: asyncpg.Pool, before: int, started: float) -> float:
    """Invoices/s once the raw worker has finished INVOICES more jobs."""
    while await _done_count(pool) - before < INVOICES:
        if time.perf_counter() - started > FINISH_TIMEOUT_SECONDS:
            raise RuntimeError("the raw worker did not finish in time")
        await asyncio.sleep(0.05)
    return INVOICES / (time.perf_counter() - started)


async def raw_rate(database_url: str, redis_url: str) -> float:
    """Invoices/s of one raw run: intake here, the worker in a process of its own."""
    async with _raw_run(database_url, redis_url) as (pool, redis, stream):
        before = await _done_count(pool)
        started = time.perf_counter()
        await _intake(pool, redis, stream)
        return await _until_done(pool, before, started)


async def raw_http_rate(database_url: str, redis_url: str) -> float:
    """Invoices/s of one raw run whose intake is a bare aiohttp server process.

    The bench's load client posts each document as the pipeline bench does (same
    client, concurrency and documents): the cost of the HTTP hop itself, with no
    service code.
    """
    async with _raw_run(database_url, redis_url) as (pool, _, stream):
        intake = await _spawn("http-intake", database_url, redis_url, stream)
        try:
            assert intake.stdout is not None
            port = int(await intake.stdout.readline())
            documents = [invoice_document() for _ in range(INVOICES)]
            async with KeepAliveClient("127.0.0.1", port) as client:

                async def post(document: bytes) -> None:
                    response = await client.post("/submit", document, {})
                    if response.status != 202:
                        raise RuntimeError(f"raw intake answered {response.status}")

                before = await _done_count(pool)
                started = time.perf_counter()
                await run_closed_loop([partial(post, doc) for doc in documents], CONCURRENCY)
                return await _until_done(pool, before, started)
        finally:
            intake.terminate()
            await intake.wait()


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    asyncio.run(_worker(*sys.argv[2:5]))
if __name__ == "__main__" and sys.argv[1:2] == ["http-intake"]:
    asyncio.run(_http_intake(*sys.argv[2:5]))
