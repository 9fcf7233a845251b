"""The pilot guard end to end (SPEC §3.6): kill switch, hourly budgets shared through Redis."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis
from opentelemetry.metrics import NoOpCounter
from ptf.pipeline.v1 import pipeline_pb2, pipeline_pb2_grpc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from services.health.service import DEFINITION as HEALTH
from services.pipeline.pilot import INCIDENT_LIMITER, INVOICE_LIMITER, PilotGuard, pilot_limiter
from services.pipeline.service import make_definition
from services.runtime.config import load_thresholds
from services.runtime.devservers import free_port
from services.runtime.errors import ERROR_CODE_METADATA, Unavailable
from services.runtime.healthcheck import is_serving
from services.runtime.redis_client import RedisKeys
from tests.conftest import StartService
from tests.pipeline.service_support import (
    NO_ROWS,
    NO_TELEMETRY,
    REPO,
    Tenant,
    business_rows,
    document,
    fast_settings,
    load_sample_tables,
    new_tenant,
    new_tenant_id,
    s2_document,
)
from tests.support.polling import eventually
from tests.support.services import ServiceHandle

PilotService = Callable[..., AbstractAsyncContextManager[tuple[ServiceHandle, Tenant]]]


@pytest.fixture
def pilot_service(start_service: StartService, pg: asyncpg.Pool) -> PilotService:
    """A pipeline whose pilot tenant is fresh for this test, with that tenant's key."""
    pilot_id = new_tenant_id("pilot")

    @asynccontextmanager
    async def start(
        *, enabled: bool = True, workers: int = 2, **env: str
    ) -> AsyncIterator[tuple[ServiceHandle, Tenant]]:
        async with start_service(
            make_definition(fast_settings(inprocess_workers=workers)),
            PTF_TELEMETRY_ADDR=NO_TELEMETRY,
            PILOT_TENANT_ID=pilot_id,
            PILOT_ENABLED=str(enabled).lower(),
            **env,
        ) as svc:
            await load_sample_tables(pg)
            yield svc, await new_tenant(pg, tenant_id=pilot_id)

    return start


async def _submit(
    http: aiohttp.ClientSession, tenant: Tenant, doc: dict[str, Any], *, wait: bool = True
) -> tuple[int, dict[str, Any], Mapping[str, str]]:
    query = "" if wait else "&async=true"
    async with http.post(
        f"/full-process?tenant_id={tenant.tenant_id}{query}", json=doc, headers=tenant.headers
    ) as response:
        return response.status, await response.json(), response.headers


async def _job(svc: ServiceHandle, tenant: Tenant, job_id: str) -> dict[str, Any]:
    async with svc.http.get(
        f"/jobs/{job_id}", params={"tenant_id": tenant.tenant_id}, headers=tenant.headers
    ) as response:
        body: dict[str, Any] = await response.json()
        return body


async def test_pilot_submission_is_refused_with_503_while_the_kill_switch_is_off(
    pilot_service: PilotService, pg: asyncpg.Pool
) -> None:
    async with pilot_service(enabled=False) as (svc, pilot):
        status, body, _ = await _submit(svc.http, pilot, document())
    assert (status, body["error_code"]) == (503, "PILOT_DISABLED")
    assert await business_rows(pg, pilot.tenant_id) == NO_ROWS


async def test_pilot_submission_over_grpc_is_unavailable_while_the_kill_switch_is_off(
    pilot_service: PilotService,
) -> None:
    async with pilot_service(enabled=False) as (svc, pilot):
        stub = pipeline_pb2_grpc.PipelineServiceStub(svc.channel)
        request = pipeline_pb2.SubmitInvoiceRequest(
            tenant_id=pilot.tenant_id, extraction_json=json.dumps(document()).encode()
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SubmitInvoice(request, metadata=pilot.metadata)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert dict(caught.value.trailing_metadata() or ())[ERROR_CODE_METADATA] == "PILOT_DISABLED"


async def test_other_tenants_are_processed_while_the_kill_switch_is_off(
    pilot_service: PilotService, pg: asyncpg.Pool
) -> None:
    async with pilot_service(enabled=False) as (svc, _):
        other = await new_tenant(pg)
        status, body, _ = await _submit(svc.http, other, document())
    assert (status, body["state"]) == (200, "DONE")


async def test_pipeline_keeps_serving_while_the_kill_switch_is_off(
    pilot_service: PilotService,
) -> None:
    async with pilot_service(enabled=False) as (svc, _):
        assert await is_serving(svc.channel)


async def test_queued_pilot_jobs_are_skipped_once_the_kill_switch_is_off(
    pilot_service: PilotService, pg: asyncpg.Pool
) -> None:
    async with pilot_service(workers=0) as (svc, pilot):
        other = await new_tenant(pg)
        queued = [(await _submit(svc.http, pilot, document(), wait=False))[1] for _ in range(3)]
        other_job = (await _submit(svc.http, other, document(), wait=False))[1]
    async with pilot_service(enabled=False) as (svc, _):

        async def settled() -> list[dict[str, Any]] | None:
            jobs = [await _job(svc, pilot, j["job_id"]) for j in queued]
            jobs.append(await _job(svc, other, other_job["job_id"]))
            return jobs if all(j["state"] not in ("QUEUED", "RUNNING") for j in jobs) else None

        jobs = await eventually(settled, within=10)
    assert [(j["state"], j["error_code"]) for j in jobs[:3]] == [("SKIPPED", "PILOT_DISABLED")] * 3
    assert jobs[3]["state"] == "DONE"
    assert (await business_rows(pg, pilot.tenant_id))["incidents"] == 0


async def test_resubmitting_a_pilot_document_spends_no_budget(
    pilot_service: PilotService,
) -> None:
    async with pilot_service(PTF_THRESHOLD__PILOT__MAX_INVOICES_PER_HOUR="2") as (svc, pilot):
        first = document()
        statuses = [
            (await _submit(svc.http, pilot, doc))[0] for doc in (first, first, first, document())
        ]
        refused, body, headers = await _submit(svc.http, pilot, document())
    assert statuses == [200, 200, 200, 200]
    assert (refused, body["error_code"]) == (429, "PILOT_RATE_LIMITED")
    assert 3500 <= int(headers["Retry-After"]) <= 3600


async def test_pilot_submission_over_budget_over_grpc_is_resource_exhausted(
    pilot_service: PilotService,
) -> None:
    async with pilot_service(PTF_THRESHOLD__PILOT__MAX_INVOICES_PER_HOUR="1") as (svc, pilot):
        stub = pipeline_pb2_grpc.PipelineServiceStub(svc.channel)

        def request() -> pipeline_pb2.SubmitInvoiceRequest:
            return pipeline_pb2.SubmitInvoiceRequest(
                tenant_id=pilot.tenant_id, extraction_json=json.dumps(document()).encode()
            )

        await stub.SubmitInvoice(request(), metadata=pilot.metadata)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SubmitInvoice(request(), metadata=pilot.metadata)
    trailers = dict(caught.value.trailing_metadata() or ())
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert trailers[ERROR_CODE_METADATA] == "PILOT_RATE_LIMITED"
    assert 3500 <= int(trailers["retry-after"]) <= 3600


async def test_budget_spent_by_the_pipeline_shows_in_readiness(
    pilot_service: PilotService, start_service: StartService
) -> None:
    async with pilot_service() as (svc, pilot):
        for _ in range(3):
            await _submit(svc.http, pilot, document(), wait=False)
        async with (
            start_service(HEALTH, PTF_PIPELINE_ADDR=svc.running.grpc_target) as health,
            health.http.get("/health/ready") as response,
        ):
            report = await response.json()
    assert report["pilot"]["tenant_id"] == pilot.tenant_id
    assert report["pilot"]["rate_limit"]["current"] == 3
    assert report["pilot"]["rate_limit"]["remaining"] == 47


async def test_the_21st_pilot_incident_within_an_hour_is_skipped_and_counted(
    pilot_service: PilotService, pg: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    async with pilot_service() as (svc, pilot):
        for _ in range(20):
            status, body, _ = await _submit(svc.http, pilot, s2_document())
            assert (status, body["incident_id"] is not None) == (200, True)
        with caplog.at_level(logging.WARNING, logger="services.pipeline.pilot"):
            status, last, _ = await _submit(svc.http, pilot, s2_document())
        async with svc.http.get("/metrics") as response:
            metrics = await response.text()
    assert (status, last["state"], last["incident_id"]) == (200, "DONE", None)
    assert last["result"]["incident_skipped"] == "PILOT_INCIDENT_BUDGET_SPENT"
    assert (await business_rows(pg, pilot.tenant_id))["incidents"] == 20
    assert "ptf_pipeline_pilot_incidents_skipped_total 1.0" in metrics
    assert any("incident budget spent" in r.getMessage() for r in caplog.records)


async def test_incidents_of_other_tenants_are_not_budgeted(
    pilot_service: PilotService, pg: asyncpg.Pool
) -> None:
    async with pilot_service(PTF_THRESHOLD__PILOT__MAX_INCIDENTS_PER_HOUR="1") as (svc, _):
        other = await new_tenant(pg)
        bodies = [(await _submit(svc.http, other, s2_document()))[1] for _ in range(3)]
    assert all(b["incident_id"] is not None for b in bodies)


async def test_pilot_budget_that_cannot_be_checked_refuses_with_503(
    redis_prefix: str,
) -> None:
    unreachable = aioredis.Redis(host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), 0))
    keys, thresholds = RedisKeys(redis_prefix), load_thresholds({})
    guard = PilotGuard(
        tenant_id="pilot",
        enabled=True,
        invoices=pilot_limiter(INVOICE_LIMITER, unreachable, keys, thresholds),
        incidents=pilot_limiter(INCIDENT_LIMITER, unreachable, keys, thresholds),
        incidents_skipped=NoOpCounter("unused"),
    )
    with pytest.raises(Unavailable) as caught:
        await guard.reserve_invoice("pilot")
    await unreachable.aclose()
    assert (caught.value.error_code, caught.value.retry_after_seconds) == (
        "RATE_LIMIT_UNAVAILABLE",
        5,
    )


@asynccontextmanager
async def _pipeline_process(env: dict[str, str]) -> AsyncIterator[aiohttp.ClientSession]:
    """`python -m services.pipeline` on free ports, once it reports SERVING."""
    grpc_port, http_port = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.pipeline",
        env={**env, "PTF_GRPC_PORT": str(grpc_port), "PTF_HTTP_PORT": str(http_port)},
        cwd=REPO,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            await eventually(lambda: is_serving(channel), within=30)
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{http_port}") as http:
            yield http
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=30)


@pytest.mark.slow
async def test_the_51st_pilot_invoice_within_an_hour_gets_429_across_two_processes(
    pg: asyncpg.Pool, database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    pilot_id = new_tenant_id("pilot")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PTF_")}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        PTF_REDIS_PREFIX=redis_prefix,
        PTF_METRICS_DIR=str(tmp_path),
        PTF_TELEMETRY_ADDR=NO_TELEMETRY,
        PILOT_TENANT_ID=pilot_id,
        BUILD_ID="test",
    )
    async with _pipeline_process(env) as first, _pipeline_process(env) as second:
        pilot = await new_tenant(pg, tenant_id=pilot_id)
        accepted = [
            (await _submit((first, second)[i % 2], pilot, document(), wait=False))[0]
            for i in range(50)
        ]
        status, body, headers = await _submit(second, pilot, document(), wait=False)
        other_status, _, _ = await _submit(first, pilot, document(), wait=False)
    assert accepted == [202] * 50
    assert (status, body["error_code"], other_status) == (429, "PILOT_RATE_LIMITED", 429)
    assert 3500 <= int(headers["Retry-After"]) <= 3600
    assert (await business_rows(pg, pilot_id))["jobs"] == 50
