"""Tenant isolation: a key for tenant A is refused on every tenant-scoped operation on B's data.

Each test gives tenant B a job, an open incident and a resolved one, then
aims tenant A's key at them over HTTP and gRPC. The answer must be 403 /
PERMISSION_DENIED, and B's rows (invoices, jobs, incidents, business events)
must be what they were before the attempt. Resolving and feedback are admin
operations on both transports (tests/pipeline/test_operation_permissions.py):
a tenant key is refused there whoever owns the incident.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
import pytest
from ptf.pipeline.v1 import pipeline_pb2, pipeline_pb2_grpc

from services.runtime.errors import ERROR_CODE_METADATA, ERROR_FIELD_METADATA
from tests.pipeline.service_support import (
    Tenant,
    new_tenant,
    s2_document,
    tenant_rows,
    with_incidents,
)
from tests.pipeline.service_support import TenantWithIncidents as Victim
from tests.support.services import ServiceHandle

Metadata = tuple[tuple[str, str], ...]


if TYPE_CHECKING:  # the async stub type exists only in the generated stubs (.pyi)
    Stub = pipeline_pb2_grpc.PipelineServiceAsyncStub
    RpcAttempt = Callable[[Stub, Victim, Metadata], Awaitable[object]]


@pytest.fixture
async def intruder(pipeline: ServiceHandle, pg: asyncpg.Pool) -> Tenant:
    """Tenant A: its key grants only its own tenant."""
    return await new_tenant(pg, "a")


@pytest.fixture
async def victim(pipeline: ServiceHandle, pg: asyncpg.Pool) -> Victim:
    """Tenant B with a finished job, an OPEN incident and a RESOLVED incident."""
    return await with_incidents(pipeline, await new_tenant(pg, "b"))


_RESOLUTION = {"resolution_reason": "not mine to close", "operator": "intruder"}
_FEEDBACK = {"hint_correct": False, "actual_root_cause": "OCR_LOCALE_SUSPECT", "operator": "x"}


async def _http(
    svc: ServiceHandle,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    headers: dict[str, str],
) -> tuple[int, dict[str, Any]]:
    async with svc.http.request(method, path, json=body, headers=headers) as response:
        return response.status, await response.json()


def _path(template: str, victim: Victim) -> str:
    return template.format(
        tenant=victim.tenant.tenant_id,
        job=victim.job_id,
        open=victim.open_incident,
        resolved=victim.resolved_incident,
    )


@pytest.mark.parametrize(
    ("method", "template", "body"),
    [
        ("POST", "/full-process?tenant_id={tenant}", s2_document()),
        ("GET", "/jobs/{job}?tenant_id={tenant}", None),
    ],
    ids=["full-process", "get-job"],
)
async def test_tenant_key_is_forbidden_on_another_tenants_intake_and_jobs_over_http(
    pipeline: ServiceHandle,
    pg: asyncpg.Pool,
    intruder: Tenant,
    victim: Victim,
    method: str,
    template: str,
    body: dict[str, Any] | None,
) -> None:
    before = await tenant_rows(pg, victim.tenant.tenant_id)
    path = _path(template, victim)
    status, reply = await _http(pipeline, method, path, body, intruder.headers)
    assert (status, reply["error_code"], reply["field"]) == (403, "TENANT_FORBIDDEN", "tenant_id")
    assert await tenant_rows(pg, victim.tenant.tenant_id) == before


@pytest.mark.parametrize(
    ("method", "template", "body", "code"),
    [
        ("GET", "/admin/incidents?tenant_id={tenant}", None, "TENANT_FORBIDDEN"),
        ("POST", "/admin/incidents/{open}/resolve", _RESOLUTION, "ROLE_FORBIDDEN"),
        ("POST", "/admin/incidents/{resolved}/feedback", _FEEDBACK, "ROLE_FORBIDDEN"),
        ("GET", "/admin/feedback-stats?tenant_id={tenant}", None, "TENANT_FORBIDDEN"),
        ("GET", "/admin/system-health?tenant_id={tenant}", None, "ROLE_FORBIDDEN"),
    ],
    ids=["list-incidents", "resolve", "feedback", "feedback-stats", "system-health"],
)
async def test_tenant_key_is_forbidden_on_admin_routes_for_another_tenants_data(
    pipeline: ServiceHandle,
    pg: asyncpg.Pool,
    intruder: Tenant,
    victim: Victim,
    method: str,
    template: str,
    body: dict[str, Any] | None,
    code: str,
) -> None:
    """A tenant key offered to the admin API: operators' actions are refused for its role,
    reads of another tenant's incidents and statistics for the tenant."""
    before = await tenant_rows(pg, victim.tenant.tenant_id)
    headers = {"X-Admin-Key": intruder.api_key}
    status, reply = await _http(pipeline, method, _path(template, victim), body, headers)
    assert (status, reply["error_code"]) == (403, code)
    assert await tenant_rows(pg, victim.tenant.tenant_id) == before


def _job_request(victim: Victim) -> pipeline_pb2.GetJobRequest:
    return pipeline_pb2.GetJobRequest(job_id=victim.job_id, tenant_id=victim.tenant.tenant_id)


async def _submit_invoice(stub: Stub, victim: Victim, metadata: Metadata) -> object:
    request = pipeline_pb2.SubmitInvoiceRequest(
        tenant_id=victim.tenant.tenant_id, extraction_json=json.dumps(s2_document())
    )
    return await stub.SubmitInvoice(request, metadata=metadata)


async def _get_job(stub: Stub, victim: Victim, metadata: Metadata) -> object:
    return await stub.GetJob(_job_request(victim), metadata=metadata)


async def _watch_job(stub: Stub, victim: Victim, metadata: Metadata) -> object:
    return [job async for job in stub.WatchJob(_job_request(victim), metadata=metadata)]


async def _list_incidents(stub: Stub, victim: Victim, metadata: Metadata) -> object:
    request = pipeline_pb2.ListIncidentsRequest(tenant_id=victim.tenant.tenant_id)
    return await stub.ListIncidents(request, metadata=metadata)


async def _feedback_stats(stub: Stub, victim: Victim, metadata: Metadata) -> object:
    request = pipeline_pb2.GetFeedbackStatsRequest(tenant_id=victim.tenant.tenant_id)
    return await stub.GetFeedbackStats(request, metadata=metadata)


def _trailers(error: grpc.aio.AioRpcError) -> dict[str, str]:
    return {str(key): str(value) for key, value in error.trailing_metadata() or ()}


@pytest.mark.parametrize(
    ("attempt", "field_name"),
    [
        pytest.param(_submit_invoice, "tenant_id", id="SubmitInvoice"),
        pytest.param(_get_job, "tenant_id", id="GetJob"),
        pytest.param(_watch_job, "tenant_id", id="WatchJob"),
        pytest.param(_list_incidents, "tenant_id", id="ListIncidents"),
        pytest.param(_feedback_stats, "tenant_id", id="GetFeedbackStats"),
    ],
)
async def test_tenant_key_is_forbidden_on_another_tenants_data_over_grpc(
    pipeline: ServiceHandle,
    pg: asyncpg.Pool,
    intruder: Tenant,
    victim: Victim,
    attempt: RpcAttempt,
    field_name: str,
) -> None:
    before = await tenant_rows(pg, victim.tenant.tenant_id)
    stub: Stub = pipeline_pb2_grpc.PipelineServiceStub(pipeline.channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await attempt(stub, victim, intruder.metadata)
    trailers = _trailers(caught.value)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (trailers[ERROR_CODE_METADATA], trailers[ERROR_FIELD_METADATA]) == (
        "TENANT_FORBIDDEN",
        field_name,
    )
    assert await tenant_rows(pg, victim.tenant.tenant_id) == before
