"""Strings PostgreSQL cannot store, enum numbers nobody defined and forged cursors are 4xx.

Probes that once reached the database or the enum tables and came back as
500 / INTERNAL: a NUL (`\\u0000`) or a lone surrogate (`\\ud800`) in a JSON
string or a NUL in a gRPC text field (an operator, a file name),
`ListIncidents(severity=99)` or `status=3`, a well-formed cursor pointing
before year 1 in UTC, a gate audit cursor past the bigint range.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import asyncpg
import grpc
import pytest
from ptf.gate.v1 import gate_pb2
from ptf.pipeline.v1 import pipeline_pb2, pipeline_pb2_grpc

from tests.gate.service_support import ADMIN, StartGate, error_code, error_field, gate_stub
from tests.pipeline.service_support import ADMIN as ADMIN_HEADERS
from tests.pipeline.service_support import document, new_tenant
from tests.support.services import ServiceHandle

INCIDENT = "00000000-0000-4000-8000-000000000001"
UNSTORABLE = {"nul": "a\u0000", "lone-surrogate": "\ud800"}


def _json(body: dict[str, Any]) -> bytes:
    """`body` as JSON with every non-ASCII character escaped, as a hostile client sends it."""
    return json.dumps(body).encode()


async def _post(svc: ServiceHandle, path: str, body: bytes, headers: dict[str, str]) -> Any:
    async with svc.http.post(
        path, data=body, headers={**headers, "Content-Type": "application/json"}
    ) as response:
        return response.status, await response.json()


@pytest.mark.parametrize("text", UNSTORABLE.values(), ids=UNSTORABLE.keys())
async def test_unstorable_provider_is_400(
    pipeline: ServiceHandle, pg: asyncpg.Pool, text: str
) -> None:
    tenant = await new_tenant(pg)
    status, body = await _post(
        pipeline,
        f"/full-process?tenant_id={tenant.tenant_id}",
        _json(document(provider=text)),
        tenant.headers,
    )
    assert (status, body["error_code"], body.get("field")) == (400, "INVALID_TEXT", "provider")


@pytest.mark.parametrize("text", UNSTORABLE.values(), ids=UNSTORABLE.keys())
@pytest.mark.parametrize("field", ["operator", "resolution_reason"])
async def test_unstorable_resolution_text_is_400(
    pipeline: ServiceHandle, field: str, text: str
) -> None:
    fields = {"resolution_reason": "checked", "operator": "ops", field: text}
    status, body = await _post(
        pipeline, f"/admin/incidents/{INCIDENT}/resolve", _json(fields), ADMIN_HEADERS
    )
    assert (status, body["error_code"], body.get("field")) == (400, "INVALID_TEXT", field)


@pytest.mark.parametrize("text", UNSTORABLE.values(), ids=UNSTORABLE.keys())
async def test_unstorable_purge_confirmation_is_400(pipeline: ServiceHandle, text: str) -> None:
    status, body = await _post(
        pipeline,
        "/admin/tenants/pilot/purge/confirm",
        _json({"confirmation_token": text}),
        ADMIN_HEADERS,
    )
    assert (status, body["error_code"], body.get("field")) == (
        400,
        "INVALID_TEXT",
        "confirmation_token",
    )


async def test_nul_in_grpc_resolution_operator_is_invalid_argument(
    pipeline: ServiceHandle,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pipeline_pb2_grpc.PipelineServiceStub(pipeline.admin_channel).ResolveIncident(
            pipeline_pb2.ResolveIncidentRequest(
                incident_id=INCIDENT, resolution_reason="checked", operator="a\x00"
            )
        )
    assert (caught.value.code(), error_code(caught.value), error_field(caught.value)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_TEXT",
        "operator",
    )


async def test_nul_in_grpc_file_name_is_invalid_argument(
    pipeline: ServiceHandle, pg: asyncpg.Pool
) -> None:
    tenant = await new_tenant(pg)
    request = pipeline_pb2.SubmitInvoiceRequest(
        tenant_id=tenant.tenant_id, file_content=_json(document()), file_name="a\x00.json"
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pipeline_pb2_grpc.PipelineServiceStub(pipeline.channel).SubmitInvoice(
            request, metadata=tenant.metadata
        )
    assert (caught.value.code(), error_code(caught.value), error_field(caught.value)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_TEXT",
        "file_name",
    )


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"severity": 99}, "INVALID_SEVERITY", "severity"),
        ({"status": 3}, "INVALID_STATUS", "status"),
    ],
    ids=["severity-99", "status-3"],
)
async def test_unknown_enum_number_is_invalid_argument(
    pipeline: ServiceHandle, fields: dict[str, int], code: str, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pipeline_pb2_grpc.PipelineServiceStub(pipeline.admin_channel).ListIncidents(
            pipeline_pb2.ListIncidentsRequest(**fields)  # type: ignore[arg-type]
        )
    assert (caught.value.code(), error_code(caught.value), error_field(caught.value)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        code,
        field,
    )


def _incident_cursor(created_at: str) -> str:
    """A cursor in the pipeline's own format, pointing wherever we like."""
    raw = json.dumps([created_at, str(uuid.uuid4())]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "created_at",
    ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "2026-01-01T00:00:00"],
    ids=["before-year-1-in-utc", "after-9999-in-utc", "no-offset"],
)
async def test_forged_incident_cursor_is_400(pipeline: ServiceHandle, created_at: str) -> None:
    async with pipeline.http.get(
        "/admin/incidents", params={"cursor": _incident_cursor(created_at)}, headers=ADMIN_HEADERS
    ) as response:
        body = await response.json()
    assert (response.status, body["error_code"], body.get("field")) == (
        400,
        "INVALID_CURSOR",
        "cursor",
    )


async def test_forged_audit_cursor_past_bigint_is_invalid_argument(
    start_gate: StartGate,
) -> None:
    cursor = base64.urlsafe_b64encode(f"audit:{2**63}".encode()).decode()
    async with start_gate() as svc:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gate_stub(svc).ListAudit(gate_pb2.ListAuditRequest(cursor=cursor), metadata=ADMIN)
    assert (caught.value.code(), error_code(caught.value), error_field(caught.value)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "CURSOR_INVALID",
        "cursor",
    )
