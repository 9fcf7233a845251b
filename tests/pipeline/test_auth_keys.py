"""API keys: dev keys seeded in development, refused in staging/production; tenant grants."""

from __future__ import annotations

import re
import uuid

import aiohttp
import asyncpg
import pytest

from services.pipeline.auth import KeyStore, Role, hash_key, key_id_of
from services.pipeline.service import make_definition, migrate
from services.runtime.errors import InvalidInput
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


async def test_key_store_keeps_only_hashes(pg: asyncpg.Pool) -> None:
    await migrate(pg)
    raw = await KeyStore(pg).create(Role.TENANT, ["acme"], "test")
    rows = await pg.fetch(
        "SELECT key_hash, label FROM pipeline_api_keys WHERE key_hash = $1", hash_key(raw)
    )
    assert len(rows) == 1
    assert raw not in (rows[0]["key_hash"], rows[0]["label"])


async def test_created_key_is_hex_so_a_cli_never_reads_it_as_an_option(pg: asyncpg.Pool) -> None:
    await migrate(pg)
    raw = await KeyStore(pg).create(Role.TENANT, ["acme"], "test")
    assert re.fullmatch(r"[0-9a-f]{64}", raw)


async def test_key_with_a_malformed_tenant_is_not_stored(pg: asyncpg.Pool) -> None:
    await migrate(pg)
    with pytest.raises(InvalidInput):
        await KeyStore(pg).create(Role.TENANT, ["Not A Tenant"], "test")


async def test_a_revoke_takes_effect_at_once_in_its_process_and_elsewhere_when_the_cache_expires(
    pg: asyncpg.Pool,
) -> None:
    """Another process's store keeps a cached grant: the documented revocation delay."""
    await migrate(pg)
    now = [0.0]
    revoking = KeyStore(pg, cache_seconds=30, clock=lambda: now[0])
    other = KeyStore(pg, cache_seconds=30, clock=lambda: now[0])
    raw = await revoking.create(Role.TENANT, ["acme"], "test")
    assert await revoking.lookup(raw) is not None
    assert await other.lookup(raw) is not None
    revoked = await revoking.revoke(key_id_of(raw))
    assert revoked is not None
    assert revoked.revoked_at is not None
    assert await revoking.lookup(raw) is None
    assert await other.lookup(raw) is not None
    now[0] = 31.0
    assert await other.lookup(raw) is None


async def test_listed_keys_carry_their_id_but_not_their_hash(pg: asyncpg.Pool) -> None:
    await migrate(pg)
    store = KeyStore(pg)
    raw = await store.create(Role.TENANT, ["acme", "pilot"], "listed")
    (listed,) = [k for k in await store.list_keys() if k.key_id == key_id_of(raw)]
    assert (listed.role, listed.tenants, listed.label) == (Role.TENANT, ("acme", "pilot"), "listed")
    assert listed.revoked_at is None
    assert hash_key(raw) not in repr(listed)
