"""Processing a batch of claimed jobs: extract, evaluate with the pure domain, commit.

`InvoiceProcessor.process_batch` is what a worker loop calls for the jobs it
claimed from one read: each job is extracted and evaluated on its own (a
permanent failure commits FAILED with its code, a transient one QUEUED again
after an exponential backoff, or EXHAUSTED when out of attempts), and every
processed job of the batch commits DONE, its result, at most one incident
(within the pilot's incident budget) and its outbox events in ONE statement,
fenced per job on the worker's lease: a job another worker took over is left
to it while the rest of the batch commits. The worker loops, the sweeper and
the message bookkeeping are in `worker`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

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
from services.pipeline.events import encode_json, invoice_processed, job_exhausted
from services.pipeline.extractors import Extracted, ExtractionFailed, FileExtractor
from services.pipeline.incidents import IncidentRow, NewIncident, new_incident
from services.pipeline.jobs import (
    ClaimedJob,
    Completion,
    InvoiceSource,
    JobResult,
    JobState,
    JobStore,
    JobView,
    LeaseLost,
)
from services.pipeline.market import MarketStore
from services.pipeline.metrics import PipelineMetrics
from services.pipeline.outbox import write_events
from services.pipeline.pilot import PilotGuard
from services.pipeline.queue import QueueMessage
from services.pipeline.settings import QueueSettings
from services.runtime.config import Thresholds
from services.runtime.metric_registry import STAGES
from services.runtime.ratelimit import Admission

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


@dataclass(frozen=True)
class Outcome:
    """What became of one claimed job: its new state, and its view when it is DONE."""

    job: ClaimedJob
    state: JobState
    view: JobView | None = None
    # The incident this job's commit inserted (None when it opened none).
    incident: IncidentRow | None = None


@dataclass(frozen=True)
class _Evaluated:
    """A job extracted and evaluated, waiting for its batch's commit."""

    job: ClaimedJob
    source: InvoiceSource
    extracted: Extracted
    result: ProcessingResult


_Prepared = _Evaluated | _Failed | _Retry


class InvoiceProcessor:
    """Runs claimed jobs end to end and commits their outcomes."""

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

    async def process_batch(self, jobs: Sequence[ClaimedJob], owner: str) -> list[Outcome]:
        """Every job's outcome, committed; a job whose lease was lost has none (left to its
        new owner). Store errors propagate: nothing uncommitted is acknowledged."""
        prepared = await asyncio.gather(
            *(self._prepare(job) for job in jobs), return_exceptions=True
        )
        for item in prepared:
            # A failure `_prepare` returned is that job's outcome; anything it raised
            # (the stores being down) is the batch's, which then stays unacknowledged.
            if isinstance(item, BaseException) and not isinstance(item, _Failed | _Retry):
                raise item
        outcomes: list[Outcome] = []
        evaluated = [p for p in prepared if isinstance(p, _Evaluated)]
        if evaluated:
            started = time.perf_counter()
            try:
                outcomes.extend(await self._commit_done(evaluated, owner))
            finally:
                elapsed_ms = (time.perf_counter() - started) * 1000
                self._metrics.record_stage(COMMIT, elapsed_ms, len(evaluated))
        for job, item in zip(jobs, prepared, strict=True):
            try:
                if isinstance(item, _Failed):
                    outcomes.append(Outcome(job, await self._commit_failed(job, owner, item)))
                elif isinstance(item, _Retry):
                    state = await self.commit_retry(job, owner, item.error_code, item.message)
                    outcomes.append(Outcome(job, state))
            except LeaseLost:
                _lease_lost(job)
        # One counter add per final state, not per job: the exported sums are the same.
        finished = Counter(o.state.value for o in outcomes if o.state.final)
        for final_state, count in finished.items():
            self._metrics.jobs_finished.add(count, {"state": final_state})
        return outcomes

    async def _prepare(self, job: ClaimedJob) -> _Prepared:
        """Extract and evaluate one job; a failure is its outcome, not the batch's."""
        try:
            source = job.source
            if source is None:
                raise _Failed("INVOICE_MISSING", "the invoice of this job no longer exists")
            with self._metrics.stage(EXTRACTION):
                extracted = await self._extract(source)
            with self._metrics.stage(EVALUATION):
                result = await self._evaluate(extracted)
        except (_Failed, _Retry) as outcome:
            return outcome
        except STORE_ERRORS:
            raise
        except Exception as exc:
            log.exception("unexpected error processing a job", extra={"job_id": str(job.job_id)})
            return _Retry("INTERNAL_ERROR", type(exc).__name__)
        return _Evaluated(job, source, extracted, result)

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

    async def _commit_done(self, batch: Sequence[_Evaluated], owner: str) -> list[Outcome]:
        """DONE for every job of `batch` that still holds its lease, in one statement."""
        completions: list[Completion] = []
        slots: dict[UUID, Admission | None] = {}
        totals: dict[UUID, float] = {}
        try:
            for item in batch:
                completion, slot, totals[item.job.job_id] = await self._completion(item)
                completions.append(completion)
                slots[item.job.job_id] = slot
            committed = await self._jobs.complete_many(owner, completions)
        except BaseException:
            for slot in slots.values():
                await self._pilot.release_incident(slot)
            raise
        completions_by_job = {c.job.job_id: c for c in completions}
        outcomes: list[Outcome] = []
        grades: Counter[str] = Counter()
        for item in batch:
            job_id = item.job.job_id
            done = committed.get(job_id)
            if done is None or not done.incident_created:
                await self._pilot.release_incident(slots[job_id])
            if done is None:
                _lease_lost(item.job)
                continue
            self._record(item.result, totals[job_id], incident_created=done.incident_created)
            grades[item.result.quality.grade.value] += 1
            opened = completions_by_job[job_id].incident if done.incident_created else None
            outcomes.append(Outcome(item.job, JobState.DONE, done.view, opened))
        # One counter add per grade, not per invoice: the exported sums are the same.
        for grade, count in grades.items():
            self._metrics.invoices.add(count, {"grade": grade})
        if committed:
            self._on_committed()
        return outcomes

    async def _completion(self, item: _Evaluated) -> tuple[Completion, Admission | None, float]:
        """The rows one processed job commits, its pilot incident slot if it took one, and
        its time since intake in ms."""
        job, result, extracted = item.job, item.result, item.extracted
        total_ms = (datetime.now(UTC) - job.received_at).total_seconds() * 1000
        document_json = (
            None if item.source.kind is SourceKind.JSON else canonical_json(extracted.document)
        )
        incident: NewIncident | None = new_incident(job.tenant_id, job.invoice_id, result)
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
        completion = Completion(
            job=job,
            result=JobResult(
                document_json=document_json,
                result_json=encode_json(result_dict),
                quality_grade=result.quality.grade.value,
                provider=result.extraction.provider,
                invoice_period=result.extraction.invoice_period,
                extraction_ms=extracted.extraction_ms,
            ),
            incident=incident.row if incident is not None else None,
            events=[processed],
            incident_events=[incident.created] if incident is not None else [],
        )
        return completion, slot, total_ms

    def _record(self, result: ProcessingResult, total_ms: float, *, incident_created: bool) -> None:
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


def _lease_lost(job: ClaimedJob) -> None:
    log.warning("lease lost; another worker finishes the job", extra={"job": str(job.job_id)})
