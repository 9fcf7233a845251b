"""gRPC servicer of `ptf.pipeline.v1.PipelineService`: the same operations as the HTTP API.

Credentials come from metadata: `x-api-key` (a tenant key, scoped to its
tenants) or `x-admin-key`. Each method parses the request, calls intake or a
store, and maps the result to protobuf; errors are `PtfError`s mapped by the
shared interceptor. Backtest methods belong to another issue and answer
UNIMPLEMENTED.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from ptf.common.v1 import common_pb2
from ptf.pipeline.v1 import pipeline_pb2, pipeline_pb2_grpc

from services.pipeline.auth import Authorizer, Grant, scoped_tenant
from services.pipeline.documents import Submission, file_submission, json_submission
from services.pipeline.events import encode_json
from services.pipeline.incidents import (
    FeedbackStats,
    Incident,
    IncidentStore,
    parse_feedback,
    parse_filter,
    parse_incident_id,
    parse_resolution,
)
from services.pipeline.intake import Intake, store_errors, too_large
from services.pipeline.jobs import JobStore, JobView
from services.pipeline.notifications import JobWatcher
from services.pipeline.status import ReadinessSource, ReadinessStatus
from services.runtime.errors import InvalidInput, NotFound

Context = grpc.aio.ServicerContext[Any, Any]


def _metadata(context: Context, key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == key and isinstance(value, str):
            return value
    return None


def _timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def job_proto(job: JobView) -> pipeline_pb2.Job:
    result = dict(job.result) if job.result is not None else None
    if result is not None:
        result["incident_id"] = str(job.incident_id) if job.incident_id else None
    return pipeline_pb2.Job(
        job_id=str(job.job_id),
        tenant_id=job.tenant_id,
        invoice_id=str(job.invoice_id),
        state="JOB_STATE_" + job.state.value,
        attempts=job.attempts,
        error_code=job.error_code or "",
        created_at=_timestamp(job.created_at),
        updated_at=_timestamp(job.updated_at),
        result_json=encode_json(result) if result is not None else "",
    )


def _severity(value: str | None) -> str:
    return f"SEVERITY_{value}" if value else "SEVERITY_UNSPECIFIED"


def incident_proto(incident: Incident) -> pipeline_pb2.Incident:
    info = incident.mismatch_info
    feedback = None
    if incident.feedback is not None:
        submitted = incident.feedback.get("submitted_at")
        feedback = pipeline_pb2.Feedback(
            hint_correct=bool(incident.feedback.get("hint_correct")),
            actual_root_cause=str(incident.feedback.get("actual_root_cause") or ""),
            note=str(incident.feedback.get("note") or ""),
            operator=str(incident.feedback.get("operator") or ""),
            submitted_at=_timestamp(datetime.fromisoformat(submitted)) if submitted else None,
        )
    return pipeline_pb2.Incident(
        incident_id=str(incident.incident_id),
        tenant_id=incident.tenant_id,
        invoice_id=str(incident.invoice_id),
        provider=incident.provider,
        severity=_severity(incident.severity),
        primary_flag=incident.primary_flag,
        flags=list(incident.flags),
        action_hint=pipeline_pb2.ActionHint(
            action_class="ACTION_CLASS_" + incident.action_class,
            primary_suspect=incident.primary_suspect,
        ),
        mismatch_info=pipeline_pb2.MismatchInfo(
            has_mismatch=bool(info.get("has_mismatch")),
            severity=_severity(info.get("severity")),
            delta_tl=float(info.get("delta_tl") or 0.0),
            ratio=float(info.get("ratio") or 0.0),
            computed_total_tl=float(info.get("computed_total_tl") or 0.0),
            invoice_total_tl=float(info.get("invoice_total_tl") or 0.0),
            suspect_reason=str(info.get("suspect_reason") or ""),
        ),
        status="INCIDENT_STATUS_" + incident.status,
        resolution_reason=incident.resolution_reason or "",
        feedback=feedback,
        created_at=_timestamp(incident.created_at),
        updated_at=_timestamp(incident.updated_at),
        resolved_at=_timestamp(incident.resolved_at),
    )


def stats_proto(stats: FeedbackStats) -> pipeline_pb2.FeedbackStats:
    return pipeline_pb2.FeedbackStats(
        resolved_count=stats.resolved_count,
        feedback_count=stats.feedback_count,
        hint_correct_count=stats.hint_correct_count,
        feedback_coverage=stats.feedback_coverage,
        hint_accuracy_rate=stats.hint_accuracy_rate,
    )


def readiness_proto(status: ReadinessStatus) -> pipeline_pb2.ReadinessStatus:
    snapshot, extractor, budget = status.snapshot, status.extractor, status.pilot_budget
    return pipeline_pb2.ReadinessStatus(
        queue=pipeline_pb2.ReadinessQueue(depth=snapshot.queue.depth, stuck=snapshot.queue.stuck),
        last_incident_at=_timestamp(snapshot.last_incident_at),
        last_extraction_at=_timestamp(snapshot.last_extraction_at),
        extractor=pipeline_pb2.ReadinessExtractor(
            mode=extractor.mode,
            model=extractor.model,
            key_configured=extractor.key_configured,
            rate_limited=extractor.rate_limited,
        ),
        pilot=pipeline_pb2.ReadinessPilot(
            enabled=status.pilot_enabled,
            tenant_id=status.pilot_tenant_id,
            budget=pipeline_pb2.PilotBudget(
                current=budget.current,
                limit=budget.limit,
                remaining=budget.remaining,
                window_seconds=budget.window_seconds,
            ),
        ),
    )


def _job_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError as exc:
        raise InvalidInput("INVALID_JOB_ID", "job_id must be a UUID", field="job_id") from exc


def _tenants(grant: Grant) -> frozenset[str] | None:
    return None if grant.is_admin else grant.tenants


class PipelineServicer(pipeline_pb2_grpc.PipelineServiceServicer):
    """`PipelineService` over intake, jobs and incidents."""

    def __init__(
        self,
        authorizer: Authorizer,
        intake: Intake,
        jobs: JobStore,
        incidents: IncidentStore,
        watcher: JobWatcher,
        readiness: ReadinessSource,
    ) -> None:
        self._auth = authorizer
        self._readiness = readiness
        self._intake = intake
        self._jobs = jobs
        self._incidents = incidents
        self._watcher = watcher

    async def _grant(self, context: Context) -> Grant:
        return await self._auth.admin_or_tenant(
            _metadata(context, "x-admin-key"), _metadata(context, "x-api-key")
        )

    def _submission(self, request: pipeline_pb2.SubmitInvoiceRequest) -> Submission:
        limit = self._intake.settings.max_body_bytes
        if request.extraction_json:
            if len(request.extraction_json) > limit:
                raise too_large(limit)
            return json_submission(request.extraction_json)
        if request.file_content:
            if len(request.file_content) > limit:
                raise too_large(limit)
            return file_submission(
                request.file_content, request.file_content_type, request.file_name
            )
        raise InvalidInput(
            "MISSING_DOCUMENT", "set extraction_json or file_content", field="extraction_json"
        )

    async def SubmitInvoice(
        self, request: pipeline_pb2.SubmitInvoiceRequest, context: Context
    ) -> pipeline_pb2.SubmitInvoiceResponse:
        received_at = datetime.now(UTC)
        tenant = await self._auth.tenant(_metadata(context, "x-api-key"), request.tenant_id)
        outcome = await self._intake.submit(
            tenant, self._submission(request), received_at, wait=not getattr(request, "async")
        )
        return pipeline_pb2.SubmitInvoiceResponse(
            job=job_proto(outcome.job), deduplicated=outcome.deduplicated
        )

    async def _job(self, request: pipeline_pb2.GetJobRequest, context: Context) -> JobView:
        grant = await self._grant(context)
        tenant = scoped_tenant(grant, request.tenant_id)
        if tenant is None:
            raise InvalidInput("INVALID_TENANT_ID", "tenant_id is required", field="tenant_id")
        async with store_errors():
            job = await self._jobs.get(_job_id(request.job_id), tenant)
        if job is None:
            raise NotFound("JOB_NOT_FOUND", "no such job for this tenant", field="job_id")
        return job

    async def GetJob(
        self, request: pipeline_pb2.GetJobRequest, context: Context
    ) -> pipeline_pb2.Job:
        return job_proto(await self._job(request, context))

    async def WatchJob(
        self, request: pipeline_pb2.GetJobRequest, context: Context
    ) -> AsyncIterator[pipeline_pb2.Job]:
        job = await self._job(request, context)
        async for current in self._watcher.watch(job.job_id, job.tenant_id):
            yield job_proto(current)

    async def ListIncidents(
        self, request: pipeline_pb2.ListIncidentsRequest, context: Context
    ) -> pipeline_pb2.ListIncidentsResponse:
        grant = await self._grant(context)
        severity = common_pb2.Severity.Name(request.severity).removeprefix("SEVERITY_")
        status = pipeline_pb2.IncidentStatus.Name(request.status).removeprefix("INCIDENT_STATUS_")
        query = parse_filter(
            scoped_tenant(grant, request.tenant_id),
            None if severity == "UNSPECIFIED" else severity,
            None if status == "UNSPECIFIED" else status,
            request.limit,
            request.cursor,
        )
        async with store_errors():
            page = await self._incidents.page(query)
        return pipeline_pb2.ListIncidentsResponse(
            incidents=[incident_proto(i) for i in page.incidents],
            next_cursor=page.next_cursor or "",
        )

    async def ResolveIncident(
        self, request: pipeline_pb2.ResolveIncidentRequest, context: Context
    ) -> pipeline_pb2.Incident:
        grant = await self._grant(context)
        reason, operator = parse_resolution(request.resolution_reason, request.operator)
        async with store_errors():
            incident = await self._incidents.resolve(
                parse_incident_id(request.incident_id), _tenants(grant), reason, operator
            )
        return incident_proto(incident)

    async def SubmitFeedback(
        self, request: pipeline_pb2.SubmitFeedbackRequest, context: Context
    ) -> pipeline_pb2.Incident:
        grant = await self._grant(context)
        feedback = parse_feedback(
            request.hint_correct, request.actual_root_cause, request.note, request.operator
        )
        async with store_errors():
            incident = await self._incidents.submit_feedback(
                parse_incident_id(request.incident_id), _tenants(grant), feedback
            )
        return incident_proto(incident)

    async def GetFeedbackStats(
        self, request: pipeline_pb2.GetFeedbackStatsRequest, context: Context
    ) -> pipeline_pb2.FeedbackStats:
        grant = await self._grant(context)
        tenant = scoped_tenant(grant, request.tenant_id)
        async with store_errors():
            stats = await self._incidents.stats(tenant)
        return stats_proto(stats)

    async def StartBacktest(
        self, request: pipeline_pb2.StartBacktestRequest, context: Context
    ) -> pipeline_pb2.StartBacktestResponse:
        """Backtests (SPEC §3.7) are built by their own issue; UNIMPLEMENTED until then."""
        raise NotImplementedError

    async def ConfirmBacktest(
        self, request: pipeline_pb2.ConfirmBacktestRequest, context: Context
    ) -> pipeline_pb2.BacktestJob:
        """See `StartBacktest`."""
        raise NotImplementedError

    async def GetBacktestResult(
        self, request: pipeline_pb2.GetBacktestResultRequest, context: Context
    ) -> pipeline_pb2.BacktestResult:
        """See `StartBacktest`."""
        raise NotImplementedError

    async def GetReadinessStatus(
        self, request: pipeline_pb2.GetReadinessStatusRequest, context: Context
    ) -> pipeline_pb2.ReadinessStatus:
        """Operational state for the health service; it carries no tenant data."""
        async with store_errors():
            status = await self._readiness.status()
        return readiness_proto(status)
