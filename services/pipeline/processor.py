"""Processing one claimed job: extract, evaluate with the pure domain, commit the outcome.

`InvoiceProcessor` is what a worker loop calls for each job it claimed: a
permanent failure commits FAILED with its code, a transient one QUEUED again
after an exponential backoff (or EXHAUSTED when out of attempts), and a
processed job commits DONE, its result, at most one incident (within the
pilot's incident budget) and its outbox events in one statement fenced on the
worker's lease. The worker loops, the sweeper and the message bookkeeping are
in `worker`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg

from services.pipeline.documents import SourceKind, load_document
from services.pipeline.domain import (
    PipelineDomainError,
    ProcessingResult,
    evaluate_extraction,
    parse_extraction,
)
from services.pipeline.domain.hashing import canonical_json
from services.pipeline.errors import PipelineError
from services.pipeline.events import encode_json, invoice_processed, job_exhausted
from services.pipeline.extractors import Extracted, ExtractionFailed, FileExtractor
from services.pipeline.incidents import new_incident
from services.pipeline.jobs import ClaimedJob, InvoiceSource, JobResult, JobState, JobStore
from services.pipeline.market import MarketStore
from services.pipeline.metrics import PipelineMetrics
from services.pipeline.outbox import write_events
from services.pipeline.pilot import PilotGuard
from services.pipeline.queue import QueueMessage
from services.pipeline.settings import QueueSettings
from services.runtime.config import Thresholds
from services.runtime.metric_registry import STAGES

log = logging.getLogger(__name__)

EXTRACTION, EVALUATION, COMMIT = STAGES
# Marked in a processed job's result when the pilot's incident budget was spent.
INCIDENT_SKIPPED_KEY = "incident_skipped"


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
        incident = new_incident(job.tenant_id, job.invoice_id, result)
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
                incident.row if incident is not None else None,
                [processed],
                [incident.created] if incident is not None else [],
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
