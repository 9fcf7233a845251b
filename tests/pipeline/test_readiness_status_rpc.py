"""`GetReadinessStatus`: what the pipeline tells the health service about itself, over gRPC.

The pipeline runs for real, asked over gRPC; the statement count is taken on
the real database through a pool of the test's own.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

import redis.asyncio as aioredis
from ptf.pipeline.v1 import pipeline_pb2, pipeline_pb2_grpc

from services.pipeline.extractors import ExtractorRateLimit
from services.pipeline.pilot import INVOICE_LIMITER, pilot_limiter
from services.pipeline.service import make_definition, migrate
from services.pipeline.status import ReadinessSource
from services.runtime.db import create_pool
from services.runtime.redis_client import RedisKeys
from services.runtime.traffic import StoreTraffic
from tests.conftest import StartService
from tests.pipeline.service_support import NO_TELEMETRY, fast_settings, new_tenant_id
from tests.support.services import ConfigFactory, ServiceHandle

PIPELINE = make_definition(fast_settings(inprocess_workers=0, run_relay=False))


def _start(start_service: StartService, **env: str) -> AbstractAsyncContextManager[ServiceHandle]:
    return start_service(PIPELINE, PTF_TELEMETRY_ADDR=NO_TELEMETRY, **env)


async def _status(svc: ServiceHandle) -> pipeline_pb2.ReadinessStatus:
    stub = pipeline_pb2_grpc.PipelineServiceStub(svc.service_channel)
    return await stub.GetReadinessStatus(pipeline_pb2.GetReadinessStatusRequest(), timeout=5)


async def test_one_readiness_status_costs_one_database_statement(
    make_config: ConfigFactory, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    """Counted on a pool of its own, so no background task of a running service adds to it."""
    traffic = StoreTraffic()
    config = make_config("pipeline")
    pool = await create_pool(config.database_url, traffic=traffic)
    try:
        await migrate(pool)
        source = ReadinessSource(config, pool, redis_client, RedisKeys(redis_prefix))
        before = traffic.db_statements
        await source.status()
        assert traffic.db_statements - before == 1
    finally:
        await pool.close()


async def test_openai_extractor_state_is_reported_without_the_key(
    start_service: StartService,
) -> None:
    async with _start(start_service, EXTRACTOR="openai", OPENAI_API_KEY="sk-secret") as svc:
        runtime = svc.running.runtime
        await ExtractorRateLimit(runtime.redis, runtime.keys).mark(30, "rate_limited")
        status = await _status(svc)
    assert (status.extractor.mode, status.extractor.key_configured) == ("openai", True)
    assert status.extractor.rate_limited is True
    assert b"sk-secret" not in status.SerializeToString()


async def test_pilot_budget_is_the_pilot_tenants_invoice_window(
    start_service: StartService,
) -> None:
    tenant = new_tenant_id("pilot")
    async with _start(start_service, PILOT_TENANT_ID=tenant) as svc:
        runtime = svc.running.runtime
        limiter = pilot_limiter(
            INVOICE_LIMITER, runtime.redis, runtime.keys, runtime.config.thresholds
        )
        for _ in range(2):
            await limiter.acquire(tenant)
        status = await _status(svc)
    assert (status.pilot.enabled, status.pilot.tenant_id) == (True, tenant)
    budget = status.pilot.budget
    assert (budget.current, budget.remaining) == (2, budget.limit - 2)
