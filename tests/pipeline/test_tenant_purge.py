"""Tenant purge (SPEC §3.6, seed 003 §9.3): two steps, a one-time token, an audit, one tenant."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from services.pipeline.service import make_definition
from tests.conftest import StartService
from tests.pipeline.service_support import (
    ADMIN,
    NO_ROWS,
    NO_TELEMETRY,
    Tenant,
    business_rows,
    document,
    fast_settings,
    load_sample_tables,
    new_tenant,
    s2_document,
)
from tests.support.services import ServiceHandle


@pytest.fixture(params=["redis", "postgres"])
async def pipeline(
    request: pytest.FixtureRequest, start_service: StartService, pg: asyncpg.Pool
) -> AsyncIterator[ServiceHandle]:
    """The pipeline with either token store (SPEC §7: one interface, two implementations)."""
    async with start_service(
        make_definition(fast_settings()),
        PTF_TELEMETRY_ADDR=NO_TELEMETRY,
        PTF_TOKEN_STORE=request.param,
    ) as svc:
        await load_sample_tables(pg)
        yield svc


async def _tenant_with_data(svc: ServiceHandle, pg: asyncpg.Pool) -> Tenant:
    """A tenant with two processed invoices, one of them with an incident."""
    tenant = await new_tenant(pg, "pilot")
    for doc in (document(), s2_document()):
        async with svc.http.post(
            f"/full-process?tenant_id={tenant.tenant_id}", json=doc, headers=tenant.headers
        ) as response:
            assert response.status == 200, await response.text()
    return tenant


async def _post(
    svc: ServiceHandle, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    async with svc.http.post(path, json=body, headers=ADMIN if headers is None else headers) as r:
        return r.status, await r.json()


async def _request(svc: ServiceHandle, tenant_id: str) -> dict[str, Any]:
    status, body = await _post(svc, f"/admin/tenants/{tenant_id}/purge", {"operator": "ayse"})
    assert status == 200, body
    return body


async def _confirm(svc: ServiceHandle, tenant_id: str, token: Any) -> tuple[int, dict[str, Any]]:
    return await _post(
        svc,
        f"/admin/tenants/{tenant_id}/purge/confirm",
        {"confirmation_token": token, "operator": "ayse"},
    )


async def test_request_shows_the_rows_a_purge_would_delete(
    pipeline: ServiceHandle, pg: asyncpg.Pool
) -> None:
    tenant = await _tenant_with_data(pipeline, pg)
    body = await _request(pipeline, tenant.tenant_id)
    assert body["rows"] == {"incidents": 1, "jobs": 2, "invoices": 2}
    assert body["confirmation_token"]
    assert await business_rows(pg, tenant.tenant_id) != NO_ROWS


async def test_purge_with_a_valid_token_removes_exactly_that_tenants_rows(
    pipeline: ServiceHandle, pg: asyncpg.Pool
) -> None:
    tenant = await _tenant_with_data(pipeline, pg)
    other = await _tenant_with_data(pipeline, pg)
    other_before = await business_rows(pg, other.tenant_id)
    token = (await _request(pipeline, tenant.tenant_id))["confirmation_token"]
    status, body = await _confirm(pipeline, tenant.tenant_id, token)
    assert status == 200, body
    assert body["deleted"] == {"incidents": 1, "jobs": 2, "invoices": 2}
    after = await business_rows(pg, tenant.tenant_id)
    assert (after["invoices"], after["jobs"], after["incidents"]) == (0, 0, 0)
    assert await business_rows(pg, other.tenant_id) == other_before


async def test_purge_without_a_token_fails_and_deletes_nothing(
    pipeline: ServiceHandle, pg: asyncpg.Pool
) -> None:
    tenant = await _tenant_with_data(pipeline, pg)
    before = await business_rows(pg, tenant.tenant_id)
    status, body = await _post(
        pipeline, f"/admin/tenants/{tenant.tenant_id}/purge/confirm", {"operator": "ayse"}
    )
    assert (status, body["error_code"]) == (400, "MISSING_CONFIRMATION_TOKEN")
    assert await business_rows(pg, tenant.tenant_id) == before


async def test_purge_with_a_used_token_fails(pipeline: ServiceHandle, pg: asyncpg.Pool) -> None:
    tenant = await _tenant_with_data(pipeline, pg)
    token = (await _request(pipeline, tenant.tenant_id))["confirmation_token"]
    assert (await _confirm(pipeline, tenant.tenant_id, token))[0] == 200
    await _tenant_with_data(pipeline, pg)
    status, body = await _confirm(pipeline, tenant.tenant_id, token)
    assert (status, body["error_code"]) == (409, "TOKEN_USED")


async def test_purge_with_an_unknown_token_fails(pipeline: ServiceHandle, pg: asyncpg.Pool) -> None:
    tenant = await _tenant_with_data(pipeline, pg)
    before = await business_rows(pg, tenant.tenant_id)
    status, body = await _confirm(pipeline, tenant.tenant_id, "not-a-token")
    assert (status, body["error_code"]) == (409, "TOKEN_INVALID")
    assert await business_rows(pg, tenant.tenant_id) == before


async def test_a_token_for_one_tenant_does_not_purge_another(
    pipeline: ServiceHandle, pg: asyncpg.Pool
) -> None:
    tenant = await _tenant_with_data(pipeline, pg)
    other = await _tenant_with_data(pipeline, pg)
    before = await business_rows(pg, other.tenant_id)
    token = (await _request(pipeline, tenant.tenant_id))["confirmation_token"]
    status, body = await _confirm(pipeline, other.tenant_id, token)
    assert (status, body["error_code"]) == (409, "TOKEN_PARAMS_MISMATCH")
    assert await business_rows(pg, other.tenant_id) == before


async def test_both_steps_are_audited_under_the_keys_operator_with_the_token_hash_only(
    pipeline: ServiceHandle, pg: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = await _tenant_with_data(pipeline, pg)
    with caplog.at_level(logging.DEBUG):
        token = (await _request(pipeline, tenant.tenant_id))["confirmation_token"]
        await _confirm(pipeline, tenant.tenant_id, token)
    rows = await pg.fetch(
        "SELECT action, operator, token_hash, details::text AS details"
        " FROM pipeline_admin_audit WHERE tenant_id = $1 ORDER BY audit_id",
        tenant.tenant_id,
    )
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert [(r["action"], r["operator"], r["token_hash"]) for r in rows] == [
        ("tenant_purge.requested", "dev-admin", digest),
        ("tenant_purge.done", "dev-admin", digest),
    ]
    assert json.loads(rows[1]["details"])["deleted"]["invoices"] == 2
    assert all(token not in r["details"] for r in rows)
    assert all(token not in record.getMessage() for record in caplog.records)
    assert all(token not in json.dumps(record.__dict__, default=str) for record in caplog.records)


async def test_audit_rows_cannot_be_changed_or_deleted(
    pipeline: ServiceHandle, pg: asyncpg.Pool
) -> None:
    tenant = await new_tenant(pg)
    await _request(pipeline, tenant.tenant_id)
    for statement in (
        "UPDATE pipeline_admin_audit SET operator = 'mallory' WHERE tenant_id = $1",
        "DELETE FROM pipeline_admin_audit WHERE tenant_id = $1",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await pg.execute(statement, tenant.tenant_id)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, (401, "MISSING_API_KEY")),
        ({"X-Admin-Key": "wrong"}, (401, "INVALID_API_KEY")),
    ],
)
async def test_purge_needs_an_admin_key(
    pipeline: ServiceHandle, headers: dict[str, str], expected: tuple[int, str]
) -> None:
    for path in ("/admin/tenants/pilot/purge", "/admin/tenants/pilot/purge/confirm"):
        status, body = await _post(pipeline, path, {"operator": "x"}, headers)
        assert (status, body["error_code"]) == expected


async def test_a_tenant_key_cannot_purge_even_its_own_tenant(
    pipeline: ServiceHandle, pg: asyncpg.Pool
) -> None:
    tenant = await _tenant_with_data(pipeline, pg)
    status, body = await _post(
        pipeline,
        f"/admin/tenants/{tenant.tenant_id}/purge",
        {"operator": "x"},
        {"X-Admin-Key": tenant.api_key},
    )
    assert (status, body["error_code"]) == (403, "ROLE_FORBIDDEN")


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/admin/tenants/Not_Valid!/purge", {"operator": "x"}, "INVALID_TENANT_ID"),
        ("/admin/tenants/pilot/purge/confirm", [1, 2], "INVALID_JSON"),
        ("/admin/tenants/pilot/purge/confirm", {}, "MISSING_CONFIRMATION_TOKEN"),
        (
            "/admin/tenants/pilot/purge/confirm",
            {"operator": "x", "confirmation_token": "t" * 257},
            "INVALID_CONFIRMATION_TOKEN",
        ),
        (
            "/admin/tenants/pilot/purge/confirm",
            {"operator": "x", "confirmation_token": 12345},
            "INVALID_CONFIRMATION_TOKEN",
        ),
    ],
)
async def test_malformed_purge_requests_are_refused_with_400(
    pipeline: ServiceHandle, path: str, body: Any, expected: str
) -> None:
    status, answer = await _post(pipeline, path, body)
    assert (status, answer["error_code"]) == (400, expected)
