"""Fault: pipeline worker processes SIGKILLed mid-job, again and again, while invoices stream in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from tests.pipeline.service_support import (
    Tenant,
    document,
    load_sample_tables,
    new_tenant,
    s2_document,
)
from tests.resilience.processes import (
    ServiceProcess,
    WorkerProcess,
    process_env,
    record_figures,
    run_summary,
    stop_all,
    submit_all,
)
from tests.support.polling import eventually

pytestmark = pytest.mark.slow

INVOICES = 500
ROUNDS = 5  # one SIGKILL per round of INVOICES / ROUNDS submissions
S2_EVERY = 5  # every fifth invoice is the seed's S2 mismatch: one incident each
# A short lease so a killed worker's jobs are reclaimed within the test; five
# attempts so a job caught by two kills in a row still ends DONE (with three, a
# job whose three claims all died becomes EXHAUSTED, by design).
FAST_QUEUE = {
    "PTF_QUEUE_VISIBILITY_TIMEOUT_SECONDS": "2",
    "PTF_PIPELINE_EXTRACTOR_TIMEOUT_SECONDS": "1",
    "PTF_QUEUE_MAX_ATTEMPTS": "5",
}
# Business events a job may write; HTTP request outcomes and queue samples are not per job.
JOB_EVENTS = ("INVOICE_PROCESSED", "INCIDENT_CREATED", "JOB_EXHAUSTED")


@dataclass
class CrashStack:
    telemetry: ServiceProcess
    pipeline: ServiceProcess
    steady: WorkerProcess
    victim: WorkerProcess
    tenant: Tenant


@pytest.fixture
async def crash_stack(
    database_url: str, redis_url: str, redis_prefix: str, pg: asyncpg.Pool, tmp_path: Path
) -> AsyncIterator[CrashStack]:
    """Telemetry and the pipeline API as processes (no in-process workers), a steady worker
    and a victim worker that also relays the outbox, so kills also hit relay batches."""
    env = process_env(database_url, redis_url, redis_prefix, tmp_path, **FAST_QUEUE)
    telemetry = ServiceProcess("telemetry", env, tmp_path)
    await telemetry.start()
    worker_env = {**env, "PTF_TELEMETRY_ADDR": telemetry.grpc_target}
    pipeline = ServiceProcess(
        "pipeline", {**worker_env, "PTF_PIPELINE_INPROCESS_WORKERS": "0"}, tmp_path
    )
    steady = WorkerProcess(worker_env, tmp_path, label="steady")
    victim = WorkerProcess(worker_env, tmp_path, relay=True, label="victim")
    try:
        await pipeline.start()
        await load_sample_tables(pg)
        await asyncio.gather(steady.start(), victim.start())
        yield CrashStack(telemetry, pipeline, steady, victim, await new_tenant(pg, "crash"))
    finally:
        await stop_all([victim, steady, pipeline, telemetry])


async def _kill_mid_job(pg: asyncpg.Pool, stack: CrashStack) -> int:
    """SIGKILL the victim as soon as it holds a RUNNING job; the jobs it left RUNNING."""
    owner = f"%:{stack.victim.pid}:%"

    async def holds_a_job() -> bool:
        return bool(
            await pg.fetchval(
                "SELECT count(*) FROM pipeline_jobs WHERE tenant_id = $1"
                " AND state = 'RUNNING' AND lease_owner LIKE $2",
                stack.tenant.tenant_id,
                owner,
            )
        )

    await eventually(holds_a_job, within=60, interval=0.005)
    await stack.victim.kill()
    stranded: int = await pg.fetchval(
        "SELECT count(*) FROM pipeline_jobs WHERE tenant_id = $1"
        " AND state = 'RUNNING' AND lease_owner LIKE $2",
        stack.tenant.tenant_id,
        owner,
    )
    return stranded


async def test_sigkilled_workers_leave_every_invoice_done_once_with_no_duplicate_event(
    crash_stack: CrashStack,
    pg: asyncpg.Pool,
    redis_client: aioredis.Redis,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    """Fault: 500 invoices stream in over five rounds; in each round the victim worker
    process (2 worker loops and an outbox relay) is SIGKILLed the moment it holds a
    RUNNING job, then started again; a steady worker runs throughout.

    Expected: every invoice ends DONE exactly once (one job, one INVOICE_PROCESSED
    event each), the incident count equals the number of S2 invoices (100), no job
    is left QUEUED or RUNNING and no message pending on the stream, and telemetry
    holds each outbox event once: its event ids are exactly the outbox's and the run
    summary counts 500 invoices and 100 incidents.

    Figures (tmp_path/figures.json): invoices, kills, jobs stranded RUNNING by the
    kills, jobs by number of attempts, incidents, events outbox vs telemetry.
    """
    stack, tenant = crash_stack, crash_stack.tenant
    started = datetime.now(UTC)
    documents = [s2_document() if i % S2_EVERY == 0 else document() for i in range(INVOICES)]
    per_round = INVOICES // ROUNDS
    stranded: list[int] = []
    job_ids: list[str] = []
    async with aiohttp.ClientSession(stack.pipeline.http_base) as http:
        for round_start in range(0, INVOICES, per_round):
            submitting = asyncio.create_task(
                submit_all(
                    http,
                    tenant.tenant_id,
                    tenant.headers,
                    documents[round_start : round_start + per_round],
                )
            )
            stranded.append(await _kill_mid_job(pg, stack))
            job_ids.extend(await submitting)
            await stack.victim.start()
    assert len(set(job_ids)) == INVOICES

    async def settled() -> bool:
        open_jobs = await pg.fetchval(
            "SELECT count(*) FROM pipeline_jobs WHERE tenant_id = $1 AND state IN"
            " ('QUEUED', 'RUNNING')",
            tenant.tenant_id,
        )
        undelivered = await pg.fetchval(
            "SELECT count(*) FROM pipeline_outbox WHERE tenant_id = $1 AND delivered_at IS NULL",
            tenant.tenant_id,
        )
        return bool(open_jobs == 0 and undelivered == 0)

    await eventually(settled, within=90, interval=0.2)

    states: dict[str, int] = dict(
        await pg.fetch(  # type: ignore[arg-type]
            "SELECT state, count(*) FROM pipeline_jobs WHERE tenant_id = $1 GROUP BY state",
            tenant.tenant_id,
        )
    )
    attempts: dict[int, int] = dict(
        await pg.fetch(  # type: ignore[arg-type]
            "SELECT attempts, count(*) FROM pipeline_jobs WHERE tenant_id = $1 GROUP BY 1",
            tenant.tenant_id,
        )
    )
    incidents = await pg.fetchval(
        "SELECT count(*) FROM pipeline_incidents WHERE tenant_id = $1", tenant.tenant_id
    )
    processed_per_job = await pg.fetch(
        "SELECT payload->>'job_id' AS job_id, count(*) AS n FROM pipeline_outbox"
        " WHERE tenant_id = $1 AND event_type = 'INVOICE_PROCESSED' GROUP BY 1",
        tenant.tenant_id,
    )
    outbox_ids = {
        r["event_id"]
        for r in await pg.fetch(
            "SELECT event_id FROM pipeline_outbox WHERE tenant_id = $1"
            " AND event_type = ANY($2::text[])",
            tenant.tenant_id,
            list(JOB_EVENTS),
        )
    }
    telemetry_rows = await pg.fetch(
        "SELECT event_id FROM telemetry_events WHERE tenant_id = $1"
        " AND event_type = ANY($2::text[])",
        tenant.tenant_id,
        list(JOB_EVENTS),
    )
    telemetry_ids = {r["event_id"] for r in telemetry_rows}
    summary = await run_summary(stack.telemetry.grpc_target, tenant.tenant_id, started)
    stream = f"{redis_prefix}:pipeline:jobs"

    async def nothing_pending() -> bool:
        # A killed consumer's messages are reclaimed (XAUTOCLAIM) and acknowledged
        # once idle past the visibility timeout, even when a re-sent copy ran the job.
        summary = await redis_client.xpending(stream, "pipeline-workers")
        return int(summary["pending"]) == 0

    await eventually(nothing_pending, within=30, interval=0.2)
    pending = await redis_client.xpending(stream, "pipeline-workers")

    figures = {
        "invoices": INVOICES,
        "kills": stack.victim.kills,
        "jobs_stranded_running_by_kills": sum(stranded),
        "stranded_per_kill": stranded,
        "jobs_by_attempts": attempts,
        "job_states": states,
        "incidents": incidents,
        "outbox_job_events": len(outbox_ids),
        "telemetry_job_events": len(telemetry_rows),
        "summary_total_invoices": summary.counts.total_invoices,
        "summary_incident_count": summary.counts.incident_count,
        "stream_pending": pending["pending"],
    }
    record_figures(tmp_path / "figures.json", figures)

    assert stack.victim.kills == ROUNDS
    assert sum(stranded) >= 1, "no kill caught a job RUNNING: the fault was not injected"
    assert states == {"DONE": INVOICES}
    assert len(processed_per_job) == INVOICES
    assert {r["n"] for r in processed_per_job} == {1}
    assert incidents == INVOICES // S2_EVERY
    assert len(telemetry_rows) == len(telemetry_ids) == len(outbox_ids)
    assert telemetry_ids == outbox_ids
    assert summary.counts.total_invoices == INVOICES
    assert summary.counts.incident_count == INVOICES // S2_EVERY
    assert pending["pending"] == 0
