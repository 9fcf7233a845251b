"""Store outages at the pipeline API (SPEC §11): a clear 503 / UNAVAILABLE with Retry-After,
then recovery."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from ptf.pipeline.v1 import pipeline_pb2, pipeline_pb2_grpc

from services.pipeline.service import make_definition
from services.runtime.devservers import EmbeddedPostgres, EmbeddedRedis
from tests.conftest import StartService
from tests.pipeline.service_support import (
    NO_TELEMETRY,
    Tenant,
    business_rows,
    document,
    fast_settings,
    load_sample_tables,
    new_tenant,
)
from tests.support.polling import eventually
from tests.support.services import ServiceHandle
from tests.support.stores import DATA_ROOT


@pytest.fixture
def store_dir() -> Iterator[Path]:
    """A data folder the embedded servers' unprivileged user can reach (like the suite's)."""
    DATA_ROOT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=DATA_ROOT, prefix="test-outage-") as folder:
        yield Path(folder)


async def _submit(
    svc: ServiceHandle, tenant: Tenant, doc: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any], str | None]:
    async with svc.http.post(
        f"/full-process?tenant_id={tenant.tenant_id}",
        json=doc or document(),
        headers=tenant.headers,
    ) as response:
        return response.status, await response.json(), response.headers.get("Retry-After")


@pytest.mark.slow
async def test_database_outage_answers_503_with_retry_after_and_the_service_recovers(
    start_service: StartService, store_dir: Path
) -> None:
    """Fault: PostgreSQL stops while the service runs. Must: submissions get 503
    DATABASE_UNAVAILABLE with Retry-After (no 500), succeed again once it is back, and no
    background task (workers, relay, samplers) dies of the outage."""
    server = EmbeddedPostgres(store_dir)
    url = await asyncio.to_thread(server.start)
    try:
        async with start_service(
            make_definition(fast_settings()), DATABASE_URL=url, PTF_TELEMETRY_ADDR=NO_TELEMETRY
        ) as svc:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
            try:
                await load_sample_tables(pool)
                tenant = await new_tenant(pool)
            finally:
                await pool.close()
            assert (await _submit(svc, tenant))[0] == 200

            await asyncio.to_thread(server.stop)
            status, body, retry_after = await _submit(svc, tenant)
            assert (status, body["error_code"], retry_after) == (503, "DATABASE_UNAVAILABLE", "5")

            await asyncio.to_thread(server.start)

            async def accepted() -> bool:
                return (await _submit(svc, tenant))[0] == 200

            await eventually(accepted, within=30, interval=0.2)
            assert svc.running.runtime.background_failures == {}
    finally:
        await asyncio.to_thread(server.stop)


@pytest.mark.slow
async def test_redis_outage_refuses_submissions_with_503_and_the_stored_job_runs_later(
    start_service: StartService, pg: asyncpg.Pool, store_dir: Path
) -> None:
    """Fault: Redis stops while the service runs (and comes back empty). Must: a submission
    gets 503 QUEUE_UNAVAILABLE with Retry-After; once Redis is back the job that was stored
    runs (the sweeper re-sends it) and resubmitting the document returns that one job."""
    server = EmbeddedRedis(store_dir)
    url = await asyncio.to_thread(server.start)
    try:
        async with start_service(
            make_definition(fast_settings()), REDIS_URL=url, PTF_TELEMETRY_ADDR=NO_TELEMETRY
        ) as svc:
            await load_sample_tables(pg)
            tenant = await new_tenant(pg)
            await asyncio.to_thread(server.stop)
            doc = document()
            status, body, retry_after = await _submit(svc, tenant, doc)
            assert (status, body["error_code"], retry_after) == (503, "QUEUE_UNAVAILABLE", "5")

            await asyncio.to_thread(server.start)

            async def done() -> bool:
                status, body, _ = await _submit(svc, tenant, doc)
                return status == 200 and body["deduplicated"] is True

            await eventually(done, within=30, interval=0.2)
            assert (await business_rows(pg, tenant.tenant_id))["jobs"] == 1
            assert svc.running.runtime.background_failures == {}
    finally:
        await asyncio.to_thread(server.stop)


@pytest.mark.slow
async def test_redis_outage_makes_readiness_status_unavailable_not_internal(
    start_service: StartService, store_dir: Path
) -> None:
    """Fault: Redis stops while the service runs. Must: GetReadinessStatus (what health's
    readiness asks) is UNAVAILABLE QUEUE_UNAVAILABLE with a retry-after trailer, not
    INTERNAL with a logged traceback; it answers again once Redis is back."""
    server = EmbeddedRedis(store_dir)
    url = await asyncio.to_thread(server.start)
    try:
        async with start_service(
            make_definition(fast_settings()), REDIS_URL=url, PTF_TELEMETRY_ADDR=NO_TELEMETRY
        ) as svc:
            stub = pipeline_pb2_grpc.PipelineServiceStub(svc.service_channel)
            request = pipeline_pb2.GetReadinessStatusRequest()
            await stub.GetReadinessStatus(request)
            await asyncio.to_thread(server.stop)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetReadinessStatus(request)
            trailers = dict(caught.value.trailing_metadata() or ())
            assert (caught.value.code(), trailers.get("ptf-error-code")) == (
                grpc.StatusCode.UNAVAILABLE,
                "QUEUE_UNAVAILABLE",
            )
            assert trailers.get("retry-after") == "5"
            await asyncio.to_thread(server.start)

            async def answers() -> bool:
                try:
                    await stub.GetReadinessStatus(request)
                except grpc.aio.AioRpcError:
                    return False
                return True

            await eventually(answers, within=30, interval=0.2)
    finally:
        await asyncio.to_thread(server.stop)
