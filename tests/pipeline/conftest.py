"""Fixtures most pipeline test modules share: a running pipeline and a tenant with a key."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.pipeline.service import make_definition
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
