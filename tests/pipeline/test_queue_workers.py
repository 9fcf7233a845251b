"""Queue and workers: exclusive processing, crash recovery, retries, exhaustion, lost messages."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from services.pipeline.metrics import PipelineMetrics
from services.pipeline.queue import GROUP, JobQueue
from services.pipeline.service import WorkerParts, build_workers, make_definition
from services.runtime.metrics import create_metrics
from services.runtime.redis_client import RedisKeys
from tests.conftest import StartService
from tests.pipeline.fakes import FakeOpenAI, Reply, completion
from tests.pipeline.service_support import (
    NO_TELEMETRY,
    REPO,
    Tenant,
    document,
    fast_settings,
    field,
    load_sample_tables,
    new_tenant,
    s2_document,
)
from tests.support.polling import eventually
from tests.support.services import ServiceHandle

PDF = b"%PDF-1.7\n%test invoice\n"


async def _submit(svc: ServiceHandle, tenant: Tenant, body: Any, *, pdf: bool = False) -> str:
    """Submit asynchronously; the job id."""
    url = f"/full-process?tenant_id={tenant.tenant_id}&async=true"
    if pdf:
        form = aiohttp.FormData()
        form.add_field("file", body, filename="invoice.pdf", content_type="application/pdf")
        request = svc.http.post(url, data=form, headers=tenant.headers)
    else:
        request = svc.http.post(url, json=body, headers=tenant.headers)
    async with request as response:
        assert response.status in (200, 202), await response.text()
        job_id: str = (await response.json())["job_id"]
        return job_id


async def _job(pg: asyncpg.Pool, job_id: str) -> asyncpg.Record:
    row = await pg.fetchrow("SELECT * FROM pipeline_jobs WHERE job_id = $1", UUID(job_id))
    assert row is not None
    return row


async def _state_is(pg: asyncpg.Pool, job_id: str, state: str) -> asyncpg.Record | None:
    row = await _job(pg, job_id)
    return row if row["state"] == state else None


async def _events(pg: asyncpg.Pool, tenant_id: str, event_type: str) -> list[dict[str, Any]]:
    rows = await pg.fetch(
        "SELECT payload FROM pipeline_outbox WHERE tenant_id = $1 AND event_type = $2",
        tenant_id,
        event_type,
    )
    return [json.loads(r["payload"]) for r in rows]


@asynccontextmanager
async def _worker_groups(svc: ServiceHandle, count: int) -> AsyncIterator[list[WorkerParts]]:
    """`count` independent worker processes' worth of machinery, in this event loop."""
    runtime = svc.running.runtime
    metrics = create_metrics(runtime.config)
    groups = [
        build_workers(
            config=runtime.config,
            settings=fast_settings(),
            pool=runtime.pool,
            redis=runtime.redis,
            keys=runtime.keys,
            metrics=PipelineMetrics(metrics, pilot_enabled=runtime.config.pilot_enabled),
            count=1,
        )
        for _ in range(count)
    ]
    tasks = [asyncio.create_task(g.group.run()) for g in groups]
    try:
        yield groups
    finally:
        for group in groups:
            await group.group.stop(grace_seconds=5)
        await asyncio.gather(*tasks)
        for group in groups:
            await group.session.close()
        metrics.shutdown()


@pytest.fixture
async def no_workers(start_service: StartService, pg: asyncpg.Pool) -> AsyncIterator[ServiceHandle]:
    """The API with no in-process workers: jobs wait until a test's workers take them."""
    async with start_service(
        make_definition(fast_settings(inprocess_workers=0)), PTF_TELEMETRY_ADDR=NO_TELEMETRY
    ) as svc:
        await load_sample_tables(pg)
        yield svc


async def test_two_workers_never_both_process_a_job(
    no_workers: ServiceHandle, pg: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    """Every job is also delivered twice on the stream, so both workers see every job."""
    tenant = await new_tenant(pg)
    job_ids = [await _submit(no_workers, tenant, document()) for _ in range(20)]
    queue = JobQueue(redis_client, no_workers.running.runtime.keys)
    await queue.enqueue([(UUID(j), tenant.tenant_id) for j in job_ids])
    async with _worker_groups(no_workers, 2) as groups:

        async def all_done() -> bool:
            done = await pg.fetchval(
                "SELECT count(*) FROM pipeline_jobs WHERE tenant_id = $1 AND state = 'DONE'",
                tenant.tenant_id,
            )
            return bool(done == len(job_ids))

        await eventually(all_done, within=30)
    processed = [
        {job for job, _ in w.recent if job in job_ids} for g in groups for w in g.group.workers
    ]
    assert processed[0].isdisjoint(processed[1])
    assert processed[0] | processed[1] == set(job_ids)
    attempts = await pg.fetch(
        "SELECT attempts FROM pipeline_jobs WHERE tenant_id = $1", tenant.tenant_id
    )
    assert {r["attempts"] for r in attempts} == {1}
    assert len(await _events(pg, tenant.tenant_id, "INVOICE_PROCESSED")) == len(job_ids)


def _worker_env(svc: ServiceHandle, fake: FakeOpenAI, redis_prefix: str) -> dict[str, str]:
    config = svc.config
    env = {k: v for k, v in os.environ.items() if not k.startswith("PTF_")}
    env.update(
        {
            "DATABASE_URL": config.database_url,
            "REDIS_URL": config.redis_url,
            "PTF_REDIS_PREFIX": redis_prefix,
            "BUILD_ID": "test",
            "EXTRACTOR": "openai",
            "OPENAI_BASE_URL": fake.base_url,
            "OPENAI_API_KEY": "sk-test",
            "PTF_TELEMETRY_ADDR": NO_TELEMETRY,
            "PTF_QUEUE_VISIBILITY_TIMEOUT_SECONDS": "2",
            "PTF_PIPELINE_EXTRACTOR_TIMEOUT_SECONDS": "1.5",
            "PTF_QUEUE_BACKOFF_BASE_SECONDS": "0.1",
        }
    )
    return env


async def _spawn_worker(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.pipeline",
        "worker",
        "--concurrency",
        "1",
        env=env,
        cwd=REPO,
        stderr=asyncio.subprocess.DEVNULL,
    )


@pytest.mark.slow
async def test_worker_killed_mid_job_leaves_it_to_another_worker_with_one_incident(
    start_service: StartService,
    pg: asyncpg.Pool,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    """Fault: the worker process is SIGKILLed while its extractor call is in flight.
    Must: the job stays RUNNING and unacknowledged, another worker process reclaims it after
    the visibility timeout and finishes it, with exactly one incident and one set of events."""
    hold_first = Reply(hold=True)
    async with (
        FakeOpenAI(hold_first, completion(s2_document())).running() as fake,
        start_service(
            make_definition(fast_settings(inprocess_workers=0)),
            PTF_TELEMETRY_ADDR=NO_TELEMETRY,
            EXTRACTOR="openai",
            OPENAI_BASE_URL=fake.base_url,
            OPENAI_API_KEY="sk-test",
        ) as svc,
    ):
        await load_sample_tables(pg)
        tenant = await new_tenant(pg)
        job_id = await _submit(svc, tenant, PDF, pdf=True)
        env = _worker_env(svc, fake, redis_prefix)
        first = await _spawn_worker(env)
        second: asyncio.subprocess.Process | None = None
        try:
            await eventually(lambda: _async(len(fake.requests) >= 1), within=30)
            first.send_signal(signal.SIGKILL)
            await first.wait()
            killed = await _job(pg, job_id)
            assert (killed["state"], killed["attempts"]) == ("RUNNING", 1)

            second = await _spawn_worker(env)
            done = await eventually(lambda: _state_is(pg, job_id, "DONE"), within=30)
        finally:
            for process in (first, second):
                if process is not None and process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                    await process.wait()
        assert done["attempts"] == 2
        assert f":{first.pid}:" not in done["finished_by"]
        incidents = await pg.fetchval(
            "SELECT count(*) FROM pipeline_incidents WHERE tenant_id = $1", tenant.tenant_id
        )
        assert incidents == 1
        assert len(await _events(pg, tenant.tenant_id, "INCIDENT_CREATED")) == 1
        assert len(await _events(pg, tenant.tenant_id, "INVOICE_PROCESSED")) == 1
        stream = JobQueue(redis_client, RedisKeys(redis_prefix)).stream
        assert (await redis_client.xpending(stream, GROUP))["pending"] == 0
        assert second is not None
        assert second.returncode == 0


async def _async(value: bool) -> bool:
    return value


@asynccontextmanager
async def _openai_pipeline(
    start_service: StartService, *replies: Reply, **settings: Any
) -> AsyncIterator[tuple[ServiceHandle, FakeOpenAI]]:
    async with (
        FakeOpenAI(*replies).running() as fake,
        start_service(
            make_definition(fast_settings(**settings)),
            PTF_TELEMETRY_ADDR=NO_TELEMETRY,
            EXTRACTOR="openai",
            OPENAI_BASE_URL=fake.base_url,
            OPENAI_API_KEY="sk-test",
        ) as svc,
    ):
        yield svc, fake


async def test_transient_extractor_failure_is_retried_and_the_job_completes(
    start_service: StartService, pg: asyncpg.Pool
) -> None:
    """Fault: the extractor answers 429 once. Must: the job goes back to the queue with a
    backoff, succeeds on the second attempt, and keeps no error."""
    async with _openai_pipeline(
        start_service, Reply(429, {"error": "rate"}), completion(document())
    ) as (svc, fake):
        await load_sample_tables(pg)
        tenant = await new_tenant(pg)
        job_id = await _submit(svc, tenant, PDF, pdf=True)
        done = await eventually(lambda: _state_is(pg, job_id, "DONE"), within=20)
    assert done["attempts"] == 2
    assert done["error_code"] is None
    assert len(fake.requests) == 2


async def test_job_failing_on_every_attempt_becomes_exhausted_with_its_event(
    start_service: StartService, pg: asyncpg.Pool
) -> None:
    """Fault: the extractor answers 503 on every call. Must: after max_attempts the job is
    EXHAUSTED (no further calls) and a JOB_EXHAUSTED event is in the outbox."""
    async with _openai_pipeline(
        start_service,
        Reply(503, {"error": "down"}),
        queue=replace(fast_settings().queue, max_attempts=2),
    ) as (svc, fake):
        tenant = await new_tenant(pg)
        job_id = await _submit(svc, tenant, PDF, pdf=True)
        exhausted = await eventually(lambda: _state_is(pg, job_id, "EXHAUSTED"), within=20)
    assert (exhausted["attempts"], exhausted["error_code"]) == (2, "EXTRACTOR_ERROR")
    assert len(fake.requests) == 2
    assert await _events(pg, tenant.tenant_id, "JOB_EXHAUSTED") == [{"job_id": job_id}]


async def test_extraction_that_fails_validation_fails_the_job_with_its_code(
    start_service: StartService, pg: asyncpg.Pool
) -> None:
    """Fault: the extractor returns a negative kWh. Must: synchronous intake answers 422
    NEGATIVE_VALUE and the job is FAILED (not retried)."""
    async with _openai_pipeline(start_service, completion(document(consumption_kwh=field(-5)))) as (
        svc,
        fake,
    ):
        tenant = await new_tenant(pg)
        form = aiohttp.FormData()
        form.add_field("file", PDF, filename="invoice.pdf", content_type="application/pdf")
        async with svc.http.post(
            f"/full-process?tenant_id={tenant.tenant_id}", data=form, headers=tenant.headers
        ) as response:
            body = await response.json()
    assert (response.status, body["error_code"], body["state"]) == (
        422,
        "NEGATIVE_VALUE",
        "FAILED",
    )
    assert len(fake.requests) == 1


async def test_job_whose_stream_message_was_lost_is_resent_by_the_sweeper(
    no_workers: ServiceHandle, pg: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    """Fault: the job's stream message is gone (Redis lost it after intake). Must: the
    sweeper re-sends the job once its message is overdue, and a worker completes it."""
    tenant = await new_tenant(pg)
    job_id = await _submit(no_workers, tenant, document())
    await redis_client.delete(JobQueue(redis_client, no_workers.running.runtime.keys).stream)
    await pg.execute(
        "UPDATE pipeline_jobs SET enqueued_at = now() - interval '1 hour' WHERE job_id = $1",
        UUID(job_id),
    )
    async with _worker_groups(no_workers, 1):
        done = await eventually(lambda: _state_is(pg, job_id, "DONE"), within=20)
    assert done["attempts"] == 1


async def test_consumers_of_exited_workers_are_pruned_unless_they_hold_messages(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    queue = JobQueue(redis_client, RedisKeys(redis_prefix))
    await queue.ensure_group()
    await queue.enqueue([(UUID(int=1), "t"), (UUID(int=2), "t")])
    held = await queue.read("holder", 1, 10)
    for message in await queue.read("exited", 1, 10):
        await queue.ack(message.message_id)
    removed = await queue.prune_consumers(idle_ms=0)
    consumers = await redis_client.xinfo_consumers(queue.stream, GROUP)
    assert removed == 1
    assert [c["name"] for c in consumers] == [b"holder"]
    assert len(held) == 1
