"""HTTP routes of the pipeline: intake, job lookup and the admin API (docs/SPEC.md §3.1, §3.4).

Handlers are thin: authenticate, parse, call intake/stores, shape JSON. Errors
are `PtfError`s that the shared middleware turns into `{error_code, message,
field?}`. Every request's outcome (route template, method, status, duration)
is recorded as an HTTP_REQUEST telemetry event (the shared runtime counts it in
`ptf_http_requests_total`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg
import grpc
from aiohttp import web

from services.pipeline.auth import Authorizer, validate_tenant_id
from services.pipeline.documents import Submission, decode_json, file_submission, json_submission
from services.pipeline.events import http_request
from services.pipeline.incidents import (
    IncidentStore,
    parse_feedback,
    parse_filter,
    parse_incident_id,
    parse_resolution,
)
from services.pipeline.intake import Intake, store_errors, too_large
from services.pipeline.jobs import JobState, JobStore, JobView
from services.pipeline.outbox import EventBuffer
from services.pipeline.purge import TenantPurge, parse_confirmation_token, parse_operator
from services.pipeline.status import local_health
from services.pipeline.telemetry_client import TelemetryClient
from services.runtime.config import Thresholds
from services.runtime.errors import InvalidInput, NotFound, PtfError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_TENANT_KEY = web.RequestKey("ptf_tenant", str)
# System-wide (no tenant): requests refused before a tenant was authorized, admin calls.
_UNATTRIBUTED = ""
# Parse large JSON documents off the event loop so one big body cannot stall other requests.
_THREAD_PARSE_BYTES = 256 * 1024
_CHUNK = 64 * 1024


def _flag(raw: str | None) -> bool:
    return (raw or "").strip().lower() in {"1", "true", "yes"}


def _job_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError as exc:
        raise InvalidInput("INVALID_JOB_ID", "job_id must be a UUID", field="job_id") from exc


def _attribute(request: web.Request, tenant_id: str | None) -> None:
    """The tenant this request's HTTP_REQUEST event counts for, once it is authorized."""
    if tenant_id:
        request[_TENANT_KEY] = tenant_id


def _optional_tenant(raw: str | None) -> str | None:
    return validate_tenant_id(raw) if raw else None


class PipelineHttp:
    """The pipeline's aiohttp routes."""

    def __init__(
        self,
        *,
        authorizer: Authorizer,
        intake: Intake,
        jobs: JobStore,
        incidents: IncidentStore,
        telemetry: TelemetryClient,
        events: EventBuffer,
        thresholds: Thresholds,
        pool: asyncpg.Pool,
        purge: TenantPurge,
        system_health_timeout: float,
    ) -> None:
        self._auth = authorizer
        self._intake = intake
        self._jobs = jobs
        self._incidents = incidents
        self._telemetry = telemetry
        self._events = events
        self._thresholds = thresholds
        self._pool = pool
        self._purge = purge
        self._health_timeout = system_health_timeout

    def routes(self) -> list[web.RouteDef]:
        observed = self._observed
        return [
            web.post("/full-process", observed("/full-process", self.full_process)),
            web.get("/jobs/{job_id}", observed("/jobs/{job_id}", self.get_job)),
            web.get("/admin/incidents", observed("/admin/incidents", self.list_incidents)),
            web.post(
                "/admin/incidents/{incident_id}/resolve",
                observed("/admin/incidents/{incident_id}/resolve", self.resolve),
            ),
            web.post(
                "/admin/incidents/{incident_id}/feedback",
                observed("/admin/incidents/{incident_id}/feedback", self.feedback),
            ),
            web.get(
                "/admin/feedback-stats", observed("/admin/feedback-stats", self.feedback_stats)
            ),
            web.get("/admin/system-health", observed("/admin/system-health", self.system_health)),
            web.post(
                "/admin/tenants/{tenant_id}/purge",
                observed("/admin/tenants/{tenant_id}/purge", self.request_purge),
            ),
            web.post(
                "/admin/tenants/{tenant_id}/purge/confirm",
                observed("/admin/tenants/{tenant_id}/purge/confirm", self.confirm_purge),
            ),
        ]

    def _observed(self, route: str, handler: Handler) -> Handler:
        """Record the outcome of every request to `route` (template, never the raw path)."""

        async def wrapper(request: web.Request) -> web.StreamResponse:
            started = time.perf_counter()
            status = 500
            try:
                async with store_errors():
                    response = await handler(request)
                status = response.status
                return response
            except PtfError as exc:
                status = exc.http
                raise
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                elapsed = (time.perf_counter() - started) * 1000
                tenant = request.get(_TENANT_KEY) or _UNATTRIBUTED
                self._events.add(http_request(tenant, route, request.method, status, elapsed))

        return wrapper

    async def full_process(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        received_at = datetime.now(UTC)
        tenant = await self._auth.tenant(
            request.headers.get("X-API-Key"), request.query.get("tenant_id")
        )
        _attribute(request, tenant)
        wait = not _flag(request.query.get("async"))
        submission = await self._read_submission(request)
        outcome = await self._intake.submit(tenant, submission, received_at, wait=wait)
        body = outcome.job.to_dict()
        body["deduplicated"] = outcome.deduplicated
        body["pipeline_total_ms"] = round((time.perf_counter() - started) * 1000, 3)
        return _job_response(outcome.job, body)

    async def _read_submission(self, request: web.Request) -> Submission:
        limit = self._intake.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit + _CHUNK:
            raise too_large(limit)
        if request.content_type.startswith("multipart/"):
            return await self._read_multipart(request, limit)
        raw = await request.read()
        if len(raw) > limit:
            raise too_large(limit)
        if not raw:
            raise InvalidInput("EMPTY_BODY", "the request body is empty")
        # A JSON content type means an extraction document; anything else (a raw
        # PDF/image, or curl's form default) is classified by its leading bytes.
        declared = request.content_type
        is_json = declared == "application/json" or declared.endswith("+json")
        parse = json_submission if is_json else partial(file_submission, declared_type=declared)
        if len(raw) > _THREAD_PARSE_BYTES:
            return await asyncio.to_thread(parse, raw)
        return parse(raw)

    async def _read_multipart(self, request: web.Request, limit: int) -> Submission:
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, aiohttp.BodyPartReader) or part.name != "file":
                    await part.release()
                    continue
                content = bytearray()
                while chunk := await part.read_chunk(_CHUNK):
                    content.extend(chunk)
                    if len(content) > limit:
                        raise too_large(limit)
                declared = part.headers.get(aiohttp.hdrs.CONTENT_TYPE, "")
                data = bytes(content)
                if len(data) > _THREAD_PARSE_BYTES:
                    return await asyncio.to_thread(
                        file_submission, data, declared, part.filename or ""
                    )
                return file_submission(data, declared, part.filename or "")
        except (ValueError, aiohttp.ClientPayloadError) as exc:
            raise InvalidInput("INVALID_MULTIPART", "the multipart body is malformed") from exc
        raise InvalidInput("MISSING_FILE", "multipart body has no 'file' part", field="file")

    async def get_job(self, request: web.Request) -> web.StreamResponse:
        tenant = await self._auth.tenant(
            request.headers.get("X-API-Key"), request.query.get("tenant_id")
        )
        _attribute(request, tenant)
        job = await self._jobs.get(_job_id(request.match_info["job_id"]), tenant)
        if job is None:
            raise NotFound("JOB_NOT_FOUND", "no such job for this tenant", field="job_id")
        return web.json_response(job.to_dict())

    async def list_incidents(self, request: web.Request) -> web.StreamResponse:
        await self._auth.admin(request.headers.get("X-Admin-Key"))
        query = request.query
        tenant = _optional_tenant(query.get("tenant_id"))
        _attribute(request, tenant)
        page = await self._incidents.page(
            parse_filter(
                tenant,
                query.get("severity"),
                query.get("status"),
                query.get("limit"),
                query.get("cursor"),
            )
        )
        return web.json_response(
            {
                "incidents": [i.to_dict() for i in page.incidents],
                "next_cursor": page.next_cursor,
            }
        )

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        body = decode_json(raw) if raw else {}
        if not isinstance(body, dict):
            raise InvalidInput("INVALID_JSON", "the body must be a JSON object")
        return body

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        await self._auth.admin(request.headers.get("X-Admin-Key"))
        incident_id = parse_incident_id(request.match_info["incident_id"])
        body = await self._json_body(request)
        reason, operator = parse_resolution(body.get("resolution_reason"), body.get("operator"))
        incident = await self._incidents.resolve(incident_id, None, reason, operator)
        _attribute(request, incident.tenant_id)
        return web.json_response(incident.to_dict())

    async def feedback(self, request: web.Request) -> web.StreamResponse:
        await self._auth.admin(request.headers.get("X-Admin-Key"))
        incident_id = parse_incident_id(request.match_info["incident_id"])
        body = await self._json_body(request)
        feedback = parse_feedback(
            body.get("hint_correct"),
            body.get("actual_root_cause"),
            body.get("note"),
            body.get("operator"),
        )
        incident = await self._incidents.submit_feedback(incident_id, None, feedback)
        _attribute(request, incident.tenant_id)
        return web.json_response(incident.to_dict())

    async def feedback_stats(self, request: web.Request) -> web.StreamResponse:
        await self._auth.admin(request.headers.get("X-Admin-Key"))
        tenant = _optional_tenant(request.query.get("tenant_id"))
        _attribute(request, tenant)
        stats = await self._incidents.stats(tenant)
        return web.json_response({"tenant_id": tenant, **stats.to_dict()})

    async def system_health(self, request: web.Request) -> web.StreamResponse:
        admin_key = request.headers.get("X-Admin-Key", "")
        await self._auth.admin(admin_key)
        tenant = _optional_tenant(request.query.get("tenant_id"))
        _attribute(request, tenant)
        try:
            report = await self._telemetry.system_health(tenant, self._health_timeout, admin_key)
        except grpc.aio.AioRpcError as exc:
            log.warning("telemetry system health unavailable: %s", exc.code().name)
            local = await local_health(self._pool, self._thresholds, tenant)
            return web.json_response(
                {"source": "pipeline", "telemetry_error": exc.code().name, **local}
            )
        return web.json_response({"source": "telemetry", **report})

    async def _purge_request(self, request: web.Request) -> tuple[str, dict[str, Any]]:
        """Both purge steps: an admin key, the tenant of the path, a JSON object body."""
        await self._auth.admin(request.headers.get("X-Admin-Key"))
        tenant = validate_tenant_id(request.match_info["tenant_id"])
        _attribute(request, tenant)
        return tenant, await self._json_body(request)

    async def request_purge(self, request: web.Request) -> web.StreamResponse:
        """Step one of a tenant purge: what would be deleted, and the token that allows it."""
        tenant, body = await self._purge_request(request)
        purge = await self._purge.request(tenant, parse_operator(body.get("operator")))
        return web.json_response(purge.to_dict())

    async def confirm_purge(self, request: web.Request) -> web.StreamResponse:
        """Step two: consume the token and delete the tenant's rows."""
        tenant, body = await self._purge_request(request)
        receipt = await self._purge.confirm(
            tenant,
            parse_confirmation_token(body.get("confirmation_token")),
            parse_operator(body.get("operator")),
        )
        return web.json_response(receipt.to_dict())


def _job_response(job: JobView, body: dict[str, Any]) -> web.Response:
    """200 with the result when DONE; the job's own error when it failed; 202 while running."""
    if job.state is JobState.DONE:
        return web.json_response(body, status=200)
    if job.state is JobState.FAILED:
        failed = {"error_code": job.error_code or "JOB_FAILED", "message": job.error_message or ""}
        return web.json_response({**body, **failed}, status=422)
    if job.state is JobState.EXHAUSTED:
        error: dict[str, str | None] = {
            "error_code": "JOB_EXHAUSTED",
            "message": "the job failed on every attempt",
            "last_error_code": job.error_code,
        }
        return web.json_response({**body, **error}, status=503)
    if job.state is JobState.SKIPPED:
        skipped = {"error_code": "JOB_SKIPPED", "message": job.error_message or ""}
        return web.json_response({**body, **skipped}, status=409)
    location = f"/jobs/{job.job_id}?tenant_id={job.tenant_id}"
    return web.json_response(body, status=202, headers={"Location": location})
