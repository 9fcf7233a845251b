"""Fixtures most pipeline test modules share: a running pipeline and a tenant with a key."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.pipeline.service import make_definition, migrate
from tests.conftest import StartService
from tests.pipeline.service_support import (
    NO_TELEMETRY,
    Tenant,
    fast_settings,
    load_sample_tables,
    new_tenant,
)
from tests.support.services import ServiceHandle


@pytest.fixture
async def pipeline(start_service: StartService, pg: asyncpg.Pool) -> AsyncIterator[ServiceHandle]:
    """The pipeline with fast queue timings, telemetry down, and the sample reference tables."""
    async with start_service(
        make_definition(fast_settings()), PTF_TELEMETRY_ADDR=NO_TELEMETRY
    ) as svc:
        await load_sample_tables(pg)
        yield svc


@pytest.fixture
async def tenant(pipeline: ServiceHandle, pg: asyncpg.Pool) -> Tenant:
    """A fresh tenant of `pipeline` and a key granting only it."""
    return await new_tenant(pg)


@pytest.fixture
async def tenant_id(pg: asyncpg.Pool) -> AsyncIterator[str]:
    """A tenant of its own (migrations applied) whose jobs are finished (SKIPPED)
    afterwards, so no later worker picks them up."""
    await migrate(pg)
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    yield tenant
    await pg.execute(
        "UPDATE pipeline_jobs SET state = 'SKIPPED', finished_at = now()"
        " WHERE tenant_id = $1 AND state IN ('QUEUED', 'RUNNING')",
        tenant,
    )
