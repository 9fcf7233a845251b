"""gRPC `SubmitInvoice`, `GetJob` and `WatchJob`: the same intake as HTTP, over gRPC."""

from __future__ import annotations

import json

import asyncpg
import grpc
import pytest
from ptf.pipeline.v1 import pipeline_pb2, pipeline_pb2_grpc

from services.runtime.errors import ERROR_CODE_METADATA, ERROR_FIELD_METADATA
from tests.pipeline.service_support import (
    NO_ROWS,
    Tenant,
    business_rows,
    document,
    field,
    new_tenant,
    s2_document,
)
from tests.support.services import ServiceHandle

DONE = pipeline_pb2.JOB_STATE_DONE


def _stub(svc: ServiceHandle) -> pipeline_pb2_grpc.PipelineServiceAsyncStub:
    return pipeline_pb2_grpc.PipelineServiceStub(svc.channel)


def _request(
    tenant: Tenant, doc: object, *, asynchronous: bool = False
) -> pipeline_pb2.SubmitInvoiceRequest:
    request = pipeline_pb2.SubmitInvoiceRequest(
        tenant_id=tenant.tenant_id, extraction_json=json.dumps(doc)
    )
    setattr(request, "async", asynchronous)
    return request


def _trailer(error: grpc.aio.AioRpcError, key: str) -> str | None:
    for name, value in error.trailing_metadata() or ():
        if name == key:
            return str(value)
    return None


async def test_synchronous_submit_returns_the_done_job_with_its_result(
    pipeline: ServiceHandle, tenant: Tenant
) -> None:
    reply = await _stub(pipeline).SubmitInvoice(
        _request(tenant, s2_document()), metadata=tenant.metadata
    )
    result = json.loads(reply.job.result_json)
    assert reply.job.state == DONE
    assert reply.deduplicated is False
    assert result["incident"]["primary_flag"] == "INVOICE_TOTAL_MISMATCH"
    assert result["incident_id"]


async def test_watch_job_streams_states_until_done(pipeline: ServiceHandle, tenant: Tenant) -> None:
    stub = _stub(pipeline)
    submitted = await stub.SubmitInvoice(
        _request(tenant, document(), asynchronous=True), metadata=tenant.metadata
    )
    states = [
        job.state
        async for job in stub.WatchJob(
            pipeline_pb2.GetJobRequest(job_id=submitted.job.job_id, tenant_id=tenant.tenant_id),
            metadata=tenant.metadata,
        )
    ]
    assert states[-1] == DONE
    assert len(states) == len(set(states))


async def test_resubmitting_over_grpc_returns_the_same_job(
    pipeline: ServiceHandle, tenant: Tenant, pg: asyncpg.Pool
) -> None:
    doc = document()
    stub = _stub(pipeline)
    first = await stub.SubmitInvoice(_request(tenant, doc), metadata=tenant.metadata)
    second = await stub.SubmitInvoice(_request(tenant, doc), metadata=tenant.metadata)
    assert second.job.job_id == first.job.job_id
    assert second.deduplicated is True
    assert (await business_rows(pg, tenant.tenant_id))["jobs"] == 1


async def test_get_job_returns_the_job_to_its_tenant(
    pipeline: ServiceHandle, tenant: Tenant
) -> None:
    stub = _stub(pipeline)
    submitted = await stub.SubmitInvoice(_request(tenant, document()), metadata=tenant.metadata)
    job = await stub.GetJob(
        pipeline_pb2.GetJobRequest(job_id=submitted.job.job_id, tenant_id=tenant.tenant_id),
        metadata=tenant.metadata,
    )
    assert (job.job_id, job.state) == (submitted.job.job_id, DONE)


async def test_invalid_document_over_grpc_is_invalid_argument_naming_the_field(
    pipeline: ServiceHandle, tenant: Tenant, pg: asyncpg.Pool
) -> None:
    """Fault: confidence 1.5. Must: INVALID_ARGUMENT with the code and field, nothing written."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _stub(pipeline).SubmitInvoice(
            _request(tenant, document(consumption_kwh=field(10000, 1.5))),
            metadata=tenant.metadata,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _trailer(caught.value, ERROR_CODE_METADATA) == "CONFIDENCE_OUT_OF_RANGE"
    assert _trailer(caught.value, ERROR_FIELD_METADATA) == "consumption_kwh.confidence"
    assert await business_rows(pg, tenant.tenant_id) == NO_ROWS


async def test_wrong_api_key_over_grpc_is_unauthenticated(
    pipeline: ServiceHandle, tenant: Tenant, pg: asyncpg.Pool
) -> None:
    """Fault: an unknown x-api-key. Must: UNAUTHENTICATED / INVALID_API_KEY, nothing written."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _stub(pipeline).SubmitInvoice(
            _request(tenant, document()), metadata=(("x-api-key", "nope"),)
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _trailer(caught.value, ERROR_CODE_METADATA) == "INVALID_API_KEY"
    assert await business_rows(pg, tenant.tenant_id) == NO_ROWS


async def test_key_of_another_tenant_over_grpc_is_permission_denied(
    pipeline: ServiceHandle, tenant: Tenant, pg: asyncpg.Pool
) -> None:
    """Fault: tenant B's key for tenant A. Must: PERMISSION_DENIED, nothing written."""
    other = await new_tenant(pg)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _stub(pipeline).SubmitInvoice(_request(tenant, document()), metadata=other.metadata)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert _trailer(caught.value, ERROR_CODE_METADATA) == "TENANT_FORBIDDEN"
    assert await business_rows(pg, tenant.tenant_id) == NO_ROWS


async def test_get_job_of_another_tenant_is_permission_denied(
    pipeline: ServiceHandle, tenant: Tenant, pg: asyncpg.Pool
) -> None:
    """Fault: tenant B asks for tenant A's job. Must: PERMISSION_DENIED, no job data."""
    other = await new_tenant(pg)
    stub = _stub(pipeline)
    submitted = await stub.SubmitInvoice(_request(tenant, document()), metadata=tenant.metadata)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetJob(
            pipeline_pb2.GetJobRequest(job_id=submitted.job.job_id, tenant_id=tenant.tenant_id),
            metadata=other.metadata,
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
