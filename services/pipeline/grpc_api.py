"""gRPC servicer of `ptf.pipeline.v1.PipelineService`: the same operations as the HTTP API.

Credentials come from metadata: `x-api-key` (any key; a tenant key is scoped
to its tenants) or `x-admin-key` (an admin key). Each method takes the keys and
the message's fields, calls the use case (`app.PipelineApp`), which authorizes
and validates, and maps the result to protobuf; errors are `PtfError`s mapped
by the runtime's `ErrorMappingServer`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.timestamp_pb2 import Timestamp
from ptf.common.v1 import common_pb2
from ptf.pipeline.v1 import pipeline_pb2, pipeline_pb2_grpc

from services.pipeline.app import PipelineApp, PresentedKeys
from services.pipeline.backtests import BacktestStatus
from services.pipeline.documents import Submission
from services.pipeline.events import encode_json
from services.pipeline.incidents import FeedbackStats, Incident
from services.pipeline.jobs import JobView
from services.pipeline.requests import IncidentQuery, given, json_object, message_submission
from services.pipeline.status import ReadinessStatus
from services.runtime.keys import key_from_metadata

Context = grpc.aio.ServicerContext[Any, Any]


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


def backtest_fields(request: pipeline_pb2.StartBacktestRequest) -> dict[str, Any]:
    """A start request's fields as the HTTP body names them; the thresholds JSON is parsed
    here (400 INVALID_THRESHOLDS when it is no JSON object)."""
    raw = request.candidate_thresholds_json
    thresholds = json_object(raw.encode("utf-8", "surrogatepass")) if raw else {}
    return {
        "tenant_id": request.tenant_id,
        "since": request.period_start,
        "until": request.period_end,
        "thresholds": thresholds,
    }


def backtest_job_proto(status: BacktestStatus) -> pipeline_pb2.BacktestJob:
    return pipeline_pb2.BacktestJob(
        backtest_id=status.backtest_id,
        state="JOB_STATE_" + status.state,
        progress=status.progress,
        replayed=status.replayed,
        total=status.total,
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


def _keys(context: Context) -> PresentedKeys:
    """`x-api-key` / `x-admin-key` metadata: both are read; the key's role decides."""
    return PresentedKeys(key_from_metadata(context.invocation_metadata()))


def _enum_value(enum: EnumTypeWrapper, number: int, prefix: str) -> str | None:
    """`SEVERITY_S1` → `S1`; the UNSPECIFIED value → None (no filter).

    A number the enum does not define (the wire allows any) becomes `#<n>`, which
    the shared listing validation refuses like any unknown filter value.
    """
    try:
        value = enum.Name(number).removeprefix(prefix)
    except ValueError:
        return f"#{number}"
    return None if value == "UNSPECIFIED" else value


class PipelineServicer(pipeline_pb2_grpc.PipelineServiceServicer):
    """`PipelineService` over the pipeline's use cases."""

    def __init__(self, app: PipelineApp) -> None:
        self._app = app

    async def SubmitInvoice(
        self, request: pipeline_pb2.SubmitInvoiceRequest, context: Context
    ) -> pipeline_pb2.SubmitInvoiceResponse:
        received_at = datetime.now(UTC)

        async def read(limit: int) -> Submission:
            return message_submission(
                request.extraction_json,
                request.file_content,
                request.file_content_type,
                request.file_name,
                limit,
            )

        outcome = await self._app.submit(
            _keys(context),
            request.tenant_id,
            read,
            received_at,
            wait=not getattr(request, "async"),
        )
        return pipeline_pb2.SubmitInvoiceResponse(
            job=job_proto(outcome.job), deduplicated=outcome.deduplicated
        )

    async def GetJob(
        self, request: pipeline_pb2.GetJobRequest, context: Context
    ) -> pipeline_pb2.Job:
        job = await self._app.get_job(_keys(context), request.job_id, request.tenant_id)
        return job_proto(job)

    async def WatchJob(
        self, request: pipeline_pb2.GetJobRequest, context: Context
    ) -> AsyncIterator[pipeline_pb2.Job]:
        async for job in self._app.watch_job(_keys(context), request.job_id, request.tenant_id):
            yield job_proto(job)

    async def ListIncidents(
        self, request: pipeline_pb2.ListIncidentsRequest, context: Context
    ) -> pipeline_pb2.ListIncidentsResponse:
        query = IncidentQuery(
            tenant_id=request.tenant_id,
            severity=_enum_value(common_pb2.Severity, request.severity, "SEVERITY_"),
            status=_enum_value(pipeline_pb2.IncidentStatus, request.status, "INCIDENT_STATUS_"),
            limit=request.limit,
            cursor=request.cursor,
        )
        page = await self._app.list_incidents(_keys(context), query)
        return pipeline_pb2.ListIncidentsResponse(
            incidents=[incident_proto(i) for i in page.incidents],
            next_cursor=page.next_cursor or "",
        )

    async def ResolveIncident(
        self, request: pipeline_pb2.ResolveIncidentRequest, context: Context
    ) -> pipeline_pb2.Incident:
        body = given({"resolution_reason": request.resolution_reason, "operator": request.operator})
        incident = await self._app.resolve_incident(_keys(context), request.incident_id, body)
        return incident_proto(incident)

    async def SubmitFeedback(
        self, request: pipeline_pb2.SubmitFeedbackRequest, context: Context
    ) -> pipeline_pb2.Incident:
        body = given(
            {
                "hint_correct": request.hint_correct,
                "actual_root_cause": request.actual_root_cause,
                "note": request.note,
                "operator": request.operator,
            }
        )
        incident = await self._app.submit_feedback(_keys(context), request.incident_id, body)
        return incident_proto(incident)

    async def GetFeedbackStats(
        self, request: pipeline_pb2.GetFeedbackStatsRequest, context: Context
    ) -> pipeline_pb2.FeedbackStats:
        _, stats = await self._app.feedback_stats(_keys(context), request.tenant_id)
        return stats_proto(stats)

    async def StartBacktest(
        self, request: pipeline_pb2.StartBacktestRequest, context: Context
    ) -> pipeline_pb2.StartBacktestResponse:
        """Step one: the candidate checked, a token bound to the parameters' hash."""
        started = await self._app.start_backtest(_keys(context), given(backtest_fields(request)))
        expires = datetime.fromisoformat(started["expires_at"])
        return pipeline_pb2.StartBacktestResponse(
            token=common_pb2.ConfirmationToken(
                token=started["confirmation_token"], expires_at=_timestamp(expires)
            ),
            params_hash=started["params_hash"],
        )

    async def ConfirmBacktest(
        self, request: pipeline_pb2.ConfirmBacktestRequest, context: Context
    ) -> pipeline_pb2.BacktestJob:
        """Step two: consume the token (checked against `params` when given) and queue."""
        fields: dict[str, Any] = {"confirmation_token": request.token}
        if request.HasField("params"):
            fields["params"] = backtest_fields(request.params)
        queued = await self._app.confirm_backtest(_keys(context), given(fields))
        return pipeline_pb2.BacktestJob(
            backtest_id=queued["backtest_id"], state="JOB_STATE_" + queued["state"]
        )

    async def GetBacktestResult(
        self, request: pipeline_pb2.GetBacktestResultRequest, context: Context
    ) -> pipeline_pb2.BacktestResult:
        """The job's state and progress; once DONE the metrics and a page of diffs."""
        status, metrics, page = await self._app.backtest_result(
            _keys(context), request.backtest_id, request.limit, request.cursor
        )
        reply = pipeline_pb2.BacktestResult(
            job=backtest_job_proto(status), result_hash=status.result_hash or ""
        )
        if metrics is not None:
            reply.metrics_json = encode_json(metrics)
        if page is not None:
            reply.diffs_json.extend(encode_json(item) for item in page.items)
            reply.next_cursor = page.next_cursor or ""
            reply.truncated = page.truncated
        return reply

    async def WatchBacktest(
        self, request: pipeline_pb2.WatchBacktestRequest, context: Context
    ) -> AsyncIterator[pipeline_pb2.BacktestJob]:
        """Progress of a backtest as it replays (SPEC §3.7: polled or streamed)."""
        async for status in self._app.watch_backtest(_keys(context), request.backtest_id):
            yield backtest_job_proto(status)

    async def GetReadinessStatus(
        self, request: pipeline_pb2.GetReadinessStatusRequest, context: Context
    ) -> pipeline_pb2.ReadinessStatus:
        """Operational state for the health service; it carries no tenant data."""
        return readiness_proto(await self._app.readiness_status(_keys(context)))
