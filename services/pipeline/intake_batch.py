"""Group commit of intake: concurrent submissions written by one multi-row statement.

There is no timer. The first submission flushes at once; those arriving while a
flush's INSERT runs gather and form the next batch (at most `max_batch_size`
rows). A batch is one INSERT of invoices and jobs (`ON CONFLICT DO NOTHING`, so
a document already stored keeps its job) returning the new jobs, a lookup only
for documents an earlier batch stored (none in the common case), and then one
pipelined XADD for the new jobs: a row is always committed before its
stream message exists, and a crash in between leaves a QUEUED job the sweeper
re-sends. The lookup, the XADD and the answers run in a task of their own, so
the next batch's INSERT does not wait for this batch's Redis round trip (a
synchronous submission's wait is one INSERT, not INSERT + XADD). Two identical
documents in one batch are written once and both callers get that job.

One caller's failure never fails its neighbours: if the batch statement fails
on a row (anything but the database being down) each document is retried on
its own, so only the bad one gets the error. The database down fails each
caller with that error, and since the statement is atomic nothing is
half-written. A caller cancelled while waiting does not cancel the batch.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

import asyncpg
from redis.exceptions import RedisError

from services.pipeline.documents import Submission
from services.pipeline.jobs import JobStore, JobView, job_view
from services.pipeline.queue import JobQueue
from services.runtime.db import DATABASE_DOWN

log = logging.getLogger(__name__)


_CREATE_MANY = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::bytea[], $8::uuid[], $9::timestamptz[])
        AS t(tenant_id, content_hash, source_kind, content_type, file_name,
             document, file_bytes, job_id, received_at)
), inv AS (
    INSERT INTO pipeline_invoices
        (invoice_id, tenant_id, content_hash, source_kind, content_type, file_name,
         document, file_bytes)
    SELECT gen_random_uuid(), tenant_id, content_hash, source_kind, content_type, file_name,
           document::jsonb, file_bytes
    FROM input
    ON CONFLICT (tenant_id, content_hash) DO NOTHING
    RETURNING invoice_id, tenant_id, content_hash
)
INSERT INTO pipeline_jobs (job_id, tenant_id, invoice_id, state, received_at)
SELECT input.job_id, input.tenant_id, inv.invoice_id, 'QUEUED', input.received_at
FROM inv JOIN input USING (tenant_id, content_hash)
RETURNING job_id, tenant_id, invoice_id, state, attempts, error_code, error_message,
          created_at, updated_at, finished_at
"""

DocumentKey = tuple[str, str]


@dataclass(frozen=True)
class Stored:
    """A caller's answer: its job, whether this submission created it, and the queue
    failure if its stream message could not be sent (the job is stored regardless)."""

    job: JobView
    created: bool
    queue_error: Exception | None = None


@dataclass
class _Entry:
    tenant_id: str
    submission: Submission
    received_at: datetime
    job_id: UUID
    waiters: list[asyncio.Future[Stored]] = field(default_factory=list)

    @property
    def key(self) -> DocumentKey:
        return (self.tenant_id, self.submission.content_hash)


class IntakeBatcher:
    """Gathers concurrent `store` calls into one write per flush."""

    def __init__(
        self, pool: asyncpg.Pool, jobs: JobStore, queue: JobQueue, max_batch_size: int
    ) -> None:
        self._pool = pool
        self._jobs = jobs
        self._queue = queue
        self._max = max_batch_size
        self._pending: dict[DocumentKey, _Entry] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._answering: set[asyncio.Task[None]] = set()
        self.flushes = 0
        self.statements = 0

    async def store(
        self, tenant_id: str, submission: Submission, received_at: datetime, job_id: UUID
    ) -> Stored:
        """This document's job, new (with `job_id`, committed and queued) or existing."""
        waiter: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        entry = self._pending.get((tenant_id, submission.content_hash))
        if entry is None:
            entry = _Entry(tenant_id, submission, received_at, job_id)
            self._pending[entry.key] = entry
        entry.waiters.append(waiter)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_while_pending())
        # A cancelled caller cancels only its own future: the flush runs in its own task
        # and skips answered futures, so the batch and its neighbours go on.
        return await waiter

    async def _flush_while_pending(self) -> None:
        while self._pending:
            keys = list(self._pending)[: self._max]
            batch = [self._pending.pop(key) for key in keys]
            try:
                batch, created = await self._write(batch)
            except BaseException as exc:
                for entry in batch:
                    _fail(entry, exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            task = asyncio.create_task(self._queue_and_answer(batch, created))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)

    async def _queue_and_answer(self, batch: list[_Entry], created: dict[UUID, JobView]) -> None:
        try:
            await self._answer(batch, created)
        except BaseException as exc:
            for entry in batch:
                _fail(entry, exc)
            if not isinstance(exc, Exception):
                raise

    async def _write(self, batch: list[_Entry]) -> tuple[list[_Entry], dict[UUID, JobView]]:
        """The batch's INSERT (each row on its own after a row-level refusal, so only the
        bad one fails): the entries not refused, and the jobs created, by job id."""
        self.flushes += 1
        try:
            return batch, await self._insert(batch)
        except Exception as exc:
            if not _row_error(exc):
                raise
        # A row-level failure: each document on its own, so only the bad one fails.
        created: dict[UUID, JobView] = {}
        kept = []
        for entry in batch:
            try:
                created |= await self._insert([entry])
            except Exception as row_exc:
                if not _row_error(row_exc):
                    raise
                log.warning("intake row refused: %s", type(row_exc).__name__)
                _fail(entry, row_exc)
            else:
                kept.append(entry)
        return kept, created

    async def _answer(self, batch: list[_Entry], created: dict[UUID, JobView]) -> None:
        """Look up what an earlier batch stored, queue the new jobs, answer every caller."""
        fresh = [e for e in batch if e.job_id in created]
        views = {e.key: created[e.job_id] for e in fresh}
        stored_before = [e.key for e in batch if e.job_id not in created]
        if stored_before:
            self.statements += 1
            views |= await self._jobs.find_many(stored_before)
        queue_error: Exception | None = None
        if fresh:
            try:
                await self._queue.enqueue([(e.job_id, e.tenant_id) for e in fresh])
            except (RedisError, OSError) as exc:
                queue_error = exc
        for entry in batch:
            view = views.get(entry.key)
            if view is None:
                _fail(entry, LookupError("the stored document vanished during intake"))
                continue
            new = entry in fresh
            for index, waiter in enumerate(entry.waiters):
                if not waiter.done():
                    # Only the first caller of a document created it; the rest share it.
                    waiter.set_result(
                        Stored(view, new and index == 0, queue_error if new else None)
                    )

    async def _insert(self, batch: list[_Entry]) -> dict[UUID, JobView]:
        """Write the batch in one statement; the jobs it created, by job id."""
        self.statements += 1
        rows = await self._pool.fetch(
            _CREATE_MANY,
            [e.tenant_id for e in batch],
            [e.submission.content_hash for e in batch],
            [e.submission.kind.value for e in batch],
            [e.submission.content_type for e in batch],
            [e.submission.file_name for e in batch],
            [e.submission.document_json for e in batch],
            [e.submission.file_bytes for e in batch],
            [e.job_id for e in batch],
            [e.received_at for e in batch],
        )
        return {row["job_id"]: job_view(row) for row in rows}


def _row_error(exc: Exception) -> bool:
    """The statement was refused because of a row's content, not the database being down."""
    if isinstance(exc, asyncpg.DataError):
        return True
    return isinstance(exc, asyncpg.PostgresError) and not isinstance(exc, DATABASE_DOWN)


def _fail(entry: _Entry, exc: BaseException) -> None:
    for waiter in entry.waiters:
        if not waiter.done():
            waiter.set_exception(exc)
