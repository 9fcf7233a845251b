"""What the pipeline can tell readiness and telemetry about itself: queue depth, stuck, extractor.

`ReadinessSource.status()` answers the health service's `GetReadinessStatus`
call: queue and last activity (one statement), extractor mode and rate-limit
state, pilot budget usage. Depth = jobs not yet finished. Stuck = depth > 0 and no progress for
`Recovery.STUCK_MINUTES`, where progress is the later of the last finished job
and the oldest waiting job's arrival (a queue that just received its first
job is not stuck).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.pipeline.errors import STORE_ERRORS
from services.pipeline.events import queue_sample
from services.pipeline.extractors import ExtractorRateLimit, RateLimitState
from services.pipeline.intake import RETRY_AFTER_SECONDS
from services.pipeline.metrics import PipelineMetrics
from services.pipeline.outbox import write_events
from services.pipeline.pilot import INVOICE_LIMITER, pilot_limiter
from services.runtime.config import AppConfig, Thresholds
from services.runtime.errors import Unavailable
from services.runtime.ratelimit import WindowUsage
from services.runtime.redis_client import RedisKeys

log = logging.getLogger(__name__)

__all__ = [
    "ExtractorRateLimit",
    "PipelineSnapshot",
    "QueueStatus",
    "RateLimitState",
    "ReadinessSource",
    "ReadinessStatus",
    "pipeline_snapshot",
    "queue_status",
]

_QUEUE_COLUMNS = """
  (SELECT count(*) FROM pipeline_jobs
    WHERE finished_at IS NULL AND ($1::text IS NULL OR tenant_id = $1)) AS depth,
  (SELECT min(created_at) FROM pipeline_jobs
    WHERE finished_at IS NULL AND ($1::text IS NULL OR tenant_id = $1)) AS oldest,
  (SELECT max(finished_at) FROM pipeline_jobs
    WHERE finished_at IS NOT NULL AND ($1::text IS NULL OR tenant_id = $1)) AS last_finished,
  now() AS now"""
_STATUS = f"SELECT {_QUEUE_COLUMNS}"
_SNAPSHOT = f"""SELECT {_QUEUE_COLUMNS},
  (SELECT max(created_at) FROM pipeline_incidents) AS last_incident_at,
  (SELECT max(processed_at) FROM pipeline_invoices) AS last_extraction_at"""


@dataclass(frozen=True)
class QueueStatus:
    depth: int
    stuck: bool
    last_finished_at: datetime | None
    oldest_waiting_since: datetime | None


def _is_stuck(
    depth: int,
    oldest: datetime | None,
    last_finished: datetime | None,
    now: datetime,
    stuck_after: timedelta,
) -> bool:
    if depth <= 0:
        return False
    progress = max(t for t in (oldest, last_finished, datetime.min.replace(tzinfo=UTC)) if t)
    return now - progress >= stuck_after


def _queue(row: asyncpg.Record, thresholds: Thresholds) -> QueueStatus:
    stuck_after = timedelta(minutes=thresholds.Recovery.STUCK_MINUTES)
    return QueueStatus(
        depth=row["depth"],
        stuck=_is_stuck(row["depth"], row["oldest"], row["last_finished"], row["now"], stuck_after),
        last_finished_at=row["last_finished"],
        oldest_waiting_since=row["oldest"],
    )


async def queue_status(
    pool: asyncpg.Pool, thresholds: Thresholds, tenant_id: str | None = None
) -> QueueStatus:
    """Depth and stuck flag of the whole queue, or of one tenant's jobs."""
    row = await pool.fetchrow(_STATUS, tenant_id)
    assert row is not None
    return _queue(row, thresholds)


@dataclass(frozen=True)
class PipelineSnapshot:
    """The whole queue and the latest activity, as readiness shows them."""

    queue: QueueStatus
    last_incident_at: datetime | None
    last_extraction_at: datetime | None


async def pipeline_snapshot(pool: asyncpg.Pool, thresholds: Thresholds) -> PipelineSnapshot:
    """Queue status and last activity in one statement, so a readiness evaluation costs the
    database two statements (this and the latency probe) instead of three."""
    row = await pool.fetchrow(_SNAPSHOT, None)
    assert row is not None
    return PipelineSnapshot(
        queue=_queue(row, thresholds),
        last_incident_at=row["last_incident_at"],
        last_extraction_at=row["last_extraction_at"],
    )


@dataclass(frozen=True)
class ExtractorState:
    """The configured extractor as readiness shows it (never the key itself)."""

    mode: str
    model: str
    key_configured: bool
    rate_limited: bool


@dataclass(frozen=True)
class ReadinessStatus:
    """Everything health's readiness needs from the pipeline, gathered in one call."""

    snapshot: PipelineSnapshot
    extractor: ExtractorState
    pilot_enabled: bool
    pilot_tenant_id: str
    pilot_budget: WindowUsage


class ReadinessSource:
    """Answers `GetReadinessStatus` from the pipeline's own config, tables and Redis keys.

    Health asks over gRPC instead of reading these itself, so the pipeline's
    storage stays private to it; one call costs the database one statement.
    """

    def __init__(
        self, config: AppConfig, pool: asyncpg.Pool, redis: aioredis.Redis, keys: RedisKeys
    ) -> None:
        self._config = config
        self._pool = pool
        self._rate_limit = ExtractorRateLimit(redis, keys)
        self._invoices = pilot_limiter(INVOICE_LIMITER, redis, keys, config.thresholds)

    async def status(self) -> ReadinessStatus:
        """The status, or 503 QUEUE_UNAVAILABLE while Redis (queue, budgets) is unreachable.

        Without the mapping a Redis outage made every readiness probe an
        INTERNAL error with a logged traceback (and a server error in the
        pipeline's error rate) instead of the outage it is.
        """
        config = self._config
        try:
            snapshot, rate_limit, budget = await asyncio.gather(
                pipeline_snapshot(self._pool, config.thresholds),
                self._rate_limit.current(),
                self._invoices.usage(config.pilot_tenant_id),
            )
        except RedisError as exc:
            log.warning("readiness status: Redis unavailable (%s)", type(exc).__name__)
            raise Unavailable(
                "QUEUE_UNAVAILABLE",
                "the job queue (Redis) is unavailable; retry later",
                retry_after_seconds=RETRY_AFTER_SECONDS,
            ) from exc
        openai = config.extractor != "json"
        extractor = ExtractorState(
            mode=config.extractor,
            model=config.openai_model if openai else "",
            key_configured=bool(config.openai_api_key),
            rate_limited=rate_limit is not None,
        )
        return ReadinessStatus(
            snapshot=snapshot,
            extractor=extractor,
            pilot_enabled=config.pilot_enabled,
            pilot_tenant_id=config.pilot_tenant_id,
            pilot_budget=budget,
        )


class QueueSampler:
    """Writes a system-wide QUEUE_SAMPLE event (depth, stuck) at a fixed interval.

    The queue is shared by every tenant, so samples carry no tenant (telemetry
    counts system-wide events in every tenant's summary).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        thresholds: Thresholds,
        metrics: PipelineMetrics,
        interval_seconds: float,
    ) -> None:
        self._pool = pool
        self._thresholds = thresholds
        self._metrics = metrics
        self._interval = interval_seconds

    async def sample_once(self) -> QueueStatus:
        status = await queue_status(self._pool, self._thresholds)
        async with self._pool.acquire() as conn:
            await write_events(conn, [queue_sample("", status.depth, status.stuck)])
        self._metrics.queue_depth = status.depth
        self._metrics.queue_stuck = status.stuck
        return status

    async def run(self) -> None:
        while True:
            try:
                await self.sample_once()
            except STORE_ERRORS as exc:
                log.warning("queue sample failed (%s)", type(exc).__name__)
            await asyncio.sleep(self._interval)


_LOCAL_INCIDENTS = """
SELECT severity, primary_flag, action_class, status, count(*) AS n
FROM pipeline_incidents
WHERE created_at > now() - make_interval(hours => $2) AND ($1::text IS NULL OR tenant_id = $1)
GROUP BY severity, primary_flag, action_class, status
"""
_LOCAL_INVOICES = """
SELECT quality_grade, count(*) AS n
FROM pipeline_invoices
WHERE processed_at > now() - make_interval(hours => $2) AND ($1::text IS NULL OR tenant_id = $1)
GROUP BY quality_grade
"""


def _add(counts: dict[str, int], key: str, n: int) -> None:
    counts[key] = counts.get(key, 0) + n


async def local_health(
    pool: asyncpg.Pool, thresholds: Thresholds, tenant_id: str | None, window_hours: int = 24
) -> dict[str, Any]:
    """What the pipeline itself knows when telemetry cannot answer /admin/system-health."""
    incidents = await pool.fetch(_LOCAL_INCIDENTS, tenant_id, window_hours)
    invoices = await pool.fetch(_LOCAL_INVOICES, tenant_id, window_hours)
    queue = await queue_status(pool, thresholds, tenant_id)
    by_severity: dict[str, int] = {}
    by_flag: dict[str, int] = {}
    by_action: dict[str, int] = {}
    by_status: dict[str, int] = {}
    for row in incidents:
        _add(by_severity, row["severity"], row["n"])
        _add(by_flag, row["primary_flag"], row["n"])
        _add(by_action, row["action_class"], row["n"])
        _add(by_status, row["status"], row["n"])
    by_grade = {row["quality_grade"] or "UNKNOWN": row["n"] for row in invoices}
    return {
        "tenant_id": tenant_id,
        "window_hours": window_hours,
        "invoices": {"processed": sum(by_grade.values()), "by_grade": by_grade},
        "incidents": {
            "total": sum(by_severity.values()),
            "by_severity": by_severity,
            "by_status": by_status,
            "primary_flag_distribution": by_flag,
            "action_class_distribution": by_action,
        },
        "queue": {"depth": queue.depth, "stuck": queue.stuck},
    }
