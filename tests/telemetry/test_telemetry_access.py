"""Who may write and read telemetry (SPEC §11): writes only with a service key, reads with any
key, a tenant key only within its tenants; the same codes on HTTP and gRPC."""

from __future__ import annotations

import asyncpg
import grpc
import pytest
from ptf.telemetry.v1 import telemetry_pb2

from services.runtime.config import AccessThresholds
from services.runtime.errors import ERROR_CODE_METADATA
from services.runtime.keys import KeyStore, Role
from services.runtime.keys.channels import keyed_channel
from tests.support.services import ServiceHandle
from tests.telemetry.factories import Slot, event, invoice, new_tenant, record, stub

FORBIDDEN_WRITERS = {
    "no key": (),
    "unknown key": (("x-api-key", "not-a-key"),),
    "tenant key": (("x-api-key", "dev-tenant-key"),),
    "admin key": (("x-admin-key", "dev-admin-key"),),
}
WRITE_CODES = {
    "no key": (grpc.StatusCode.UNAUTHENTICATED, "MISSING_API_KEY"),
    "unknown key": (grpc.StatusCode.UNAUTHENTICATED, "INVALID_API_KEY"),
    "tenant key": (grpc.StatusCode.PERMISSION_DENIED, "ROLE_FORBIDDEN"),
    "admin key": (grpc.StatusCode.PERMISSION_DENIED, "ROLE_FORBIDDEN"),
}


def _code(exc: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str]:
    return exc.code(), dict(exc.trailing_metadata() or ())[ERROR_CODE_METADATA]


@pytest.mark.parametrize("caller", sorted(FORBIDDEN_WRITERS))
async def test_record_events_accepts_only_a_service_key_and_stores_nothing_otherwise(
    telemetry: ServiceHandle, pg: asyncpg.Pool, slot: Slot, caller: str
) -> None:
    tenant = new_tenant()
    forged = [event("INVOICE_PROCESSED", tenant, invoice(), slot.at(1)) for _ in range(3)]
    async with keyed_channel(telemetry.running.grpc_target, FORBIDDEN_WRITERS[caller]) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await record(channel, forged)
    stored = await pg.fetchval("SELECT count(*) FROM telemetry_events WHERE tenant_id = $1", tenant)
    assert (_code(caught.value), stored) == (WRITE_CODES[caller], 0)


@pytest.mark.parametrize("caller", sorted(FORBIDDEN_WRITERS))
async def test_record_preflights_accepts_only_a_service_key(
    telemetry: ServiceHandle, caller: str
) -> None:
    async with keyed_channel(telemetry.running.grpc_target, FORBIDDEN_WRITERS[caller]) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub(channel).RecordPreflights(telemetry_pb2.RecordPreflightsRequest())
    assert _code(caught.value) == WRITE_CODES[caller]


async def test_run_summary_over_http_needs_a_key(telemetry: ServiceHandle) -> None:
    async with telemetry.http.get("/run-summary") as response:
        assert (response.status, (await response.json())["error_code"]) == (401, "MISSING_API_KEY")


async def test_run_summary_over_grpc_needs_a_key(telemetry: ServiceHandle) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub(telemetry.channel).GetRunSummary(telemetry_pb2.GetRunSummaryRequest())
    assert _code(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "MISSING_API_KEY")


async def test_a_tenant_key_reads_its_own_tenants_summary(
    telemetry: ServiceHandle, pg: asyncpg.Pool
) -> None:
    tenant = new_tenant()
    key = await KeyStore(pg, AccessThresholds()).create(Role.TENANT, [tenant], "tenant-reader")
    async with telemetry.http.get("/run-summary", headers={"X-API-Key": key}) as response:
        assert response.status == 200, await response.text()


@pytest.mark.parametrize("path", ["/run-summary", "/admin/system-health"])
async def test_a_tenant_key_cannot_read_another_tenant_over_http(
    telemetry: ServiceHandle, pg: asyncpg.Pool, path: str
) -> None:
    key = await KeyStore(pg, AccessThresholds()).create(Role.TENANT, [new_tenant()], "t")
    params = {"tenant_id": new_tenant()}
    async with telemetry.http.get(path, params=params, headers={"X-API-Key": key}) as response:
        assert (response.status, (await response.json())["error_code"]) == (
            403,
            "TENANT_FORBIDDEN",
        )


async def test_a_tenant_key_cannot_read_another_tenant_over_grpc(
    telemetry: ServiceHandle, pg: asyncpg.Pool
) -> None:
    key = await KeyStore(pg, AccessThresholds()).create(Role.TENANT, [new_tenant()], "t")
    async with keyed_channel(telemetry.running.grpc_target, (("x-api-key", key),)) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub(channel).GetSystemHealth(
                telemetry_pb2.GetSystemHealthRequest(tenant_id=new_tenant())
            )
    assert _code(caught.value) == (grpc.StatusCode.PERMISSION_DENIED, "TENANT_FORBIDDEN")


async def test_a_non_ascii_key_header_is_401_not_500(telemetry: ServiceHandle) -> None:
    async with telemetry.http.get("/run-summary", headers={"X-API-Key": "\xff\xfe"}) as response:
        assert (response.status, (await response.json())["error_code"]) == (401, "INVALID_API_KEY")
