"""Jobs and invoices in Postgres: idempotent intake, leases, outcomes, and the sweeper's query.

The job row is the single source of truth of who runs a job: a worker must
win `claim()` (a conditional UPDATE) before processing, and its outcome is
committed only while it still holds the lease (`lease_owner` fencing), so two
workers can never both commit a result for one job. Every statement is scoped
by tenant except the sweeper's, which re-enqueues work across tenants.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from services.pipeline.documents import SourceKind, Submission
from services.pipeline.errors import PipelineError
from services.pipeline.events import OutboxEvent, outbox_rows
from services.pipeline.incidents import IncidentRow

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


class JobState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    EXHAUSTED = "EXHAUSTED"
    SKIPPED = "SKIPPED"

    @property
    def final(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True)
class JobView:
    """A job as clients see it; `result` and `incident_id` once it is DONE."""

    job_id: UUID
    tenant_id: str
    invoice_id: UUID
    state: JobState
    attempts: int
    error_code: str | None
    error_message: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    result: dict[str, Any] | None = None
    incident_id: UUID | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": str(self.job_id),
            "tenant_id": self.tenant_id,
            "invoice_id": str(self.invoice_id),
            "state": self.state.value,
            "attempts": self.attempts,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "incident_id": str(self.incident_id) if self.incident_id else None,
            "result": self.result,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobView:
        """The inverse of `to_dict` (a job notification carries the view in this form)."""
        finished = data["finished_at"]
        incident = data["incident_id"]
        return cls(
            job_id=UUID(data["job_id"]),
            tenant_id=data["tenant_id"],
            invoice_id=UUID(data["invoice_id"]),
            state=JobState(data["state"]),
            attempts=int(data["attempts"]),
            error_code=data["error_code"],
            error_message=data["error_message"],
            created_at=datetime.fromisoformat(data["created_at"]),
            updated_at=datetime.fromisoformat(data["updated_at"]),
            finished_at=datetime.fromisoformat(finished) if finished else None,
            result=data["result"],
            incident_id=UUID(incident) if incident else None,
        )


@dataclass(frozen=True)
class InvoiceSource:
    """What the worker needs to extract an invoice."""

    kind: SourceKind
    document_json: str | None
    file_bytes: bytes | None
    content_type: str
    file_name: str


@dataclass(frozen=True)
class ClaimedJob:
    """A job this worker holds the lease on, with its invoice's source (None if purged)."""

    job_id: UUID
    tenant_id: str
    invoice_id: UUID
    attempts: int
    received_at: datetime
    source: InvoiceSource | None = None


@dataclass(frozen=True)
class JobProbe:
    """Why a job could not be claimed."""

    state: JobState
    attempts: int
    due: bool
    lease_expired: bool


_VIEW_COLUMNS = (
    "j.job_id, j.tenant_id, j.invoice_id, j.state, j.attempts, j.error_code, j.error_message,"
    " j.created_at, j.updated_at, j.finished_at, i.result::text AS result, inc.incident_id"
)
_VIEW_FROM = (
    " FROM pipeline_jobs j"
    " JOIN pipeline_invoices i ON i.invoice_id = j.invoice_id AND i.tenant_id = j.tenant_id"
    " LEFT JOIN pipeline_incidents inc"
    " ON inc.invoice_id = j.invoice_id AND inc.tenant_id = j.tenant_id"
)

_CREATE = """
WITH inv AS (
    INSERT INTO pipeline_invoices
        (invoice_id, tenant_id, content_hash, source_kind, content_type, file_name,
         document, file_bytes)
    VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)
    ON CONFLICT (tenant_id, content_hash) DO NOTHING
    RETURNING invoice_id, tenant_id
)
INSERT INTO pipeline_jobs (job_id, tenant_id, invoice_id, state, received_at)
SELECT $9, tenant_id, invoice_id, 'QUEUED', $10 FROM inv
RETURNING job_id, tenant_id, invoice_id, state, attempts, error_code, error_message,
          created_at, updated_at, finished_at
"""

# Every message of a batch in one statement; each row keeps the single-job
# conditions (attempts left, QUEUED and due or RUNNING with an expired lease).
# A row another transaction has locked (a worker claiming or committing it right
# now) is skipped rather than waited for, so two overlapping batches can never
# deadlock; its message takes the unclaimed path like any job someone else runs.
# The UPDATE joins on the job id alone: FOR UPDATE has re-checked these
# conditions on the newest row version, and the row stays locked until this
# transaction ends (repeating them there once made the planner join the whole
# backlog against the batch; docs/performance.md).
_CLAIMABLE = """j.attempts < $5
      AND ((j.state = 'QUEUED' AND j.next_attempt_at <= now())
           OR (j.state = 'RUNNING' AND j.lease_expires_at < now()))"""
_CLAIM_MANY = f"""
WITH wanted AS (
    SELECT DISTINCT w.job_id, w.tenant_id
    FROM unnest($1::uuid[], $2::text[]) AS w(job_id, tenant_id)
), locked AS (
    SELECT j.job_id
    FROM pipeline_jobs j JOIN wanted w ON j.job_id = w.job_id AND j.tenant_id = w.tenant_id
    WHERE {_CLAIMABLE}
    FOR UPDATE OF j SKIP LOCKED
), claimed AS (
    UPDATE pipeline_jobs j
    SET state = 'RUNNING', attempts = j.attempts + 1, lease_owner = $3,
        lease_expires_at = now() + make_interval(secs => $4), updated_at = now()
    FROM locked l
    WHERE j.job_id = l.job_id
    RETURNING j.job_id, j.tenant_id, j.invoice_id, j.attempts, j.received_at
)
SELECT c.job_id, c.tenant_id, c.invoice_id, c.attempts, c.received_at,
       i.source_kind, i.document::text AS document, i.file_bytes, i.content_type, i.file_name
FROM claimed c
LEFT JOIN pipeline_invoices i ON i.invoice_id = c.invoice_id AND i.tenant_id = c.tenant_id
"""

_EXHAUST = """
UPDATE pipeline_jobs
SET state = 'EXHAUSTED', finished_at = now(), updated_at = now(),
    lease_owner = NULL, lease_expires_at = NULL,
    error_code = COALESCE(error_code, 'WORKER_LOST'),
    error_message = COALESCE(error_message, 'the job did not finish within its attempts')
WHERE job_id = $1 AND tenant_id = $2 AND attempts >= $3
  AND (state = 'QUEUED' OR (state = 'RUNNING' AND lease_expires_at < now()))
RETURNING job_id
"""

_FINISH = """
UPDATE pipeline_jobs
SET state = $4, finished_at = now(), updated_at = now(), finished_by = $3,
    lease_owner = NULL, lease_expires_at = NULL, error_code = $5, error_message = $6
WHERE job_id = $1 AND tenant_id = $2 AND state = 'RUNNING' AND lease_owner = $3
RETURNING finished_at
"""

_RETRY = """
UPDATE pipeline_jobs
SET state = CASE WHEN attempts >= $4 THEN 'EXHAUSTED' ELSE 'QUEUED' END,
    finished_at = CASE WHEN attempts >= $4 THEN now() END,
    next_attempt_at = now() + make_interval(secs => $5),
    lease_owner = NULL, lease_expires_at = NULL,
    error_code = $6, error_message = $7, updated_at = now()
WHERE job_id = $1 AND tenant_id = $2 AND state = 'RUNNING' AND lease_owner = $3
RETURNING state
"""

# The whole outcome of a batch of processed jobs in one statement (one round
# trip, atomic): DONE fenced per row on the lease; a job whose lease another
# worker took is simply not in `fenced`, and every other part of it (invoice
# result, incident, events) is dropped with it. At most one incident per invoice
# (DISTINCT ON, and ON CONFLICT for one committed earlier); an INCIDENT_CREATED
# event is written only if its incident row was inserted. The final SELECT sees
# the snapshot from before the statement, so an incident committed earlier is
# found by the LEFT JOIN and a new one through `incident`.
_COMPLETE_MANY = """
WITH outcome AS (
    SELECT * FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::text[], $9::float8[])
         AS o(job_id, tenant_id, document, result, quality_grade, provider, invoice_period,
              extraction_ms)
), locked AS (
    -- In job id order, so two batches that both still hold one job (a lease taken
    -- over in between) wait for each other in one order and never deadlock. After
    -- a wait, FOR UPDATE re-checks the lease on the newest row version, so
    -- `fenced` below joins on the job id alone.
    SELECT j.job_id
    FROM pipeline_jobs j JOIN outcome o ON j.job_id = o.job_id AND j.tenant_id = o.tenant_id
    WHERE j.state = 'RUNNING' AND j.lease_owner = $1
    ORDER BY j.job_id
    FOR UPDATE OF j
), fenced AS (
    UPDATE pipeline_jobs j
    SET state = 'DONE', finished_at = now(), updated_at = now(), finished_by = $1,
        lease_owner = NULL, lease_expires_at = NULL, error_code = NULL, error_message = NULL
    FROM locked l
    WHERE j.job_id = l.job_id
    RETURNING j.job_id, j.tenant_id, j.invoice_id, j.attempts, j.created_at, j.updated_at,
              j.finished_at
), saved AS (
    UPDATE pipeline_invoices i
    SET document = coalesce(o.document::jsonb, i.document), result = o.result::jsonb,
        quality_grade = o.quality_grade, provider = o.provider,
        invoice_period = o.invoice_period, extraction_ms = o.extraction_ms,
        processed_at = now()
    FROM fenced f JOIN outcome o ON o.job_id = f.job_id
    WHERE i.invoice_id = f.invoice_id AND i.tenant_id = f.tenant_id
    RETURNING i.invoice_id
), drafted AS (
    SELECT * FROM unnest($10::uuid[], $11::uuid[], $12::text[], $13::text[], $14::text[],
                         $15::text[], $16::text[], $17::text[], $18::text[])
         AS d(job_id, incident_id, provider, severity, primary_flag, flags, action_class,
              primary_suspect, mismatch_info)
), incident AS (
    INSERT INTO pipeline_incidents (incident_id, tenant_id, invoice_id, provider, severity,
                                    primary_flag, flags, action_class, primary_suspect,
                                    mismatch_info)
    SELECT DISTINCT ON (f.invoice_id)
           d.incident_id, f.tenant_id, f.invoice_id, d.provider, d.severity, d.primary_flag,
           ARRAY(SELECT jsonb_array_elements_text(d.flags::jsonb)), d.action_class,
           d.primary_suspect, d.mismatch_info::jsonb
    FROM drafted d JOIN fenced f ON f.job_id = d.job_id
    ORDER BY f.invoice_id, d.incident_id
    ON CONFLICT (invoice_id) DO NOTHING
    RETURNING incident_id, invoice_id
), events AS (
    INSERT INTO pipeline_outbox (event_id, tenant_id, event_type, occurred_at, payload)
    SELECT e.event_id, e.tenant_id, e.event_type, e.occurred_at, e.payload
    FROM unnest($19::uuid[], $20::uuid[], $21::text[], $22::text[], $23::timestamptz[],
                $24::jsonb[], $25::uuid[])
         AS e(job_id, event_id, tenant_id, event_type, occurred_at, payload, incident_id)
    WHERE EXISTS (SELECT 1 FROM fenced f WHERE f.job_id = e.job_id)
      AND (e.incident_id IS NULL
           OR EXISTS (SELECT 1 FROM incident n WHERE n.incident_id = e.incident_id))
    RETURNING 1
)
SELECT f.job_id, f.tenant_id, f.invoice_id, 'DONE' AS state, f.attempts,
       NULL::text AS error_code, NULL::text AS error_message, f.created_at, f.updated_at,
       f.finished_at, o.result,
       coalesce(n.incident_id, old.incident_id) AS incident_id,
       n.incident_id IS NOT NULL AS incident_created,
       (SELECT count(*) FROM saved) AS saved, (SELECT count(*) FROM events) AS events
FROM fenced f
JOIN outcome o ON o.job_id = f.job_id
LEFT JOIN incident n ON n.invoice_id = f.invoice_id
LEFT JOIN pipeline_incidents old
       ON old.invoice_id = f.invoice_id AND old.tenant_id = f.tenant_id
"""

# Kill switch (docs/SPEC.md §3.6): a job nobody is running becomes SKIPPED instead of running.
# `finished_at IS NULL` adds nothing the state test does not say; it lets the tenant-wide
# skip read the unfinished-jobs index instead of every job of the tenant.
_SKIPPABLE = (
    "finished_at IS NULL AND (state = 'QUEUED' OR (state = 'RUNNING' AND lease_expires_at < now()))"
)
_SKIP = f"""
UPDATE pipeline_jobs
SET state = 'SKIPPED', finished_at = now(), updated_at = now(), finished_by = $3,
    lease_owner = NULL, lease_expires_at = NULL, error_code = $4, error_message = $5
WHERE tenant_id = $1 AND ($2::uuid IS NULL OR job_id = $2) AND {_SKIPPABLE}
RETURNING job_id
"""

_SWEEP = """
WITH due AS (
    SELECT job_id FROM pipeline_jobs
    WHERE finished_at IS NULL
      AND ((state = 'QUEUED' AND next_attempt_at <= now()
            AND (enqueued_at < next_attempt_at
                 OR enqueued_at < now() - make_interval(secs => $1)))
           OR (state = 'RUNNING'
               AND lease_expires_at < now() - make_interval(secs => $1)
               AND enqueued_at < now() - make_interval(secs => $1)))
    ORDER BY next_attempt_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE pipeline_jobs j SET enqueued_at = now()
FROM due WHERE j.job_id = due.job_id
RETURNING j.job_id, j.tenant_id
"""


def job_view(row: asyncpg.Record) -> JobView:
    raw_result = row.get("result")
    return JobView(
        job_id=row["job_id"],
        tenant_id=row["tenant_id"],
        invoice_id=row["invoice_id"],
        state=JobState(row["state"]),
        attempts=row["attempts"],
        error_code=row["error_code"],
        error_message=row["error_message"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        result=json.loads(raw_result) if raw_result else None,
        incident_id=row.get("incident_id"),
    )


@dataclass(frozen=True)
class JobResult:
    """What a processed job stores on its invoice."""

    document_json: str | None
    result_json: str
    quality_grade: str
    provider: str | None
    invoice_period: str | None
    extraction_ms: float | None


@dataclass(frozen=True)
class Completion:
    """A processed job's outcome, to be committed with the rest of its batch.

    `incident_events` are written only when `incident` is inserted (a retried
    job finds its invoice's incident already there).
    """

    job: ClaimedJob
    result: JobResult
    incident: IncidentRow | None
    events: Sequence[OutboxEvent]
    incident_events: Sequence[OutboxEvent] = ()


@dataclass(frozen=True)
class Completed:
    """A committed job as clients now see it, and whether its incident was created."""

    view: JobView
    incident_created: bool


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Column lists of `rows` for unnest() parameters (`width` empty lists for no rows)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


def _claimed(row: asyncpg.Record) -> ClaimedJob:
    source = None
    if row["source_kind"] is not None:
        source = InvoiceSource(
            kind=SourceKind(row["source_kind"]),
            document_json=row["document"],
            file_bytes=row["file_bytes"],
            content_type=row["content_type"],
            file_name=row["file_name"],
        )
    return ClaimedJob(
        job_id=row["job_id"],
        tenant_id=row["tenant_id"],
        invoice_id=row["invoice_id"],
        attempts=row["attempts"],
        received_at=row["received_at"],
        source=source,
    )


class LeaseLost(PipelineError):
    """Another worker took the job over; this worker's outcome must not be committed."""


class JobStore:
    """SQL for jobs and their invoices.

    `claims`, when given, is the pool `claim_many` runs on: connections that always
    use the generic plan (`create_pool(generic_plans=True)`). The claim's plan is the
    same whatever the batch, but a worker whose first batches were small would
    otherwise have it re-planned on every batch (docs/performance.md).
    """

    def __init__(self, pool: asyncpg.Pool, claims: asyncpg.Pool | None = None) -> None:
        self._pool = pool
        self._claims = claims or pool

    async def create(
        self,
        tenant_id: str,
        submission: Submission,
        received_at: datetime,
        job_id: UUID | None = None,
    ) -> tuple[JobView, bool]:
        """The new job (with `job_id` if given), or the existing one for the same document."""
        row = await self._pool.fetchrow(
            _CREATE,
            uuid4(),
            tenant_id,
            submission.content_hash,
            submission.kind.value,
            submission.content_type,
            submission.file_name,
            submission.document_json,
            submission.file_bytes,
            job_id or uuid4(),
            received_at,
        )
        if row is not None:
            return job_view(row), True
        existing = await self.find(tenant_id, submission.content_hash)
        if existing is None:  # pragma: no cover - the conflicting row was purged meanwhile
            raise LookupError("duplicate document vanished during intake")
        return existing, False

    async def find(self, tenant_id: str, content_hash: str) -> JobView | None:
        """The job of a document this tenant already submitted, if any."""
        row = await self._pool.fetchrow(
            f"SELECT {_VIEW_COLUMNS}{_VIEW_FROM}"
            " WHERE i.tenant_id = $1 AND i.content_hash = $2 AND j.tenant_id = $1",
            tenant_id,
            content_hash,
        )
        return job_view(row) if row else None

    async def find_many(
        self, documents: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], JobView]:
        """The jobs of these (tenant_id, content_hash) documents, in one statement.

        Each document is looked up on its own (LATERAL) by the unique document
        index: on young tables without statistics the planner otherwise joined on
        tenant_id alone, a scan of the tenant's jobs per document (seconds per batch).
        """
        rows = await self._pool.fetch(
            "SELECT v.* FROM unnest($1::text[], $2::text[]) AS d(tenant_id, content_hash)"
            f" CROSS JOIN LATERAL (SELECT {_VIEW_COLUMNS}, i.content_hash{_VIEW_FROM}"
            " WHERE i.tenant_id = d.tenant_id AND i.content_hash = d.content_hash) AS v",
            [tenant for tenant, _ in documents],
            [content_hash for _, content_hash in documents],
        )
        return {(row["tenant_id"], row["content_hash"]): job_view(row) for row in rows}

    async def get(self, job_id: UUID, tenant_id: str) -> JobView | None:
        row = await self._pool.fetchrow(
            f"SELECT {_VIEW_COLUMNS}{_VIEW_FROM} WHERE j.job_id = $1 AND j.tenant_id = $2",
            job_id,
            tenant_id,
        )
        return job_view(row) if row else None

    async def claim_many(
        self,
        jobs: Sequence[tuple[UUID, str]],
        owner: str,
        lease_seconds: float,
        max_attempts: int,
    ) -> dict[UUID, ClaimedJob]:
        """Claim every (job_id, tenant_id) that is claimable, in one statement, by job id.

        A job missing from the answer could not be claimed (another worker runs
        it, it is final, backing off, out of attempts or gone); a job named twice
        is claimed once.
        """
        if not jobs:
            return {}
        rows = await self._claims.fetch(
            _CLAIM_MANY,
            [job_id for job_id, _ in jobs],
            [tenant_id for _, tenant_id in jobs],
            owner,
            lease_seconds,
            max_attempts,
        )
        return {row["job_id"]: _claimed(row) for row in rows}

    async def probe(self, job_id: UUID, tenant_id: str) -> JobProbe | None:
        row = await self._pool.fetchrow(
            "SELECT state, attempts, next_attempt_at <= now() AS due,"
            " coalesce(lease_expires_at < now(), true) AS lease_expired"
            " FROM pipeline_jobs WHERE job_id = $1 AND tenant_id = $2",
            job_id,
            tenant_id,
        )
        if row is None:
            return None
        return JobProbe(JobState(row["state"]), row["attempts"], row["due"], row["lease_expired"])

    async def exhaust(
        self, conn: Connection, job_id: UUID, tenant_id: str, max_attempts: int
    ) -> bool:
        """Mark a job that used up its attempts EXHAUSTED; False if someone else moved it."""
        return await conn.fetchval(_EXHAUST, job_id, tenant_id, max_attempts) is not None

    async def finish(
        self,
        conn: Connection,
        job: ClaimedJob,
        owner: str,
        state: JobState,
        error: tuple[str, str] | None = None,
    ) -> datetime:
        """DONE or FAILED, only while `owner` holds the lease; else `LeaseLost`."""
        code, message = error if error else (None, None)
        finished = await conn.fetchval(
            _FINISH, job.job_id, job.tenant_id, owner, state.value, code, message
        )
        if finished is None:
            raise LeaseLost(str(job.job_id))
        return finished  # type: ignore[no-any-return]

    async def complete_many(
        self, owner: str, completions: Sequence[Completion]
    ) -> dict[UUID, Completed]:
        """Commit a batch of processed jobs atomically, by job id.

        A job missing from the answer lost its lease to another worker: nothing
        of it was written (its new owner commits it); the others are committed.
        """
        if not completions:
            return {}
        outcomes = [
            (
                c.job.job_id,
                c.job.tenant_id,
                c.result.document_json,
                c.result.result_json,
                c.result.quality_grade,
                c.result.provider,
                c.result.invoice_period,
                c.result.extraction_ms,
            )
            for c in completions
        ]
        drafted = [
            (
                c.job.job_id,
                c.incident.incident_id,
                c.incident.provider,
                c.incident.severity,
                c.incident.primary_flag,
                json.dumps(c.incident.flags),
                c.incident.action_class,
                c.incident.primary_suspect,
                c.incident.mismatch_info_json,
            )
            for c in completions
            if c.incident is not None
        ]
        events = [
            (c.job.job_id, *row, None) for c in completions for row in outbox_rows(c.events)
        ] + [
            (c.job.job_id, *row, c.incident.incident_id)
            for c in completions
            if c.incident is not None
            for row in outbox_rows(c.incident_events)
        ]
        rows = await self._pool.fetch(
            _COMPLETE_MANY,
            owner,
            *_columns(outcomes, 8),
            *_columns(drafted, 9),
            *_columns(events, 7),
        )
        return {
            row["job_id"]: Completed(job_view(row), bool(row["incident_created"])) for row in rows
        }

    async def retry(
        self,
        conn: Connection,
        job: ClaimedJob,
        owner: str,
        *,
        max_attempts: int,
        delay_seconds: float,
        error: tuple[str, str],
    ) -> JobState:
        """Back to QUEUED after `delay_seconds`, or EXHAUSTED when no attempt is left."""
        state = await conn.fetchval(
            _RETRY,
            job.job_id,
            job.tenant_id,
            owner,
            max_attempts,
            delay_seconds,
            error[0],
            error[1][:500],
        )
        if state is None:
            raise LeaseLost(str(job.job_id))
        return JobState(state)

    async def skip(
        self, tenant_id: str, job_id: UUID | None, by: str, reason: tuple[str, str]
    ) -> list[UUID]:
        """SKIPPED for the tenant's jobs nobody runs (one job, or all with `job_id` None)."""
        rows = await self._pool.fetch(_SKIP, tenant_id, job_id, by, reason[0], reason[1])
        return [r["job_id"] for r in rows]

    async def sweep(self, stale_seconds: float, limit: int = 500) -> list[tuple[UUID, str]]:
        """Jobs whose retry is due or whose message was lost; marked enqueued now."""
        rows = await self._pool.fetch(_SWEEP, stale_seconds, limit)
        return [(r["job_id"], r["tenant_id"]) for r in rows]
