"""Batched workers (SPEC §3.5, §3.6, §3.8): one read, one claim and one commit per batch,
with every per-job guarantee kept: lease fencing, one incident per invoice, the pilot's
incident budget, and a synchronous caller answered from the job notification."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import pytest
import redis.asyncio as aioredis

from services.pipeline.incident_feed import IncidentFeed
from services.pipeline.jobs import Completed, Completion, JobState, JobStore, JobView
from services.pipeline.market import MarketStore
from services.pipeline.metrics import PipelineMetrics
from services.pipeline.notifications import JobNotifier, JobWatcher
from services.pipeline.processor import INCIDENT_SKIPPED_KEY, InvoiceProcessor
from services.pipeline.queue import GROUP, JobQueue, QueueMessage
from services.pipeline.service import make_definition, pilot_guard
from services.pipeline.worker import Worker, consumer_name
from services.runtime.live.bus import LivePublisher
from services.runtime.metrics import create_metrics
from tests.conftest import StartService
from tests.pipeline.service_support import (
    NO_TELEMETRY,
    Tenant,
    document,
    fast_settings,
    load_sample_tables,
    new_tenant,
    new_tenant_id,
    s2_document,
)
from tests.support.polling import eventually
from tests.support.services import ServiceHandle

# A second worker that takes a job over while the first one still evaluates its batch.
NEW_OWNER = "another-worker"


class TakeoverJobStore(JobStore):
    """The real store; right before the batch commits, `NEW_OWNER` takes over `victim`
    exactly as a worker reclaiming an expired lease would (the same row update)."""

    victim: UUID | None = None

    async def complete_many(
        self, owner: str, completions: Sequence[Completion]
    ) -> dict[UUID, Completed]:
        if self.victim is not None:
            await self._pool.execute(
                "UPDATE pipeline_jobs SET lease_owner = $2, attempts = attempts + 1,"
                " lease_expires_at = now() + interval '30 seconds', updated_at = now()"
                " WHERE job_id = $1",
                self.victim,
                NEW_OWNER,
            )
        return await super().complete_many(owner, completions)


class CountingJobStore(JobStore):
    """The real store, counting the job reads a waiter makes."""

    reads = 0

    async def get(self, job_id: UUID, tenant_id: str) -> JobView | None:
        self.reads += 1
        return await super().get(job_id, tenant_id)


@dataclass
class Batching:
    svc: ServiceHandle
    worker: Worker
    jobs: TakeoverJobStore
    queue: JobQueue
    notifier: JobNotifier


@asynccontextmanager
async def _batching(svc: ServiceHandle) -> AsyncIterator[Batching]:
    """One worker of this test's own, driven a batch at a time by the test."""
    runtime = svc.running.runtime
    settings = fast_settings()
    metrics = create_metrics(runtime.config)
    pipeline_metrics = PipelineMetrics(metrics, pilot_enabled=runtime.config.pilot_enabled)
    jobs = TakeoverJobStore(runtime.pool)
    queue = JobQueue(runtime.redis, runtime.keys)
    publisher = LivePublisher(
        runtime.redis, runtime.keys, runtime.config.live, pipeline_metrics.live
    )
    notifier = JobNotifier(publisher)
    pilot = pilot_guard(runtime.config, runtime.redis, runtime.keys, pipeline_metrics)
    processor = InvoiceProcessor(
        runtime.pool,
        jobs,
        MarketStore(runtime.pool),
        None,
        runtime.config.thresholds,
        settings.queue,
        pipeline_metrics,
        pilot,
    )
    feed = IncidentFeed(publisher)
    worker = Worker(consumer_name(0), queue, jobs, processor, notifier, feed, settings.queue, pilot)
    try:
        yield Batching(svc, worker, jobs, queue, notifier)
    finally:
        metrics.shutdown()


@pytest.fixture
async def no_workers(start_service: StartService, pg: asyncpg.Pool) -> AsyncIterator[ServiceHandle]:
    """The API with no in-process workers: the test's worker takes every message."""
    async with start_service(
        make_definition(fast_settings(inprocess_workers=0)), PTF_TELEMETRY_ADDR=NO_TELEMETRY
    ) as svc:
        await load_sample_tables(pg)
        yield svc


async def _submit(svc: ServiceHandle, tenant: Tenant, doc: dict[str, Any]) -> UUID:
    async with svc.http.post(
        f"/full-process?tenant_id={tenant.tenant_id}&async=true", json=doc, headers=tenant.headers
    ) as response:
        assert response.status in (200, 202), await response.text()
        return UUID((await response.json())["job_id"])


async def _read_all(b: Batching, expected: int) -> list[QueueMessage]:
    """Every message on the stream, read the way the worker reads them (one XREADGROUP)."""
    messages = await b.queue.read(b.worker.name, 1000, 1000)
    assert len(messages) == expected
    return messages


async def _pending_ids(redis: aioredis.Redis, b: Batching) -> set[str]:
    entries = await redis.xpending_range(
        b.queue.stream, GROUP, min="-", max="+", count=1000, consumername=b.worker.name
    )
    return {_text(e["message_id"]) for e in entries}


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _rows(pg: asyncpg.Pool, tenant_id: str) -> dict[UUID, asyncpg.Record]:
    rows = await pg.fetch(
        "SELECT j.*, i.result::text AS result FROM pipeline_jobs j"
        " JOIN pipeline_invoices i ON i.invoice_id = j.invoice_id WHERE j.tenant_id = $1",
        tenant_id,
    )
    return {r["job_id"]: r for r in rows}


async def _event_jobs(pg: asyncpg.Pool, tenant_id: str) -> list[str]:
    rows = await pg.fetch(
        "SELECT payload FROM pipeline_outbox"
        " WHERE tenant_id = $1 AND event_type = 'INVOICE_PROCESSED'",
        tenant_id,
    )
    return [json.loads(r["payload"])["job_id"] for r in rows]


async def _finish_as_new_owner(pg: asyncpg.Pool, job_id: UUID) -> None:
    """`NEW_OWNER` is a stand-in that never finishes what it took over; the suite shares the
    database, and a job left RUNNING there counts in later tests' queue depth."""
    await pg.execute(
        "UPDATE pipeline_jobs SET state = 'DONE', finished_at = now(), finished_by = $2,"
        " lease_owner = NULL, lease_expires_at = NULL WHERE job_id = $1 AND lease_owner = $2",
        job_id,
        NEW_OWNER,
    )


async def test_a_job_whose_lease_was_taken_over_is_left_to_its_new_owner_and_the_rest_commit(
    no_workers: ServiceHandle, pg: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    tenant = await new_tenant(pg)
    job_ids = [await _submit(no_workers, tenant, s2_document()) for _ in range(5)]
    victim = job_ids[2]
    async with _batching(no_workers) as b:
        messages = await _read_all(b, len(job_ids))
        b.jobs.victim = victim
        await b.worker.handle_batch(messages)
        rows = await _rows(pg, tenant.tenant_id)
        pending = await _pending_ids(redis_client, b)
    await _finish_as_new_owner(pg, victim)
    victim_message = next(m.message_id for m in messages if m.job_id == victim)
    assert pending == {victim_message}
    assert {j: rows[j]["state"] for j in job_ids if j != victim} == {
        j: "DONE" for j in job_ids if j != victim
    }
    taken = rows[victim]
    assert (taken["state"], taken["lease_owner"], taken["attempts"]) == (
        "RUNNING",
        NEW_OWNER,
        2,
    )
    assert taken["result"] is None
    assert taken["finished_at"] is None
    assert sorted(await _event_jobs(pg, tenant.tenant_id)) == sorted(
        str(j) for j in job_ids if j != victim
    )
    incidents = await pg.fetch(
        "SELECT inc.invoice_id FROM pipeline_incidents inc WHERE inc.tenant_id = $1",
        tenant.tenant_id,
    )
    assert rows[victim]["invoice_id"] not in {r["invoice_id"] for r in incidents}
    assert len(incidents) == len(job_ids) - 1


async def test_two_messages_for_one_invoice_in_a_batch_open_one_incident(
    no_workers: ServiceHandle, pg: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    tenant = await new_tenant(pg)
    job_id = await _submit(no_workers, tenant, s2_document())
    other = await _submit(no_workers, tenant, document())
    async with _batching(no_workers) as b:
        await b.queue.enqueue([(job_id, tenant.tenant_id)])
        await b.worker.handle_batch(await _read_all(b, 3))
        pending = await _pending_ids(redis_client, b)
    rows = await _rows(pg, tenant.tenant_id)
    assert (rows[job_id]["state"], rows[job_id]["attempts"]) == ("DONE", 1)
    assert rows[other]["state"] == "DONE"
    assert pending == set()
    incidents = await pg.fetchval(
        "SELECT count(*) FROM pipeline_incidents WHERE tenant_id = $1", tenant.tenant_id
    )
    created = await pg.fetchval(
        "SELECT count(*) FROM pipeline_outbox"
        " WHERE tenant_id = $1 AND event_type = 'INCIDENT_CREATED'",
        tenant.tenant_id,
    )
    assert (incidents, created) == (1, 1)
    assert sorted(await _event_jobs(pg, tenant.tenant_id)) == sorted([str(job_id), str(other)])


async def test_a_batch_opens_pilot_incidents_up_to_the_budget_and_no_further(
    start_service: StartService, pg: asyncpg.Pool
) -> None:
    pilot_id = new_tenant_id("pilot")
    budget = 3
    async with start_service(
        make_definition(fast_settings(inprocess_workers=0)),
        PTF_TELEMETRY_ADDR=NO_TELEMETRY,
        PILOT_TENANT_ID=pilot_id,
        PTF_THRESHOLD__PILOT__MAX_INCIDENTS_PER_HOUR=str(budget),
    ) as svc:
        await load_sample_tables(pg)
        tenant = await new_tenant(pg, tenant_id=pilot_id)
        job_ids = [await _submit(svc, tenant, s2_document()) for _ in range(budget + 2)]
        async with _batching(svc) as b:
            await b.worker.handle_batch(await _read_all(b, len(job_ids)))
    rows = await _rows(pg, pilot_id)
    assert {rows[j]["state"] for j in job_ids} == {"DONE"}
    skipped = [j for j in job_ids if INCIDENT_SKIPPED_KEY in json.loads(rows[j]["result"])]
    incidents = await pg.fetch(
        "SELECT invoice_id FROM pipeline_incidents WHERE tenant_id = $1", pilot_id
    )
    assert (len(incidents), len(skipped)) == (budget, 2)
    assert {rows[j]["invoice_id"] for j in skipped}.isdisjoint(r["invoice_id"] for r in incidents)


async def test_a_synchronous_caller_takes_the_result_from_the_notification_without_rereading(
    no_workers: ServiceHandle, pg: asyncpg.Pool
) -> None:
    """The waiter reads the job once, when it starts waiting; the finished job (with its
    result and incident) arrives in the notification. The poll interval is longer than the
    wait, so the only way to the final state without a second read is the notification."""
    tenant = await new_tenant(pg)
    job_id = await _submit(no_workers, tenant, s2_document())
    runtime = no_workers.running.runtime
    async with _batching(no_workers) as b:
        reader = CountingJobStore(runtime.pool)
        watcher = JobWatcher(reader, b.notifier, poll_seconds=600.0)
        queued = await reader.get(job_id, tenant.tenant_id)
        assert queued is not None
        assert queued.state is JobState.QUEUED
        reader.reads = 0
        waiting = asyncio.ensure_future(watcher.wait_final(queued, 60.0))
        messages = await _read_all(b, 1)

        async def waiter_subscribed() -> bool:
            return reader.reads == 1

        await eventually(waiter_subscribed, within=30)
        await b.worker.handle_batch(messages)
        final = await waiting
    assert reader.reads == 1
    stored = await pg.fetchrow(
        "SELECT i.result::text AS result, inc.incident_id FROM pipeline_jobs j"
        " JOIN pipeline_invoices i ON i.invoice_id = j.invoice_id"
        " JOIN pipeline_incidents inc ON inc.invoice_id = j.invoice_id WHERE j.job_id = $1",
        job_id,
    )
    assert stored is not None
    assert final.state is JobState.DONE
    assert final.result == json.loads(stored["result"])
    assert final.incident_id == stored["incident_id"]
