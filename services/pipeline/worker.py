"""Workers: take job messages from the stream, run the pipeline, commit, then acknowledge.

Per message: claim the job row (conditional UPDATE with a lease); if that
fails, decide from the row whether the message is spent (job final, gone, or
waiting for a backoff the sweeper will honour) or must stay pending (another
worker holds a live lease). A claimed job is extracted, evaluated by the pure
domain and committed in one transaction — job DONE (fenced on the lease),
result, at most one incident, outbox events — and only then acknowledged. A
worker that dies leaves the message pending and the lease running out;
XAUTOCLAIM gives the message to a live worker after the visibility timeout.
Transient failures go back to QUEUED with exponential backoff; a job out of
attempts becomes EXHAUSTED. While the pilot kill switch is off, pilot jobs are
marked SKIPPED instead of run, and a pilot incident is opened only within the
pilot's hourly incident budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import uuid4

import asyncpg

from services.pipeline.documents import SourceKind, load_document
from services.pipeline.domain import (
    PipelineDomainError,
    ProcessingResult,
    evaluate_extraction,
    parse_extraction,
)
from services.pipeline.domain.hashing import canonical_json
from services.pipeline.errors import STORE_ERRORS, PipelineError
from services.pipeline.events import (
    encode_json,
    incident_created,
    invoice_processed,
    job_exhausted,
)
from services.pipeline.extractors import Extracted, ExtractionFailed, FileExtractor
from services.pipeline.incidents import incident_row
from services.pipeline.jobs import (
    ClaimedJob,
    InvoiceSource,
    JobResult,
    JobState,
    JobStore,
    LeaseLost,
)
from services.pipeline.market import MarketStore
from services.pipeline.metrics import PipelineMetrics
from services.pipeline.notifications import JobNotifier
from services.pipeline.outbox import write_events
from services.pipeline.pilot import PILOT_DISABLED, PilotGuard
from services.pipeline.queue import JobQueue, QueueMessage
from services.pipeline.settings import QueueSettings
from services.runtime.config import Thresholds
from services.runtime.metric_registry import STAGES

log = logging.getLogger(__name__)

# Consumers idle this long with nothing pending belong to workers that are gone.
_CONSUMER_IDLE_MS = 3_600_000
_PRUNE_INTERVAL_SECONDS = 300.0
_INFRA_ERRORS = STORE_ERRORS
_SKIP_REASON = (PILOT_DISABLED, "the pilot is switched off (PILOT_ENABLED=false)")
EXTRACTION, EVALUATION, COMMIT = STAGES
# Marked in a processed job's result when the pilot's incident budget was spent.
INCIDENT_SKIPPED_KEY = "incident_skipped"


def consumer_name(index: int) -> str:
    """Unique per worker loop: host, pid, loop index and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{index}:{uuid4().hex[:6]}"


def backoff_seconds(attempt: int, settings: QueueSettings) -> float:
    """base × 2^(attempt-1), capped at the maximum."""
    exponent = max(0, attempt - 1)
    return float(min(settings.backoff_max_seconds, settings.backoff_base_seconds * 2**exponent))


class _Failed(PipelineError):
    """A permanent failure of one job: FAILED with this code."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


class _Retry(PipelineError):
    """A transient failure: try again later (or EXHAUSTED)."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


class InvoiceProcessor:
    """Runs one claimed job end to end and commits its outcome; returns the final job state."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        jobs: JobStore,
        market: MarketStore,
        file_extractor: FileExtractor | None,
        thresholds: Thresholds,
        settings: QueueSettings,
        metrics: PipelineMetrics,
        pilot: PilotGuard,
        on_committed: Callable[[], None] = lambda: None,
    ) -> None:
        self._pool = pool
        self._jobs = jobs
        self._market = market
        self._extractor = file_extractor
        self._thresholds = thresholds
        self._pilot = pilot
        self._settings = settings
        self._metrics = metrics
        self._on_committed = on_committed

    async def process(self, job: ClaimedJob, owner: str) -> JobState:
        try:
            source = job.source
            if source is None:
                raise _Failed("INVOICE_MISSING", "the invoice of this job no longer exists")
            with self._metrics.stage(EXTRACTION):
                extracted = await self._extract(source)
            with self._metrics.stage(EVALUATION):
                result = await self._evaluate(extracted)
            with self._metrics.stage(COMMIT):
                state = await self._commit_done(job, owner, source, extracted, result)
        except _Failed as failure:
            state = await self._commit_failed(job, owner, failure)
        except _Retry as retry:
            state = await self.commit_retry(job, owner, retry.error_code, retry.message)
        if state.final:
            self._metrics.jobs_finished.add(1, {"state": state.value})
        return state

    async def _evaluate(self, extracted: Extracted) -> ProcessingResult:
        """Parse the extraction, look up market prices and tariffs, run the domain rules."""
        try:
            extraction = parse_extraction(extracted.document)
        except PipelineDomainError as exc:
            raise _Failed(exc.error_code.value, exc.message) from exc
        prices, tariffs = await self._market.lookup(
            extraction.invoice_period, extraction.tariff_group
        )
        return evaluate_extraction(extraction, self._thresholds, prices, tariffs)

    async def _extract(self, source: InvoiceSource) -> Extracted:
        if source.kind is SourceKind.JSON:
            if source.document_json is None:
                raise _Failed("INVOICE_MISSING", "the stored document is empty")
            return Extracted(load_document(source.document_json), None)
        if self._extractor is None or source.file_bytes is None:
            raise _Failed("EXTRACTOR_UNAVAILABLE", "no extractor configured for files")
        try:
            extracted = await self._extractor.extract(
                source.file_bytes, source.content_type, source.file_name
            )
        except ExtractionFailed as exc:
            if exc.retryable:
                raise _Retry(exc.error_code, exc.message) from exc
            raise _Failed(exc.error_code, exc.message) from exc
        return extracted

    async def _commit_done(
        self,
        job: ClaimedJob,
        owner: str,
        source: InvoiceSource,
        extracted: Extracted,
        result: ProcessingResult,
    ) -> JobState:
        total_ms = (datetime.now(UTC) - job.received_at).total_seconds() * 1000
        document_json = (
            None if source.kind is SourceKind.JSON else canonical_json(extracted.document)
        )
        incident = incident_row(result.incident) if result.incident is not None else None
        result_dict = result.to_dict()
        slot = await self._pilot.reserve_incident(job.tenant_id) if incident else None
        if slot is not None and not slot.admitted:
            incident = None
            result_dict[INCIDENT_SKIPPED_KEY] = "PILOT_INCIDENT_BUDGET_SPENT"
        processed = invoice_processed(
            job.tenant_id,
            result,
            invoice_id=job.invoice_id,
            job_id=job.job_id,
            pipeline_total_ms=total_ms,
            extraction_ms=extracted.extraction_ms,
        )
        try:
            created = await self._jobs.complete(
                job,
                owner,
                JobResult(
                    document_json=document_json,
                    result_json=encode_json(result_dict),
                    quality_grade=result.quality.grade.value,
                    provider=result.extraction.provider,
                    invoice_period=result.extraction.invoice_period,
                    extraction_ms=extracted.extraction_ms,
                ),
                incident,
                [processed],
                [incident_created(job.tenant_id, incident.incident_id, job.invoice_id, result)]
                if incident is not None
                else [],
            )
        except BaseException:
            await self._pilot.release_incident(slot)
            raise
        if not created:
            await self._pilot.release_incident(slot)
        self._on_committed()
        self._record(result, total_ms, incident_created=created)
        return JobState.DONE

    def _record(self, result: ProcessingResult, total_ms: float, *, incident_created: bool) -> None:
        self._metrics.invoices.add(1, {"grade": result.quality.grade.value})
        self._metrics.end_to_end.record(total_ms)
        if result.accept_rounding:
            self._metrics.accept_rounding.add(1)
        if incident_created and result.incident is not None:
            self._metrics.incidents.add(
                1,
                {
                    "severity": result.incident.severity.value,
                    "primary_flag": result.incident.primary_flag.value,
                    "action_class": result.incident.action_hint.action_class.value,
                },
            )

    async def _commit_failed(self, job: ClaimedJob, owner: str, failure: _Failed) -> JobState:
        log.info(
            "job failed permanently: %s", failure.error_code, extra={"job_id": str(job.job_id)}
        )
        async with self._pool.acquire() as conn, conn.transaction():
            await self._jobs.finish(
                conn, job, owner, JobState.FAILED, (failure.error_code, failure.message[:500])
            )
        return JobState.FAILED

    async def commit_retry(
        self, job: ClaimedJob, owner: str, error_code: str, message: str
    ) -> JobState:
        """QUEUED again after a backoff, or EXHAUSTED (with its event) when out of attempts."""
        delay = backoff_seconds(job.attempts, self._settings)
        async with self._pool.acquire() as conn, conn.transaction():
            state = await self._jobs.retry(
                conn,
                job,
                owner,
                max_attempts=self._settings.max_attempts,
                delay_seconds=delay,
                error=(error_code, message),
            )
            if state is JobState.EXHAUSTED:
                await write_events(conn, [job_exhausted(job.tenant_id, job.job_id)])
        if state is JobState.EXHAUSTED:
            self._on_committed()
        log.info(
            "job attempt %d failed (%s): %s",
            job.attempts,
            error_code,
            "exhausted" if state is JobState.EXHAUSTED else f"retry in {delay:.1f} s",
            extra={"job_id": str(job.job_id)},
        )
        return state

    async def exhaust(self, message: QueueMessage) -> bool:
        """EXHAUSTED for a job whose attempts ran out while no worker held it."""
        if message.job_id is None:
            return False
        async with self._pool.acquire() as conn, conn.transaction():
            done = await self._jobs.exhaust(
                conn, message.job_id, message.tenant_id, self._settings.max_attempts
            )
            if done:
                await write_events(conn, [job_exhausted(message.tenant_id, message.job_id)])
        if done:
            self._on_committed()
            self._metrics.jobs_finished.add(1, {"state": JobState.EXHAUSTED.value})
        return done


class Worker:
    """One consumer of the job stream, processing one job at a time."""

    def __init__(
        self,
        name: str,
        queue: JobQueue,
        jobs: JobStore,
        processor: InvoiceProcessor,
        notifier: JobNotifier,
        settings: QueueSettings,
        pilot: PilotGuard,
    ) -> None:
        self.name = name
        self._queue = queue
        self._jobs = jobs
        self._processor = processor
        self._notifier = notifier
        self._settings = settings
        self._pilot = pilot
        # The most recent outcomes of this worker, for tests and debugging.
        self.recent: deque[tuple[str, JobState]] = deque(maxlen=1000)

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set; messages already taken are finished first."""
        last_reclaim = 0.0
        delay = 0.1
        while not stop.is_set():
            try:
                messages: list[QueueMessage] = []
                if time.monotonic() - last_reclaim >= self._settings.reclaim_interval_seconds:
                    last_reclaim = time.monotonic()
                    messages = await self._queue.reclaim(
                        self.name, int(self._settings.visibility_timeout_seconds * 1000), 10
                    )
                if not messages:
                    messages = await self._queue.read(self.name, 1, self._settings.read_block_ms)
                for message in messages:
                    await self.handle(message)
                delay = 0.1
            except _INFRA_ERRORS as exc:
                log.warning("worker %s: store unavailable (%s)", self.name, type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def handle(self, message: QueueMessage) -> None:
        """Process one message; acknowledge it only once its outcome is committed."""
        if message.job_id is None:
            await self._queue.ack(message.message_id)
            return
        if self._pilot.skips_jobs_of(message.tenant_id):
            await self._skip(message)
            return
        job = await self._jobs.claim(
            message.job_id,
            message.tenant_id,
            self.name,
            self._settings.visibility_timeout_seconds,
            self._settings.max_attempts,
        )
        if job is None:
            await self._unclaimed(message)
            return
        try:
            state = await self._processor.process(job, self.name)
        except LeaseLost:
            log.warning(
                "lease lost; another worker finishes the job", extra={"job": str(job.job_id)}
            )
            return
        except _INFRA_ERRORS:
            raise
        except Exception as exc:
            log.exception("unexpected error processing a job", extra={"job_id": str(job.job_id)})
            state = await self._processor.commit_retry(
                job, self.name, "INTERNAL_ERROR", type(exc).__name__
            )
        await self._queue.ack(message.message_id)
        self.recent.append((str(job.job_id), state))
        await self._notifier.publish(job.job_id, state)

    async def _skip(self, message: QueueMessage) -> None:
        """The kill switch is off: SKIPPED instead of run (a job someone runs is left to them)."""
        assert message.job_id is not None
        if await self._jobs.skip(message.tenant_id, message.job_id, self.name, _SKIP_REASON):
            await self._queue.ack(message.message_id)
            self.recent.append((str(message.job_id), JobState.SKIPPED))
            await self._notifier.publish(message.job_id, JobState.SKIPPED)
            return
        await self._unclaimed(message)

    async def _unclaimed(self, message: QueueMessage) -> None:
        """A message whose job this worker could not claim: spent, or left pending."""
        assert message.job_id is not None
        probe = await self._jobs.probe(message.job_id, message.tenant_id)
        if probe is None or probe.state.final:
            await self._queue.ack(message.message_id)
            return
        movable = probe.state is JobState.QUEUED or probe.lease_expired
        if probe.attempts >= self._settings.max_attempts and movable:
            if await self._processor.exhaust(message):
                await self._queue.ack(message.message_id)
                await self._notifier.publish(message.job_id, JobState.EXHAUSTED)
            return
        if probe.state is JobState.QUEUED and not probe.due:
            # Backing off: the sweeper re-sends the job when its retry is due.
            await self._queue.ack(message.message_id)
        # RUNNING under a live lease: stay pending; the holder acknowledges it, or
        # it is reclaimed again after the visibility timeout if the holder dies.


class Sweeper:
    """Re-sends jobs whose retry is due or whose message was lost (crash before XADD).

    While the pilot kill switch is off it also marks every waiting pilot job
    SKIPPED, so the queue drains even where no message is left to deliver them.
    """

    def __init__(
        self,
        jobs: JobStore,
        queue: JobQueue,
        notifier: JobNotifier,
        settings: QueueSettings,
        pilot: PilotGuard,
    ) -> None:
        self._jobs = jobs
        self._queue = queue
        self._notifier = notifier
        self._settings = settings
        self._pilot = pilot

    async def sweep_once(self) -> int:
        if not self._pilot.enabled:
            skipped = await self._jobs.skip(self._pilot.tenant_id, None, "sweeper", _SKIP_REASON)
            for job_id in skipped:
                await self._notifier.publish(job_id, JobState.SKIPPED)
        due = await self._jobs.sweep(self._settings.visibility_timeout_seconds)
        await self._queue.enqueue(due)
        return len(due)

    async def run(self, stop: asyncio.Event) -> None:
        last_prune = time.monotonic()
        while not stop.is_set():
            try:
                await self.sweep_once()
                if time.monotonic() - last_prune >= _PRUNE_INTERVAL_SECONDS:
                    last_prune = time.monotonic()
                    await self._queue.prune_consumers(_CONSUMER_IDLE_MS)
            except _INFRA_ERRORS as exc:
                log.warning("sweeper: store unavailable (%s)", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._settings.sweep_interval_seconds)


class WorkerGroup:
    """N workers and one sweeper in this process, stopped together and gracefully."""

    def __init__(self, workers: list[Worker], sweeper: Sweeper, queue: JobQueue) -> None:
        self.workers = workers
        self._sweeper = sweeper
        self._queue = queue
        self._stop = asyncio.Event()
        self._finished = asyncio.Event()
        self._started = False

    async def run(self) -> None:
        self._started = True
        try:
            try:
                await self._queue.ensure_group()
            except _INFRA_ERRORS as exc:
                log.warning("job stream unavailable at start (%s)", type(exc).__name__)
            await asyncio.gather(
                self._sweeper.run(self._stop), *(w.run(self._stop) for w in self.workers)
            )
        finally:
            self._finished.set()

    async def stop(self, grace_seconds: float) -> None:
        """Stop taking messages and wait up to `grace_seconds` for jobs in progress."""
        self._stop.set()
        if not self._started:
            return
        try:
            await asyncio.wait_for(self._finished.wait(), timeout=grace_seconds)
        except TimeoutError:
            log.warning(
                "workers did not stop within %.1f s; their jobs will be reclaimed", grace_seconds
            )
