"""Intake shared by HTTP `/full-process` and gRPC `SubmitInvoice`.

A submission is validated completely before anything is written (a refused
document leaves no row behind), stored idempotently (same document for the
same tenant → the existing job), put on the job stream, and — in synchronous
mode — waited for until the job is final or the sync timeout passes. A pilot
submission also passes the pilot guard: refused while the kill switch is off,
and a new document takes a slot of the hourly budget (a resubmission does not).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

from services.pipeline.documents import SourceKind, Submission
from services.pipeline.extractors import extractor_unavailable
from services.pipeline.intake_batch import IntakeBatcher, Stored
from services.pipeline.jobs import JobStore, JobView
from services.pipeline.notifications import JobWatcher
from services.pipeline.pilot import PilotGuard
from services.pipeline.settings import IntakeSettings
from services.runtime.db import DATABASE_DOWN
from services.runtime.errors import PayloadTooLarge, Unavailable

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


@asynccontextmanager
async def store_errors() -> AsyncIterator[None]:
    """Postgres unreachable → 503 DATABASE_UNAVAILABLE with Retry-After (docs/SPEC.md §11)."""
    try:
        yield
    except DATABASE_DOWN as exc:
        log.warning("database unavailable: %s", type(exc).__name__)
        raise Unavailable(
            "DATABASE_UNAVAILABLE",
            "the database is unavailable; retry later",
            retry_after_seconds=RETRY_AFTER_SECONDS,
        ) from exc


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        "PAYLOAD_TOO_LARGE", f"the document must be at most {limit // (1024 * 1024)} MB"
    )


@dataclass(frozen=True)
class SubmitOutcome:
    job: JobView
    deduplicated: bool


class Intake:
    """Stores submissions as jobs and optionally waits for their results."""

    def __init__(
        self,
        jobs: JobStore,
        batcher: IntakeBatcher,
        watcher: JobWatcher,
        pilot: PilotGuard,
        *,
        files_supported: bool,
        settings: IntakeSettings,
    ) -> None:
        self._jobs = jobs
        self._batcher = batcher
        self._watcher = watcher
        self._pilot = pilot
        self._files_supported = files_supported
        self.settings = settings

    def check_extractor(self, submission: Submission) -> None:
        """422 EXTRACTOR_UNAVAILABLE for a PDF/image when only JSON extraction is configured."""
        if submission.kind is not SourceKind.JSON and not self._files_supported:
            raise extractor_unavailable()

    async def submit(
        self, tenant_id: str, submission: Submission, received_at: datetime, *, wait: bool
    ) -> SubmitOutcome:
        self.check_extractor(submission)
        self._pilot.check_open(tenant_id)
        job_id = uuid4()
        # Subscribed before the insert, a synchronous caller cannot miss the result; an
        # asynchronous one waits for nothing, so the notifications skip it.
        watching = self._watcher.subscribe(job_id) if wait else contextlib.nullcontext()
        with watching as subscription:
            stored = await self._store(tenant_id, submission, received_at, job_id)
            job, created = stored.job, stored.created
            if stored.queue_error is not None:
                _queue_unavailable(stored.queue_error)
            if wait and not job.state.final:
                timeout = self.settings.sync_timeout_seconds
                async with store_errors():
                    if created and subscription is not None:
                        job = await self._watcher.wait_subscribed(subscription, job, timeout)
                    else:
                        job = await self._watcher.wait_final(job, timeout)
        return SubmitOutcome(job, deduplicated=not created)

    async def _store(
        self, tenant_id: str, submission: Submission, received_at: datetime, job_id: UUID
    ) -> Stored:
        """The job of this document: existing, or new (for the pilot, within its budget).

        New jobs are written by the group-commit batcher with their neighbours and
        queued by it right after the commit.
        """
        if not self._pilot.guards(tenant_id):
            async with store_errors():
                return await self._batcher.store(tenant_id, submission, received_at, job_id)
        async with store_errors():
            existing = await self._jobs.find(tenant_id, submission.content_hash)
        if existing is not None:
            return Stored(existing, created=False)
        slot = await self._pilot.reserve_invoice(tenant_id)
        try:
            async with store_errors():
                stored = await self._batcher.store(tenant_id, submission, received_at, job_id)
        except BaseException:
            await self._pilot.release_invoice(slot)
            raise
        if not stored.created:
            # A concurrent submission of the same document won the insert.
            await self._pilot.release_invoice(slot)
        return stored


def _queue_unavailable(exc: Exception) -> None:
    """The job is stored; the sweeper sends it once Redis is back, and a resubmission
    returns this same job."""
    log.warning("job stored but not queued (%s)", type(exc).__name__)
    raise Unavailable(
        "QUEUE_UNAVAILABLE",
        "the job queue is unavailable; the job is stored and will run later",
        retry_after_seconds=RETRY_AFTER_SECONDS,
    ) from exc
