"""Queue depth and stuck detection, as readiness and telemetry see them (SPEC §3.5)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import asyncpg

from services.pipeline.documents import json_submission
from services.pipeline.jobs import JobStore
from services.pipeline.metrics import PipelineMetrics
from services.pipeline.status import QueueSampler, queue_status
from services.runtime.config import Thresholds
from services.runtime.metrics import create_metrics
from tests.pipeline.service_support import document
from tests.support.services import make_config_factory


async def _waiting_job(pg: asyncpg.Pool, tenant_id: str, minutes_ago: int) -> uuid.UUID:
    job, _ = await JobStore(pg).create(
        tenant_id, json_submission(json.dumps(document())), datetime.now(UTC)
    )
    await pg.execute(
        "UPDATE pipeline_jobs SET created_at = now() - make_interval(mins => $2),"
        " enqueued_at = now() WHERE job_id = $1",
        job.job_id,
        minutes_ago,
    )
    return job.job_id


async def test_empty_queue_has_depth_zero_and_is_not_stuck(
    pg: asyncpg.Pool, tenant_id: str
) -> None:
    status = await queue_status(pg, Thresholds(), tenant_id)
    assert (status.depth, status.stuck) == (0, False)


async def test_jobs_waiting_longer_than_stuck_minutes_with_no_progress_are_stuck(
    pg: asyncpg.Pool, tenant_id: str
) -> None:
    await _waiting_job(pg, tenant_id, minutes_ago=20)
    await _waiting_job(pg, tenant_id, minutes_ago=1)
    status = await queue_status(pg, Thresholds(), tenant_id)
    assert (status.depth, status.stuck) == (2, True)


async def test_a_fresh_backlog_is_not_stuck(pg: asyncpg.Pool, tenant_id: str) -> None:
    await _waiting_job(pg, tenant_id, minutes_ago=1)
    status = await queue_status(pg, Thresholds(), tenant_id)
    assert (status.depth, status.stuck) == (1, False)


async def test_an_old_backlog_that_still_progresses_is_not_stuck(
    pg: asyncpg.Pool, tenant_id: str
) -> None:
    await _waiting_job(pg, tenant_id, minutes_ago=30)
    finished = await _waiting_job(pg, tenant_id, minutes_ago=30)
    await pg.execute(
        "UPDATE pipeline_jobs SET state = 'DONE', finished_at = now() - interval '1 minute'"
        " WHERE job_id = $1",
        finished,
    )
    status = await queue_status(pg, Thresholds(), tenant_id)
    assert (status.depth, status.stuck) == (1, False)


async def test_queue_sample_event_carries_depth_and_stuck_system_wide(
    pg: asyncpg.Pool, tenant_id: str, database_url: str
) -> None:
    config = make_config_factory({"DATABASE_URL": database_url})("pipeline")
    metrics = create_metrics(config)
    sampler = QueueSampler(pg, Thresholds(), PipelineMetrics(metrics, pilot_enabled=True), 60)
    status = await sampler.sample_once()
    metrics.shutdown()
    row = await pg.fetchrow(
        "SELECT tenant_id, payload FROM pipeline_outbox WHERE event_type = 'QUEUE_SAMPLE'"
        " ORDER BY seq DESC LIMIT 1"
    )
    assert row is not None
    assert row["tenant_id"] == ""
    assert json.loads(row["payload"]) == {"depth": status.depth, "stuck": status.stuck}
