"""asyncpg repository of the telemetry event store: idempotent inserts and window aggregates.

All SQL is parameterized. A tenant-scoped query adds one fixed clause
(`tenant_id = ANY($n)` with the tenant and `''`, the system-wide events); no
caller text is ever spliced into SQL. Aggregates of one report run in one
read-only REPEATABLE READ transaction so their numbers agree with each other.
A run summary reads per-hour and per-minute rollups kept by triggers (migrations
0002, 0003) plus the raw rows at its edges; its percentiles are exact `percentile_cont` figures
(domain/ranks.py), with only the histogram buckets that hold the wanted ranks read.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.runtime.db import DATABASE_DOWN
from services.runtime.errors import Unavailable
from services.telemetry.domain.events import ValidEvent
from services.telemetry.domain.health import DigestInputs, HealthInputs, ProviderStats
from services.telemetry.domain.ranks import locate, percentiles, wanted_ranks
from services.telemetry.domain.rollup import plan_summary
from services.telemetry.domain.summary import (
    ErrorCounts,
    Percentiles,
    QueueStats,
    SummaryCounts,
)
from services.telemetry.domain.window import TimeWindow

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5

_INSERT = """
INSERT INTO telemetry_events (event_id, event_type, tenant_id, occurred_at, payload)
SELECT e.id, e.type, e.tenant, e.at, e.payload::jsonb
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[])
    AS e(id, type, tenant, at, payload)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""

_WINDOW = "occurred_at >= $1 AND occurred_at < $2"
_TENANT = " AND tenant_id = ANY($3::text[])"

# A run summary adds the rollups' whole hours and minutes to an aggregate of the raw
# rows at the window's very edges (domain/rollup.py, migrations 0002 and 0003). Each
# kind of piece is at most two ranges, passed as plain bounds so that the planner
# sees them (an unnest join of ranges made it scan the whole table).
# Counts and errors: $1..$4 raw ranges, $5..$8 minute ranges, $9..$10 whole hours,
# $11 tenants. Latency histogram: $1..$4 partial hours, $5..$6 whole hours, $7.
_RAW_SPANS = """telemetry_events
  WHERE ((occurred_at >= $1 AND occurred_at < $2) OR (occurred_at >= $3 AND occurred_at < $4))"""
_MINUTE_SPANS = """{table}
  WHERE ((minute >= $5 AND minute < $6) OR (minute >= $7 AND minute < $8))"""
_SPAN_PAIRS = 2

_SUMMARY_COUNTS = """
SELECT
  sum(invoices)::bigint AS total_invoices, sum(accept_rounding)::bigint AS accept_rounding_count,
  sum(incidents)::bigint AS incident_count, sum(s1)::bigint AS s1_count,
  sum(s2)::bigint AS s2_count, sum(ocr_suspects)::bigint AS ocr_suspect_count,
  sum(resolved)::bigint AS resolved_count, sum(feedback)::bigint AS feedback_count,
  sum(hint_correct)::bigint AS hint_correct_count, sum(requests)::bigint AS total_requests,
  max(max_depth) AS max_depth, bool_or(stuck) AS stuck
FROM (
  SELECT
    count(*) FILTER (WHERE event_type = 'INVOICE_PROCESSED') AS invoices,
    count(*) FILTER (WHERE event_type = 'INVOICE_PROCESSED'
                       AND (payload->>'accept_rounding')::boolean) AS accept_rounding,
    count(*) FILTER (WHERE event_type = 'INCIDENT_CREATED') AS incidents,
    count(*) FILTER (WHERE event_type = 'INCIDENT_CREATED'
                       AND payload->>'severity' = 'S1') AS s1,
    count(*) FILTER (WHERE event_type = 'INCIDENT_CREATED'
                       AND payload->>'severity' = 'S2') AS s2,
    count(*) FILTER (WHERE event_type = 'INCIDENT_CREATED'
                       AND (payload->>'ocr_suspect')::boolean) AS ocr_suspects,
    count(*) FILTER (WHERE event_type = 'INCIDENT_RESOLVED') AS resolved,
    count(*) FILTER (WHERE event_type = 'FEEDBACK_SUBMITTED') AS feedback,
    count(*) FILTER (WHERE event_type = 'FEEDBACK_SUBMITTED'
                       AND (payload->>'hint_correct')::boolean) AS hint_correct,
    count(*) FILTER (WHERE event_type = 'HTTP_REQUEST') AS requests,
    coalesce(max((payload->>'depth')::bigint)
        FILTER (WHERE event_type = 'QUEUE_SAMPLE'), 0) AS max_depth,
    coalesce(bool_or((payload->>'stuck')::boolean)
        FILTER (WHERE event_type = 'QUEUE_SAMPLE'), false) AS stuck
  FROM {raw}
    AND event_type = ANY(ARRAY['INVOICE_PROCESSED', 'INCIDENT_CREATED', 'INCIDENT_RESOLVED',
                               'FEEDBACK_SUBMITTED', 'HTTP_REQUEST', 'QUEUE_SAMPLE']){tenant}
  UNION ALL
  SELECT invoices, accept_rounding, incidents, s1, s2, ocr_suspects, resolved, feedback,
         hint_correct, requests, max_depth, stuck
  FROM {minutes}{tenant}
  UNION ALL
  SELECT invoices, accept_rounding, incidents, s1, s2, ocr_suspects, resolved, feedback,
         hint_correct, requests, max_depth, stuck
  FROM telemetry_rollup_hours
  WHERE hour >= $9 AND hour < $10{tenant}
) AS parts
"""

_ERRORS_BY_CODE = """
SELECT status, sum(n)::bigint AS n
FROM (
  SELECT (payload->>'status')::int AS status, count(*) AS n
  FROM {raw}
    AND event_type = 'HTTP_REQUEST' AND (payload->>'status')::int >= 400{tenant}
  GROUP BY 1
  UNION ALL
  SELECT status, n FROM {minutes}{tenant}
  UNION ALL
  SELECT status, n FROM telemetry_rollup_errors WHERE hour >= $9 AND hour < $10{tenant}
) AS parts
GROUP BY 1
"""

_LATENCY_HISTOGRAM = """
SELECT metric, bucket, sum(n)::bigint AS n
FROM (
  SELECT m.metric, m.bucket, count(*) AS n
  FROM (
    SELECT pipeline_bucket, extraction_bucket FROM telemetry_events
    WHERE event_type = 'INVOICE_PROCESSED' AND occurred_at >= $1 AND occurred_at < $2{tenant}
    UNION ALL
    SELECT pipeline_bucket, extraction_bucket FROM telemetry_events
    WHERE event_type = 'INVOICE_PROCESSED' AND occurred_at >= $3 AND occurred_at < $4{tenant}
  ) AS edges
  CROSS JOIN LATERAL (VALUES ('pipeline_total_ms', pipeline_bucket),
                             ('extraction_ms', extraction_bucket)) AS m(metric, bucket)
  WHERE m.bucket IS NOT NULL
  GROUP BY 1, 2
  UNION ALL
  SELECT metric, bucket, n FROM telemetry_rollup_latency
  WHERE hour >= $5 AND hour < $6{tenant}
) AS parts
GROUP BY 1, 2
ORDER BY 1, 2
"""

# The values at positions first..first+count-1 of each bucket's ascending values in
# the window, read from that bucket's raw rows only. One text per metric: column
# names are fixed here, never taken from a caller.
_RANKED_VALUES = """
SELECT w.bucket, w.first, v.sorted
FROM unnest($3::int[], $4::bigint[], $5::bigint[]) AS w(bucket, first, count)
CROSS JOIN LATERAL (
  SELECT array_agg(value ORDER BY value) AS sorted
  FROM (
    SELECT {column} AS value
    FROM telemetry_events
    WHERE event_type = 'INVOICE_PROCESSED' AND {bucket} = w.bucket
      AND occurred_at >= $1 AND occurred_at < $2{tenant}
    ORDER BY {column}
    OFFSET w.first LIMIT w.count
  ) AS ranked
) AS v
"""
_RANKED_COLUMNS = {
    "pipeline_total_ms": ("pipeline_total_ms", "pipeline_bucket"),
    "extraction_ms": ("extraction_ms", "extraction_bucket"),
}
_TENANT_AFTER_RANKS = " AND tenant_id = ANY($6::text[])"

_CURRENT_DEPTH = """
SELECT (payload->>'depth')::bigint AS depth
FROM telemetry_events
WHERE event_type = 'QUEUE_SAMPLE' AND {window}{tenant}
ORDER BY occurred_at DESC, event_id DESC
LIMIT 1
"""

_MISMATCH_BUCKETS = """
SELECT width_bucket((payload->>'mismatch_ratio')::float8, {next}::float8[]) AS bucket,
       count(*) AS n
FROM telemetry_events
WHERE event_type = 'INVOICE_PROCESSED' AND {window}{tenant}
  AND (payload->>'has_mismatch')::boolean
GROUP BY 1
"""

_INCIDENT_CLASSES = """
SELECT payload->>'primary_flag' AS primary_flag, payload->>'action_class' AS action_class,
       count(*) AS n
FROM telemetry_events
WHERE event_type = 'INCIDENT_CREATED' AND {window}{tenant}
GROUP BY 1, 2
"""

_PROVIDERS = """
SELECT payload->>'provider' AS provider,
  count(*) FILTER (WHERE event_type = 'INVOICE_PROCESSED') AS invoices,
  count(*) FILTER (WHERE event_type = 'INCIDENT_CREATED') AS incidents,
  count(*) FILTER (WHERE event_type = 'INCIDENT_CREATED'
                     AND payload->>'severity' = 'S1') AS s1,
  count(*) FILTER (WHERE event_type = 'INCIDENT_CREATED'
                     AND (payload->>'ocr_suspect')::boolean) AS ocr_suspects
FROM telemetry_events
WHERE event_type = ANY(ARRAY['INVOICE_PROCESSED', 'INCIDENT_CREATED']) AND {window}{tenant}
GROUP BY 1
"""

_DIGEST = """
SELECT
  count(*) FILTER (WHERE event_type = 'INVOICE_PROCESSED') AS processed,
  count(*) FILTER (WHERE event_type = 'JOB_EXHAUSTED') AS exhausted,
  count(*) FILTER (WHERE event_type = 'QUEUE_SAMPLE'
                     AND (payload->>'stuck')::boolean) AS stuck,
  count(*) FILTER (WHERE event_type = 'HTTP_REQUEST'
                     AND (payload->>'status')::int >= 500) AS error_5xx
FROM telemetry_events
WHERE event_type = ANY(ARRAY['INVOICE_PROCESSED', 'JOB_EXHAUSTED', 'QUEUE_SAMPLE',
                             'HTTP_REQUEST'])
  AND {window}{tenant}
"""

_RECOMPUTED = """
SELECT count(*) AS n FROM (
  SELECT 1
  FROM telemetry_events
  WHERE event_type = 'INVOICE_PROCESSED' AND {window}{tenant}
  GROUP BY tenant_id, payload->>'invoice_id'
  HAVING count(*) > 1 + {next}::int
) AS over_limit
"""

_TENANTS = """
SELECT DISTINCT tenant_id FROM telemetry_events
WHERE event_type = ANY(ARRAY['INVOICE_PROCESSED', 'INCIDENT_CREATED'])
  AND occurred_at >= $1 AND occurred_at < $2
ORDER BY tenant_id
LIMIT $3
"""

_CLAIM_SUMMARY = """
INSERT INTO telemetry_summary_runs (period_end, scope) VALUES ($1, $2)
ON CONFLICT DO NOTHING
RETURNING period_end
"""


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """Map "the database is not there" to 503 with Retry-After (docs/SPEC.md §11)."""
    try:
        yield
    except DATABASE_DOWN as exc:
        log.warning("event store unavailable: %s", exc)
        raise Unavailable(
            "STORE_UNAVAILABLE",
            "the event store is unavailable, retry later",
            retry_after_seconds=RETRY_AFTER_SECONDS,
        ) from exc


def _scoped(template: str, tenant_id: str | None) -> str:
    """The query for all tenants or one tenant; `{next}` is the first parameter after them."""
    scoped = tenant_id is not None
    return template.format(
        window=_WINDOW, tenant=_TENANT if scoped else "", next="$4" if scoped else "$3"
    )


def _scope_args(window: TimeWindow, tenant_id: str | None) -> list[Any]:
    args: list[Any] = [window.start, window.end]
    if tenant_id is not None:
        args.append([tenant_id, ""])
    return args


def _summary_sql(template: str, tenant_param: int | None, minutes_table: str = "") -> str:
    """A run-summary query over its spans, tenant-scoped by `$tenant_param` when given."""
    tenant = "" if tenant_param is None else f" AND tenant_id = ANY(${tenant_param}::text[])"
    return template.format(
        raw=_RAW_SPANS, minutes=_MINUTE_SPANS.format(table=minutes_table), tenant=tenant
    )


def _bounds(parts: Sequence[TimeWindow], empty_at: datetime) -> list[datetime]:
    """`_SPAN_PAIRS` (start, end) pairs, flattened; missing ones are empty ranges."""
    if len(parts) > _SPAN_PAIRS:
        raise ValueError(f"a summary piece has at most {_SPAN_PAIRS} ranges, got {len(parts)}")
    bounds = [instant for part in parts for instant in (part.start, part.end)]
    return bounds + [empty_at] * (2 * _SPAN_PAIRS - len(bounds))


async def _exact_percentiles(
    conn: asyncpg.pool.PoolConnectionProxy,
    metric: str,
    histogram: Sequence[tuple[int, int]],
    window: TimeWindow,
    tenants: list[str] | None,
) -> Percentiles:
    """percentile_cont of `metric` over `window`, reading only the buckets of its ranks."""
    samples = sum(n for _, n in histogram)
    located = locate(histogram, wanted_ranks(samples))
    if not located:
        return Percentiles()
    column, bucket = _RANKED_COLUMNS[metric]
    sql = _RANKED_VALUES.format(
        column=column, bucket=bucket, tenant=_TENANT_AFTER_RANKS if tenants is not None else ""
    )
    spans: dict[int, tuple[int, int]] = {}
    for place_bucket, position in located.values():
        low, high = spans.get(place_bucket, (position, position))
        spans[place_bucket] = (min(low, position), max(high, position))
    buckets = sorted(spans)
    args: list[Any] = [
        window.start,
        window.end,
        buckets,
        [spans[b][0] for b in buckets],
        [spans[b][1] - spans[b][0] + 1 for b in buckets],
    ]
    if tenants is not None:
        args.append(tenants)
    by_place: dict[tuple[int, int], float] = {}
    for r in await conn.fetch(sql, *args):
        for offset, value in enumerate(r["sorted"]):
            by_place[(r["bucket"], r["first"] + offset)] = value
    return percentiles({rank: by_place[place] for rank, place in located.items()}, samples)


@dataclass(frozen=True)
class SummaryAggregates:
    """What the repository counts for one run summary."""

    counts: SummaryCounts
    pipeline_total_ms: Percentiles
    extraction_ms: Percentiles
    errors: ErrorCounts
    queue: QueueStats


class EventRepository:
    """The telemetry event store on PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def insert(self, events: Sequence[ValidEvent]) -> set[uuid.UUID]:
        """Store events not seen before (by event_id); return the ids actually inserted."""
        if not events:
            return set()
        with _store_errors():
            rows = await self._pool.fetch(
                _INSERT,
                [e.event_id for e in events],
                [e.event_type.value for e in events],
                [e.tenant_id for e in events],
                [e.occurred_at for e in events],
                [e.payload_text() for e in events],
            )
        return {row["event_id"] for row in rows}

    @contextlib.asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy]:
        with _store_errors():
            async with (
                self._pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                yield conn

    async def summary(self, window: TimeWindow, tenant_id: str | None) -> SummaryAggregates:
        """Counts, percentiles, errors and queue stats of `window` (tenant: plus system-wide).

        Whole hours come from the rollups, partial edge hours from raw rows, and the
        percentiles are exact: the histogram locates each wanted rank's bucket, and only
        those buckets' raw values are read (`services/telemetry/domain/ranks.py`).
        """
        plan = plan_summary(window)
        tenants = None if tenant_id is None else [tenant_id, ""]
        scope = [] if tenants is None else [tenants]
        hours = [plan.hours.start, plan.hours.end]
        end = window.end
        counts_args = [*_bounds(plan.raw, end), *_bounds(plan.minutes, end), *hours, *scope]
        histogram_args = [*_bounds(plan.partial_hours, end), *hours, *scope]
        tenant_param = None if tenants is None else 11
        async with self._snapshot() as conn:
            row = await conn.fetchrow(
                _summary_sql(_SUMMARY_COUNTS, tenant_param, "telemetry_rollup_minutes"),
                *counts_args,
            )
            error_rows = await conn.fetch(
                _summary_sql(_ERRORS_BY_CODE, tenant_param, "telemetry_rollup_minute_errors"),
                *counts_args,
            )
            histogram_rows = await conn.fetch(
                _summary_sql(_LATENCY_HISTOGRAM, None if tenants is None else 7),
                *histogram_args,
            )
            depth = await conn.fetchval(
                _scoped(_CURRENT_DEPTH, tenant_id), *_scope_args(window, tenant_id)
            )
            histograms: dict[str, list[tuple[int, int]]] = {name: [] for name in _RANKED_COLUMNS}
            for r in histogram_rows:
                histograms[r["metric"]].append((r["bucket"], r["n"]))
            latency = {
                metric: await _exact_percentiles(conn, metric, histogram, window, tenants)
                for metric, histogram in histograms.items()
            }
        assert row is not None
        counts = SummaryCounts(
            total_invoices=row["total_invoices"] or 0,
            incident_count=row["incident_count"] or 0,
            s1_count=row["s1_count"] or 0,
            s2_count=row["s2_count"] or 0,
            ocr_suspect_count=row["ocr_suspect_count"] or 0,
            resolved_count=row["resolved_count"] or 0,
            feedback_count=row["feedback_count"] or 0,
            hint_correct_count=row["hint_correct_count"] or 0,
            accept_rounding_count=row["accept_rounding_count"] or 0,
        )
        return SummaryAggregates(
            counts=counts,
            pipeline_total_ms=latency["pipeline_total_ms"],
            extraction_ms=latency["extraction_ms"],
            errors=ErrorCounts(
                by_code={r["status"]: r["n"] for r in error_rows},
                total_requests=row["total_requests"] or 0,
            ),
            queue=QueueStats(
                current_depth=depth or 0,
                max_depth_in_period=row["max_depth"] or 0,
                stuck_detected=bool(row["stuck"]),
            ),
        )

    async def health_inputs(
        self,
        window: TimeWindow,
        baseline: TimeWindow,
        tenant_id: str | None,
        *,
        bucket_edges: Sequence[float],
        recompute_limit: int,
    ) -> HealthInputs:
        """Aggregates of the system health report for `window` and its `baseline`."""
        args = _scope_args(window, tenant_id)
        async with self._snapshot() as conn:
            bucket_rows = await conn.fetch(
                _scoped(_MISMATCH_BUCKETS, tenant_id), *args, list(bucket_edges)
            )
            class_rows = await conn.fetch(_scoped(_INCIDENT_CLASSES, tenant_id), *args)
            providers = await self._providers(conn, window, tenant_id)
            baseline_providers = await self._providers(conn, baseline, tenant_id)
            digest = await conn.fetchrow(_scoped(_DIGEST, tenant_id), *args)
            recomputed = await conn.fetchval(
                _scoped(_RECOMPUTED, tenant_id), *args, recompute_limit
            )
        assert digest is not None
        primary: dict[str, int] = {}
        actions: dict[str, int] = {}
        for r in class_rows:
            primary[r["primary_flag"]] = primary.get(r["primary_flag"], 0) + r["n"]
            actions[r["action_class"]] = actions.get(r["action_class"], 0) + r["n"]
        incidents = sum(p.incidents for p in providers.values())
        return HealthInputs(
            mismatch_buckets={r["bucket"]: r["n"] for r in bucket_rows if r["bucket"] is not None},
            mismatches_without_ratio=sum(r["n"] for r in bucket_rows if r["bucket"] is None),
            primary_flags=primary,
            action_classes=actions,
            providers=providers,
            baseline_providers=baseline_providers,
            digest=DigestInputs(
                incidents=incidents,
                bug_reports=primary.get("CALC_BUG", 0),
                invoices_processed=digest["processed"],
                jobs_exhausted=digest["exhausted"],
                stuck_samples=digest["stuck"],
                invoices_over_recompute_limit=recomputed,
                error_5xx=digest["error_5xx"],
            ),
        )

    @staticmethod
    async def _providers(
        conn: asyncpg.pool.PoolConnectionProxy, window: TimeWindow, tenant_id: str | None
    ) -> dict[str, ProviderStats]:
        rows = await conn.fetch(_scoped(_PROVIDERS, tenant_id), *_scope_args(window, tenant_id))
        return {
            r["provider"]: ProviderStats(r["invoices"], r["incidents"], r["s1"], r["ocr_suspects"])
            for r in rows
        }

    async def active_tenants(self, window: TimeWindow, limit: int) -> list[str]:
        """Tenants with invoices or incidents in `window`, alphabetically, at most `limit`."""
        with _store_errors():
            rows = await self._pool.fetch(_TENANTS, window.start, window.end, limit)
        return [r["tenant_id"] for r in rows]

    async def claim_summary(self, period_end: datetime, scope: str) -> bool:
        """True for exactly one caller per (period end, scope): that one logs the summary."""
        with _store_errors():
            claimed = await self._pool.fetchval(_CLAIM_SUMMARY, period_end, scope)
        return claimed is not None
