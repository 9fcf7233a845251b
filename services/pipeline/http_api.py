"""HTTP routes of the pipeline: intake, job lookup and the admin API (docs/SPEC.md §3.1, §3.4).

Handlers are thin: take the presented key and the request's values out of
the HTTP request, call the use case (`app.PipelineApp`), shape JSON. Errors
are `PtfError`s that the shared middleware turns into `{error_code, message,
field?}`. Every request's outcome (route template, method, status, duration)
is recorded as an HTTP_REQUEST telemetry event (the shared runtime counts it in
`ptf_http_requests_total`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from services.pipeline.app import PipelineApp, PresentedKeys
from services.pipeline.documents import Submission, file_submission
from services.pipeline.events import http_request
from services.pipeline.intake import too_large
from services.pipeline.jobs import JobState, JobView
from services.pipeline.outbox import EventBuffer
from services.pipeline.requests import (
    Fields,
    IncidentQuery,
    body_submission,
    check_size,
    json_object,
)
from services.runtime.config import parse_boolean
from services.runtime.errors import ClientClosedRequest, InvalidInput, PtfError
from services.runtime.keys import key_from_headers

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_TENANT_KEY = web.RequestKey("ptf_tenant", str)
# System-wide (no tenant): requests refused before a tenant was authorized, admin calls.
_UNATTRIBUTED = ""
# Parse large JSON documents off the event loop so one big body cannot stall other requests.
_THREAD_PARSE_BYTES = 256 * 1024
_CHUNK = 64 * 1024


def _flag(raw: str | None) -> bool:
    """A query flag in the config's true/false words; absent or anything else is false."""
    try:
        return parse_boolean(raw or "")
    except ValueError:
        return False


def _keys(request: web.Request) -> PresentedKeys:
    """`X-API-Key` / `X-Admin-Key`: every route reads both; the key's role decides."""
    return PresentedKeys(key_from_headers(request.headers))


def _attribute(request: web.Request, tenant_id: str) -> None:
    """The tenant this request's HTTP_REQUEST event counts for, once it is authorized."""
    if tenant_id:
        request[_TENANT_KEY] = tenant_id


def _hung_up() -> ClientClosedRequest:
    """The client closed the connection mid-body: its failure, not the server's (nor the
    database's: a bare ConnectionResetError would pass for the database going away)."""
    return ClientClosedRequest("CLIENT_CLOSED_REQUEST", "the client closed the connection")


async def _body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except ConnectionResetError as exc:
        raise _hung_up() from exc


async def _json_body(request: web.Request) -> Fields:
    return json_object(await _body(request))


async def _read_submission(request: web.Request, limit: int) -> Submission:
    """The document of `/full-process`: the body, or the multipart part `file`, up to `limit`."""
    if request.content_length is not None and request.content_length > limit + _CHUNK:
        raise too_large(limit)
    if request.content_type.startswith("multipart/"):
        return await _read_multipart(request, limit)
    raw = await _body(request)
    if len(raw) > _THREAD_PARSE_BYTES:
        return await asyncio.to_thread(body_submission, raw, request.content_type, limit)
    return body_submission(raw, request.content_type, limit)


async def _read_multipart(request: web.Request, limit: int) -> Submission:
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, aiohttp.BodyPartReader) or part.name != "file":
                await part.release()
                continue
            content = bytearray()
            while chunk := await part.read_chunk(_CHUNK):
                content.extend(chunk)
                check_size(len(content), limit)
            declared = part.headers.get(aiohttp.hdrs.CONTENT_TYPE, "")
            data = bytes(content)
            if len(data) > _THREAD_PARSE_BYTES:
                return await asyncio.to_thread(file_submission, data, declared, part.filename or "")
            return file_submission(data, declared, part.filename or "")
    except ConnectionResetError as exc:
        raise _hung_up() from exc
    except (ValueError, aiohttp.ClientPayloadError, BadHttpMessage) as exc:
        # BadHttpMessage: a part's header block does not parse (InvalidHeader, LineTooLong).
        raise InvalidInput("INVALID_MULTIPART", "the multipart body is malformed") from exc
    raise InvalidInput("MISSING_FILE", "multipart body has no 'file' part", field="file")


class PipelineHttp:
    """The pipeline's aiohttp routes."""

    def __init__(self, app: PipelineApp, events: EventBuffer) -> None:
        self._app = app
        self._events = events

    def routes(self) -> list[web.RouteDef]:
        """Every route, each observed under its own path template."""
        table: list[tuple[str, str, Handler]] = [
            ("POST", "/full-process", self.full_process),
            ("GET", "/jobs/{job_id}", self.get_job),
            ("GET", "/admin/incidents", self.list_incidents),
            ("POST", "/admin/incidents/{incident_id}/resolve", self.resolve),
            ("POST", "/admin/incidents/{incident_id}/feedback", self.feedback),
            ("GET", "/admin/feedback-stats", self.feedback_stats),
            ("GET", "/admin/system-health", self.system_health),
            ("POST", "/admin/tenants/{tenant_id}/purge", self.request_purge),
            ("POST", "/admin/tenants/{tenant_id}/purge/confirm", self.confirm_purge),
            ("POST", "/admin/backtests", self.start_backtest),
            ("POST", "/admin/backtests/confirm", self.confirm_backtest),
            ("GET", "/admin/backtests/{backtest_id}", self.backtest_status),
            ("GET", "/admin/backtests/{backtest_id}/result", self.backtest_result),
            ("GET", "/admin/backtests/{backtest_id}/result/download", self.backtest_download),
        ]
        return [
            web.route(method, path, self._observed(path, handler))
            for method, path, handler in table
        ]

    def _observed(self, route: str, handler: Handler) -> Handler:
        """Record the outcome of every request to `route` (template, never the raw path)."""

        async def wrapper(request: web.Request) -> web.StreamResponse:
            started = time.perf_counter()
            status = 500
            try:
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

    async def start_backtest(self, request: web.Request) -> web.StreamResponse:
        """Step one of a backtest: validate the candidate, answer the confirmation token."""
        return await _start_backtest(self._app, request)

    async def confirm_backtest(self, request: web.Request) -> web.StreamResponse:
        """Step two: consume the token; 202 with the queued backtest."""
        return await _confirm_backtest(self._app, request)

    async def backtest_status(self, request: web.Request) -> web.StreamResponse:
        return await _backtest_status(self._app, request)

    async def backtest_result(self, request: web.Request) -> web.StreamResponse:
        return await _backtest_result(self._app, request)

    async def backtest_download(self, request: web.Request) -> web.StreamResponse:
        return await _backtest_download(self._app, request)

    async def full_process(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        received_at = datetime.now(UTC)
        outcome = await self._app.submit(
            _keys(request),
            request.query.get("tenant_id"),
            partial(_read_submission, request),
            received_at,
            wait=not _flag(request.query.get("async")),
            attribute=partial(_attribute, request),
        )
        body = outcome.job.to_dict()
        body["deduplicated"] = outcome.deduplicated
        body["pipeline_total_ms"] = round((time.perf_counter() - started) * 1000, 3)
        return _job_response(outcome.job, body)

    async def get_job(self, request: web.Request) -> web.StreamResponse:
        job = await self._app.get_job(
            _keys(request),
            request.match_info["job_id"],
            request.query.get("tenant_id"),
            attribute=partial(_attribute, request),
        )
        return web.json_response(job.to_dict())

    async def list_incidents(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        page = await self._app.list_incidents(
            _keys(request),
            IncidentQuery(
                tenant_id=query.get("tenant_id"),
                severity=query.get("severity"),
                status=query.get("status"),
                limit=query.get("limit"),
                cursor=query.get("cursor"),
            ),
            attribute=partial(_attribute, request),
        )
        return web.json_response(
            {
                "incidents": [i.to_dict() for i in page.incidents],
                "next_cursor": page.next_cursor,
            }
        )

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        incident = await self._app.resolve_incident(
            _keys(request),
            request.match_info["incident_id"],
            partial(_json_body, request),
            attribute=partial(_attribute, request),
        )
        return web.json_response(incident.to_dict())

    async def feedback(self, request: web.Request) -> web.StreamResponse:
        incident = await self._app.submit_feedback(
            _keys(request),
            request.match_info["incident_id"],
            partial(_json_body, request),
            attribute=partial(_attribute, request),
        )
        return web.json_response(incident.to_dict())

    async def feedback_stats(self, request: web.Request) -> web.StreamResponse:
        tenant, stats = await self._app.feedback_stats(
            _keys(request),
            request.query.get("tenant_id"),
            attribute=partial(_attribute, request),
        )
        return web.json_response({"tenant_id": tenant, **stats.to_dict()})

    async def system_health(self, request: web.Request) -> web.StreamResponse:
        report = await self._app.system_health(
            _keys(request),
            request.query.get("tenant_id"),
            attribute=partial(_attribute, request),
        )
        return web.json_response(report)

    async def request_purge(self, request: web.Request) -> web.StreamResponse:
        """Step one of a tenant purge: what would be deleted, and the token that allows it."""
        purge = await self._app.request_purge(
            _keys(request),
            request.match_info["tenant_id"],
            attribute=partial(_attribute, request),
        )
        return web.json_response(purge.to_dict())

    async def confirm_purge(self, request: web.Request) -> web.StreamResponse:
        """Step two: consume the token and delete the tenant's rows."""
        receipt = await self._app.confirm_purge(
            _keys(request),
            request.match_info["tenant_id"],
            partial(_json_body, request),
            attribute=partial(_attribute, request),
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


async def _start_backtest(app: PipelineApp, request: web.Request) -> web.StreamResponse:
    started = await app.start_backtest(_keys(request), partial(_json_body, request))
    return web.json_response(started)


async def _confirm_backtest(app: PipelineApp, request: web.Request) -> web.StreamResponse:
    queued = await app.confirm_backtest(_keys(request), partial(_json_body, request))
    return web.json_response(queued, status=202)


async def _backtest_status(app: PipelineApp, request: web.Request) -> web.StreamResponse:
    status = await app.backtest_status(_keys(request), request.match_info["backtest_id"])
    return web.json_response(status.to_dict())


async def _backtest_result(app: PipelineApp, request: web.Request) -> web.StreamResponse:
    """`part=metrics` whole; `part=diffs` one page (`limit`, `cursor`)."""
    keys, backtest_id = _keys(request), request.match_info["backtest_id"]
    part = request.query.get("part", "metrics")
    if part == "metrics":
        status, metrics = await app.backtest_metrics(keys, backtest_id)
        return web.json_response(
            {"backtest_id": status.backtest_id, "result_hash": status.result_hash, **metrics}
        )
    if part == "diffs":
        page = await app.backtest_diffs(
            keys, backtest_id, request.query.get("limit"), request.query.get("cursor")
        )
        return web.json_response(
            {"items": page.items, "next_cursor": page.next_cursor, "truncated": page.truncated}
        )
    await app.backtest_status(keys, backtest_id)
    raise InvalidInput("INVALID_PART", "part must be metrics or diffs", field="part")


async def _backtest_download(app: PipelineApp, request: web.Request) -> web.StreamResponse:
    chunks = await app.backtest_download(_keys(request), request.match_info["backtest_id"])
    name = f"backtest-{request.match_info['backtest_id']}.jsonl.gz"
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/gzip",
            "Content-Disposition": f'attachment; filename="{name}"',
        }
    )
    await response.prepare(request)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response
