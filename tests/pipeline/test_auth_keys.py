"""The pipeline on the shared key store: dev keys seeded in development, refused in staging and
production; a tenant key's grants."""

from __future__ import annotations

import uuid

import aiohttp
import asyncpg
import pytest

from services.pipeline.service import make_definition
from tests.conftest import StartService
from tests.pipeline.service_support import NO_TELEMETRY, fast_settings


async def _submit_status(
    http: aiohttp.ClientSession, tenant_id: str, key: str
) -> tuple[int, str | None]:
    """Status and error code of a job lookup: 404 JOB_NOT_FOUND means the key was accepted
    for the tenant (and, unlike a submission, leaves no job behind in the shared database)."""
    async with http.get(
        f"/jobs/{uuid.uuid4()}?tenant_id={tenant_id}", headers={"X-API-Key": key}
    ) as response:
        body = await response.json()
        return response.status, body.get("error_code")


@pytest.mark.parametrize("tenant_id", ["pilot", "default"])
async def test_dev_tenant_key_grants_pilot_and_default_in_development(
    start_service: StartService, tenant_id: str
) -> None:
    async with start_service(
        make_definition(fast_settings(inprocess_workers=0)), PTF_TELEMETRY_ADDR=NO_TELEMETRY
    ) as svc:
        status = await _submit_status(svc.http, tenant_id, "dev-tenant-key")
    assert status == (404, "JOB_NOT_FOUND")


async def test_dev_tenant_key_does_not_grant_other_tenants(start_service: StartService) -> None:
    async with start_service(
        make_definition(fast_settings(inprocess_workers=0)), PTF_TELEMETRY_ADDR=NO_TELEMETRY
    ) as svc:
        assert await _submit_status(svc.http, "acme", "dev-tenant-key") == (
            403,
            "TENANT_FORBIDDEN",
        )


@pytest.mark.parametrize("env", ["staging", "production"])
async def test_dev_keys_are_refused_outside_development_even_if_stored(
    start_service: StartService, pg: asyncpg.Pool, env: str
) -> None:
    """Fault: the well-known dev keys are presented to a staging/production service whose key
    store still holds them. Must: 401, and the service does not seed them."""
    async with start_service(
        make_definition(fast_settings(inprocess_workers=0)), PTF_TELEMETRY_ADDR=NO_TELEMETRY
    ):
        pass  # a development start seeds the dev keys into the shared store
    async with start_service(
        make_definition(fast_settings(inprocess_workers=0)),
        PTF_TELEMETRY_ADDR=NO_TELEMETRY,
        ENV=env,
    ) as svc:
        assert await _submit_status(svc.http, "pilot", "dev-tenant-key") == (
            401,
            "INVALID_API_KEY",
        )
        async with svc.http.get(
            "/admin/incidents", headers={"X-Admin-Key": "dev-admin-key"}
        ) as response:
            assert response.status == 401
