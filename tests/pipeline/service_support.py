"""Helpers for pipeline service tests: tenants with keys, documents, reference data, row counts.

The test database is shared by the whole run, so every test works in its own
tenant (`new_tenant`) and counts only that tenant's rows.
"""

from __future__ import annotations

import copy
import hashlib
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg

from services.pipeline.domain import parse_market_prices_csv, parse_tariffs_csv
from services.pipeline.market import MarketStore
from services.pipeline.settings import (
    ExtractorSettings,
    PipelineSettings,
    QueueSettings,
    RelaySettings,
)
from tests.support.services import ServiceHandle

REPO = Path(__file__).resolve().parents[2]
SAMPLE_DATA = REPO / "services" / "pipeline" / "sample_data"
DEV_ADMIN_KEY = "dev-admin-key"
ADMIN = {"X-Admin-Key": DEV_ADMIN_KEY}
# Nothing listens here: telemetry is "down" unless a test starts a fake on its own port.
NO_TELEMETRY = "127.0.0.1:9"


def fast_settings(**overrides: Any) -> PipelineSettings:
    """Short timeouts and intervals so retries, reclaims and sweeps happen within a test."""
    queue = QueueSettings(
        visibility_timeout_seconds=2.0,
        backoff_base_seconds=0.1,
        backoff_max_seconds=0.5,
        read_block_ms=200,
        sweep_interval_seconds=0.1,
        reclaim_interval_seconds=0.2,
    )
    relay = RelaySettings(
        interval_seconds=0.05,
        backoff_base_seconds=0.05,
        backoff_max_seconds=0.3,
        rpc_timeout_seconds=2.0,
    )
    extractor = ExtractorSettings(request_timeout_seconds=1.5)
    base = PipelineSettings(queue=queue, relay=relay, extractor=extractor)
    return replace(base, **overrides)


def field(value: Any, confidence: Any = 0.95) -> dict[str, Any]:
    return {"value": value, "confidence": confidence}


def document(**overrides: Any) -> dict[str, Any]:
    """A clean invoice (no flags) made unique by an `invoice_number` the pipeline ignores."""
    doc: dict[str, Any] = {
        "consumption_kwh": field(10000),
        "current_active_unit_price_tl_per_kwh": field(3.5),
        "invoice_total_with_vat_tl": field(42000),
        "provider": "Test Elektrik",
        "invoice_period": "2026-01",
        "tariff_group": "ticarethane_ag",
        "invoice_number": uuid.uuid4().hex,
    }
    for key, value in overrides.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = copy.deepcopy(value)
    return doc


def s2_document() -> dict[str, Any]:
    """The seed's S2 mismatch: 10000 kWh × 3.5 × 1.2 = 42000 against an invoice of 50000."""
    return document(invoice_total_with_vat_tl=field(50000))


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-api-key", self.api_key),)


def new_tenant_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def new_tenant(pg: asyncpg.Pool, prefix: str = "t", tenant_id: str | None = None) -> Tenant:
    """A tenant key granting only `tenant_id` (default: a fresh tenant); needs the migrations."""
    tenant_id = tenant_id or new_tenant_id(prefix)
    api_key = f"key-{uuid.uuid4().hex}"
    await pg.execute(
        "INSERT INTO api_keys (key_hash, role, tenants, operator, label)"
        " VALUES ($1, 'tenant', $2, $3, 'test')",
        hashlib.sha256(api_key.encode()).hexdigest(),
        [tenant_id],
        f"{tenant_id}-team",
    )
    return Tenant(tenant_id, api_key)


async def load_sample_tables(pg: asyncpg.Pool) -> None:
    """The sample market prices and tariffs (idempotent upsert)."""
    store = MarketStore(pg)
    prices = parse_market_prices_csv((SAMPLE_DATA / "market_prices.sample.csv").read_text())
    tariffs = parse_tariffs_csv((SAMPLE_DATA / "tariffs.sample.csv").read_text())
    await store.upsert_prices(prices, "sample")
    await store.upsert_tariffs(tariffs, "sample")


async def submit(svc: ServiceHandle, tenant: Tenant, doc: dict[str, Any]) -> dict[str, Any]:
    """Submit `doc` synchronously over HTTP with the tenant's key; the processed job."""
    async with svc.http.post(
        f"/full-process?tenant_id={tenant.tenant_id}", json=doc, headers=tenant.headers
    ) as response:
        body: dict[str, Any] = await response.json()
    assert response.status == 200, body
    return body


@dataclass(frozen=True)
class TenantWithIncidents:
    """A tenant with a finished job, an OPEN incident and a RESOLVED incident."""

    tenant: Tenant
    job_id: str
    open_incident: str
    resolved_incident: str


async def with_incidents(svc: ServiceHandle, tenant: Tenant) -> TenantWithIncidents:
    """Two S2 invoices of `tenant`, the second one's incident resolved by the dev admin."""
    first = await submit(svc, tenant, s2_document())
    second = await submit(svc, tenant, s2_document())
    async with svc.http.post(
        f"/admin/incidents/{second['incident_id']}/resolve",
        json={"resolution_reason": "fixed", "operator": "ayse"},
        headers=ADMIN,
    ) as response:
        assert response.status == 200, await response.text()
    return TenantWithIncidents(tenant, first["job_id"], first["incident_id"], second["incident_id"])


async def tenant_rows(pg: asyncpg.Pool, tenant_id: str) -> dict[str, list[str]]:
    """Every business row of a tenant as JSON text, in a stable order.

    Outbox rows are compared by identity and content only: the relay updates
    their delivery columns on its own schedule, and per-request outcome
    events are not business data.
    """
    rows: dict[str, list[str]] = {}
    for name, query in {
        "invoices": "SELECT to_jsonb(t)::text FROM pipeline_invoices t"
        " WHERE tenant_id = $1 ORDER BY invoice_id",
        "jobs": "SELECT to_jsonb(t)::text FROM pipeline_jobs t"
        " WHERE tenant_id = $1 ORDER BY job_id",
        "incidents": "SELECT to_jsonb(t)::text FROM pipeline_incidents t"
        " WHERE tenant_id = $1 ORDER BY incident_id",
        "events": "SELECT jsonb_build_array(event_id, event_type, payload)::text"
        " FROM pipeline_outbox WHERE tenant_id = $1"
        " AND event_type NOT IN ('HTTP_REQUEST', 'QUEUE_SAMPLE') ORDER BY seq",
    }.items():
        rows[name] = [record[0] for record in await pg.fetch(query, tenant_id)]
    return rows


async def business_rows(pg: asyncpg.Pool, tenant_id: str) -> dict[str, int]:
    """Rows a submission may write for a tenant (HTTP request outcome events excluded)."""
    row = await pg.fetchrow(
        "SELECT (SELECT count(*) FROM pipeline_invoices WHERE tenant_id = $1) AS invoices,"
        " (SELECT count(*) FROM pipeline_jobs WHERE tenant_id = $1) AS jobs,"
        " (SELECT count(*) FROM pipeline_incidents WHERE tenant_id = $1) AS incidents,"
        " (SELECT count(*) FROM pipeline_outbox WHERE tenant_id = $1"
        "   AND event_type NOT IN ('HTTP_REQUEST', 'QUEUE_SAMPLE')) AS events",
        tenant_id,
    )
    assert row is not None
    return dict(row)


NO_ROWS = {"invoices": 0, "jobs": 0, "incidents": 0, "events": 0}
