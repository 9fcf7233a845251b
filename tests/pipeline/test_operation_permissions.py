"""Who may do what: the one permission table of the pipeline's use cases, over both transports.

`services.pipeline.app.PERMISSIONS` decides every operation's roles once for
HTTP and gRPC. These tests aim a tenant key at each admin operation of that
table, over every transport that offers it, at the tenant's *own* incidents
(so the refusal is about the role, not about whose data it is): the answer is
403 / PERMISSION_DENIED `ROLE_FORBIDDEN`, and the tenant's rows are unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
import pytest
from ptf.pipeline.v1 import pipeline_pb2, pipeline_pb2_grpc

from services.pipeline.app import PERMISSIONS, Operation, PresentedKeys
from services.runtime.errors import ERROR_CODE_METADATA
from services.runtime.keys import Role
from tests.pipeline.service_support import Tenant, tenant_rows, with_incidents
from tests.pipeline.service_support import TenantWithIncidents as Owned
from tests.support.services import ServiceHandle

Metadata = tuple[tuple[str, str], ...]

ADMIN_OPERATIONS = sorted(
    op for op, access in PERMISSIONS.items() if Role.TENANT not in access.roles
)


@pytest.fixture
async def owned(pipeline: ServiceHandle, tenant: Tenant) -> Owned:
    """The tenant of the `tenant` fixture with incidents of its own to aim its key at."""
    return await with_incidents(pipeline, tenant)


_NO_BACKTEST = "00000000-0000-0000-0000-000000000000"

# Every admin operation as an HTTP request: (method, path template, body).
HTTP_ADMIN_REQUESTS: dict[Operation, tuple[str, str, dict[str, Any]]] = {
    Operation.RESOLVE_INCIDENT: (
        "POST",
        "/admin/incidents/{open}/resolve",
        {"resolution_reason": "closing my own", "operator": "tenant"},
    ),
    Operation.SUBMIT_FEEDBACK: (
        "POST",
        "/admin/incidents/{resolved}/feedback",
        {"hint_correct": True, "actual_root_cause": "INVOICE_LOGIC", "operator": "tenant"},
    ),
    Operation.SYSTEM_HEALTH: ("GET", "/admin/system-health?tenant_id={tenant}", {}),
    Operation.REQUEST_PURGE: ("POST", "/admin/tenants/{tenant}/purge", {}),
    Operation.CONFIRM_PURGE: (
        "POST",
        "/admin/tenants/{tenant}/purge/confirm",
        {"confirmation_token": "guessed", "operator": "tenant"},
    ),
    Operation.START_BACKTEST: (
        "POST",
        "/admin/backtests",
        {"tenant_id": "t-any", "since": "2026-01", "until": "2026-01", "thresholds": {}},
    ),
    Operation.CONFIRM_BACKTEST: ("POST", "/admin/backtests/confirm", {"confirmation_token": "x"}),
    Operation.GET_BACKTEST: ("GET", f"/admin/backtests/{_NO_BACKTEST}", {}),
}

if TYPE_CHECKING:  # the async stub type exists only in the generated stubs (.pyi)
    Stub = pipeline_pb2_grpc.PipelineServiceAsyncStub
    RpcAttempt = Callable[[Stub, Owned, Metadata], Awaitable[object]]


async def _resolve_incident(stub: Stub, owned: Owned, metadata: Metadata) -> object:
    request = pipeline_pb2.ResolveIncidentRequest(
        incident_id=owned.open_incident, resolution_reason="closing my own"
    )
    return await stub.ResolveIncident(request, metadata=metadata)


async def _submit_feedback(stub: Stub, owned: Owned, metadata: Metadata) -> object:
    request = pipeline_pb2.SubmitFeedbackRequest(
        incident_id=owned.resolved_incident, hint_correct=True, actual_root_cause="INVOICE_LOGIC"
    )
    return await stub.SubmitFeedback(request, metadata=metadata)


async def _readiness_status(stub: Stub, owned: Owned, metadata: Metadata) -> object:
    return await stub.GetReadinessStatus(
        pipeline_pb2.GetReadinessStatusRequest(), metadata=metadata
    )


async def _start_backtest(stub: Stub, owned: Owned, metadata: Metadata) -> object:
    request = pipeline_pb2.StartBacktestRequest(
        tenant_id=owned.tenant.tenant_id, period_start="2026-01", period_end="2026-01"
    )
    return await stub.StartBacktest(request, metadata=metadata)


async def _confirm_backtest(stub: Stub, owned: Owned, metadata: Metadata) -> object:
    request = pipeline_pb2.ConfirmBacktestRequest(token="guessed")
    return await stub.ConfirmBacktest(request, metadata=metadata)


async def _get_backtest(stub: Stub, owned: Owned, metadata: Metadata) -> object:
    request = pipeline_pb2.GetBacktestResultRequest(backtest_id=_NO_BACKTEST)
    return await stub.GetBacktestResult(request, metadata=metadata)


# Every admin operation that has an RPC; the others exist only over HTTP.
GRPC_ADMIN_ATTEMPTS: dict[Operation, RpcAttempt] = {
    Operation.RESOLVE_INCIDENT: _resolve_incident,
    Operation.SUBMIT_FEEDBACK: _submit_feedback,
    Operation.READINESS_STATUS: _readiness_status,
    Operation.START_BACKTEST: _start_backtest,
    Operation.CONFIRM_BACKTEST: _confirm_backtest,
    Operation.GET_BACKTEST: _get_backtest,
}
HTTP_ONLY = {Operation.SYSTEM_HEALTH, Operation.REQUEST_PURGE, Operation.CONFIRM_PURGE}
GRPC_ONLY = {Operation.READINESS_STATUS}


def _error_code(error: grpc.aio.AioRpcError) -> str:
    trailers = {str(key): str(value) for key, value in error.trailing_metadata() or ()}
    return trailers[ERROR_CODE_METADATA]


def test_every_operation_has_an_entry_in_the_permission_table() -> None:
    assert set(PERMISSIONS) == set(Operation)


def test_every_admin_operation_is_offered_over_http_and_grpc_unless_it_is_http_only() -> None:
    """A new admin operation must be added to the attempts below, so it is tested too."""
    assert set(HTTP_ADMIN_REQUESTS) == set(ADMIN_OPERATIONS) - GRPC_ONLY
    assert set(GRPC_ADMIN_ATTEMPTS) == set(ADMIN_OPERATIONS) - HTTP_ONLY


def test_resolving_and_feedback_are_admin_operations() -> None:
    """Tenants grading their own incidents would skew hint accuracy and feedback coverage."""
    assert {Operation.RESOLVE_INCIDENT, Operation.SUBMIT_FEEDBACK} <= set(ADMIN_OPERATIONS)


@pytest.mark.parametrize("operation", sorted(set(ADMIN_OPERATIONS) - GRPC_ONLY))
async def test_tenant_key_is_forbidden_on_every_admin_operation_over_http(
    pipeline: ServiceHandle, pg: asyncpg.Pool, owned: Owned, operation: Operation
) -> None:
    method, template, body = HTTP_ADMIN_REQUESTS[operation]
    path = template.format(
        tenant=owned.tenant.tenant_id, open=owned.open_incident, resolved=owned.resolved_incident
    )
    before = await tenant_rows(pg, owned.tenant.tenant_id)
    headers = {"X-Admin-Key": owned.tenant.api_key}
    async with pipeline.http.request(method, path, json=body, headers=headers) as response:
        reply = await response.json()
    assert (response.status, reply["error_code"]) == (403, "ROLE_FORBIDDEN")
    assert await tenant_rows(pg, owned.tenant.tenant_id) == before


@pytest.mark.parametrize("metadata_key", ["x-api-key", "x-admin-key"])
@pytest.mark.parametrize("operation", sorted(set(ADMIN_OPERATIONS) - HTTP_ONLY))
async def test_tenant_key_is_permission_denied_on_every_admin_rpc(
    pipeline: ServiceHandle, pg: asyncpg.Pool, owned: Owned, operation: Operation, metadata_key: str
) -> None:
    """Whichever metadata carries it, a tenant key cannot resolve or grade its own incidents
    (nor read the pipeline's operational state)."""
    stub: Stub = pipeline_pb2_grpc.PipelineServiceStub(pipeline.channel)
    before = await tenant_rows(pg, owned.tenant.tenant_id)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await GRPC_ADMIN_ATTEMPTS[operation](stub, owned, ((metadata_key, owned.tenant.api_key),))
    assert (caught.value.code(), _error_code(caught.value)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "ROLE_FORBIDDEN",
    )
    assert await tenant_rows(pg, owned.tenant.tenant_id) == before


@pytest.mark.parametrize(
    ("metadata", "code"),
    [((), "MISSING_API_KEY"), ((("x-admin-key", "not-a-key"),), "INVALID_API_KEY")],
    ids=["no-key", "unknown-key"],
)
async def test_admin_rpc_without_a_valid_key_is_unauthenticated(
    pipeline: ServiceHandle, owned: Owned, metadata: Metadata, code: str
) -> None:
    stub: Stub = pipeline_pb2_grpc.PipelineServiceStub(pipeline.channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _resolve_incident(stub, owned, metadata)
    assert (caught.value.code(), _error_code(caught.value)) == (
        grpc.StatusCode.UNAUTHENTICATED,
        code,
    )


def test_presented_keys_never_show_in_a_repr() -> None:
    """Keys must not reach logs: a logged or raised `PresentedKeys` shows no key."""
    keys = PresentedKeys("tenant-secret")
    assert "secret" not in repr(keys)
