"""Bad input at `/full-process`: each case gets its specific 4xx and error_code, nothing is written.

Every test is a fault test: the fault is the bad request named in the test;
what must happen is the status, error code (and field) shown, with no invoice,
job, incident or business event stored for the tenant.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from services.pipeline.service import make_definition
from tests.conftest import StartService
from tests.pipeline.service_support import (
    NO_ROWS,
    NO_TELEMETRY,
    Tenant,
    business_rows,
    document,
    fast_settings,
    field,
    new_tenant,
)
from tests.support.services import ServiceHandle

MEBIBYTE = 1024 * 1024


@pytest.fixture
async def pipeline(start_service: StartService) -> AsyncIterator[ServiceHandle]:
    async with start_service(
        make_definition(fast_settings()), PTF_TELEMETRY_ADDR=NO_TELEMETRY
    ) as svc:
        yield svc


async def _post_raw(
    svc: ServiceHandle, tenant: Tenant, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    async with svc.http.post(
        f"/full-process?tenant_id={tenant.tenant_id}",
        data=io.BytesIO(body),
        headers={"Content-Type": "application/json", **tenant.headers, **(headers or {})},
    ) as response:
        return response.status, await response.json()


def _raw(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def _replace_value(doc: dict[str, Any], name: str, literal: str) -> bytes:
    """The document as JSON text with one field's value replaced by a raw literal."""
    doc[name] = {"value": "__X__", "confidence": 0.9}
    return json.dumps(doc).replace('"__X__"', literal).encode()


REJECTIONS = {
    "missing_required_field": (
        _raw(document(consumption_kwh=None)),
        (422, "MISSING_FIELD", "consumption_kwh"),
    ),
    "nan_value": (
        _replace_value(document(), "consumption_kwh", "NaN"),
        (422, "INVALID_NUMBER", "consumption_kwh.value"),
    ),
    "infinity_value": (
        _replace_value(document(), "invoice_total_with_vat_tl", "Infinity"),
        (422, "INVALID_NUMBER", "invoice_total_with_vat_tl.value"),
    ),
    "negative_kwh": (
        _raw(document(consumption_kwh=field(-10000))),
        (422, "NEGATIVE_VALUE", "consumption_kwh"),
    ),
    "confidence_above_one": (
        _raw(document(consumption_kwh=field(10000, 1.5))),
        (422, "CONFIDENCE_OUT_OF_RANGE", "consumption_kwh.confidence"),
    ),
    "deeply_nested_json": (
        b'{"consumption_kwh": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        (422, "DOCUMENT_TOO_DEEP", None),
    ),
    "nesting_beyond_the_domain_limit": (
        _raw(document(extra=json.loads("[" * 80 + "]" * 80))),
        (422, "DOCUMENT_TOO_DEEP", "extra[0][0][0]..."),
    ),
    "not_json": (b"{not json", (400, "INVALID_JSON", None)),
    "not_an_object": (b"[1, 2, 3]", (422, "INVALID_DOCUMENT", None)),
}


@pytest.mark.parametrize("case", sorted(REJECTIONS))
async def test_invalid_document_is_refused_and_nothing_is_written(
    pipeline: ServiceHandle, tenant: Tenant, pg: asyncpg.Pool, case: str
) -> None:
    """Fault: a malformed extraction document. Must: its 4xx + error_code + field, no rows."""
    body, (status, code, field_name) = REJECTIONS[case]
    got_status, got = await _post_raw(pipeline, tenant, body)
    got_field = got.get("field")
    if field_name and field_name.endswith("...") and got_field:
        got_field = got_field[: len(field_name) - 3] + "..."
    assert (got_status, got["error_code"], got_field) == (status, code, field_name)
    assert await business_rows(pg, tenant.tenant_id) == NO_ROWS


async def test_body_over_ten_megabytes_is_refused_with_413(
    pipeline: ServiceHandle, tenant: Tenant, pg: asyncpg.Pool
) -> None:
    """Fault: an 11 MB body. Must: 413 PAYLOAD_TOO_LARGE and nothing written."""
    padding = "x" * (11 * MEBIBYTE)
    status, body = await _post_raw(pipeline, tenant, _raw(document(padding=padding)))
    assert (status, body["error_code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert await business_rows(pg, tenant.tenant_id) == NO_ROWS


async def test_pdf_without_a_file_extractor_is_refused_with_extractor_unavailable(
    pipeline: ServiceHandle, tenant: Tenant, pg: asyncpg.Pool
) -> None:
    """Fault: a PDF while EXTRACTOR=json. Must: 422 EXTRACTOR_UNAVAILABLE and nothing written."""
    status, body = await _post_raw(
        pipeline, tenant, b"%PDF-1.7\n%fake\n", {"Content-Type": "application/pdf"}
    )
    assert (status, body["error_code"]) == (422, "EXTRACTOR_UNAVAILABLE")
    assert await business_rows(pg, tenant.tenant_id) == NO_ROWS


async def test_file_of_unknown_type_is_refused_with_415(
    pipeline: ServiceHandle, tenant: Tenant, pg: asyncpg.Pool
) -> None:
    """Fault: a ZIP archive as the invoice. Must: 415 UNSUPPORTED_MEDIA_TYPE, nothing written."""
    status, body = await _post_raw(
        pipeline, tenant, b"PK\x03\x04zip", {"Content-Type": "application/zip"}
    )
    assert (status, body["error_code"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
    assert await business_rows(pg, tenant.tenant_id) == NO_ROWS


async def test_missing_api_key_is_refused_with_401(
    pipeline: ServiceHandle, tenant: Tenant, pg: asyncpg.Pool
) -> None:
    """Fault: no X-API-Key. Must: 401 MISSING_API_KEY and nothing written."""
    async with pipeline.http.post(
        f"/full-process?tenant_id={tenant.tenant_id}", json=document()
    ) as response:
        body = await response.json()
    assert (response.status, body["error_code"]) == (401, "MISSING_API_KEY")
    assert await business_rows(pg, tenant.tenant_id) == NO_ROWS


async def test_wrong_api_key_is_refused_with_401(
    pipeline: ServiceHandle, tenant: Tenant, pg: asyncpg.Pool
) -> None:
    """Fault: an unknown X-API-Key. Must: 401 INVALID_API_KEY and nothing written."""
    status, body = await _post_raw(
        pipeline, tenant, _raw(document()), {"X-API-Key": "not-a-real-key"}
    )
    assert (status, body["error_code"]) == (401, "INVALID_API_KEY")
    assert await business_rows(pg, tenant.tenant_id) == NO_ROWS


async def test_key_of_another_tenant_is_refused_with_403(
    pipeline: ServiceHandle, tenant: Tenant, pg: asyncpg.Pool
) -> None:
    """Fault: tenant B's key used for tenant A. Must: 403 TENANT_FORBIDDEN, nothing written."""
    other = await new_tenant(pg)
    status, body = await _post_raw(pipeline, tenant, _raw(document()), other.headers)
    assert (status, body["error_code"], body["field"]) == (403, "TENANT_FORBIDDEN", "tenant_id")
    assert await business_rows(pg, tenant.tenant_id) == NO_ROWS


async def test_unknown_tenant_is_refused_with_403(
    pipeline: ServiceHandle, tenant: Tenant, pg: asyncpg.Pool
) -> None:
    """Fault: a tenant no key grants. Must: 403 TENANT_FORBIDDEN and nothing written."""
    async with pipeline.http.post(
        "/full-process?tenant_id=no-such-tenant", json=document(), headers=tenant.headers
    ) as response:
        body = await response.json()
    assert (response.status, body["error_code"]) == (403, "TENANT_FORBIDDEN")
    assert await business_rows(pg, "no-such-tenant") == NO_ROWS


@pytest.mark.parametrize("tenant_id", ["", "Upper", "-leading-dash", "a" * 64, "sp ace"])
async def test_malformed_tenant_id_is_refused_with_400(
    pipeline: ServiceHandle, tenant: Tenant, tenant_id: str
) -> None:
    """Fault: a tenant_id outside ^[a-z0-9][a-z0-9_-]{0,62}$. Must: 400 INVALID_TENANT_ID."""
    async with pipeline.http.post(
        "/full-process", params={"tenant_id": tenant_id}, json=document(), headers=tenant.headers
    ) as response:
        body = await response.json()
    assert (response.status, body["error_code"], body["field"]) == (
        400,
        "INVALID_TENANT_ID",
        "tenant_id",
    )
