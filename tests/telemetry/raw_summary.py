"""A run summary recomputed straight from raw telemetry_events rows, the reference the
rollup-based summary is compared with (the queries the store ran before migration 0002).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

_RAW_SUMMARY = """
SELECT
  count(*) FILTER (WHERE event_type = 'INVOICE_PROCESSED') AS total_invoices,
  count(*) FILTER (WHERE event_type = 'INVOICE_PROCESSED'
                     AND (payload->>'accept_rounding')::boolean) AS accept_rounding_count,
  count(*) FILTER (WHERE event_type = 'INCIDENT_CREATED') AS incident_count,
  count(*) FILTER (WHERE event_type = 'INCIDENT_CREATED' AND payload->>'severity' = 'S1')
      AS s1_count,
  count(*) FILTER (WHERE event_type = 'INCIDENT_CREATED' AND payload->>'severity' = 'S2')
      AS s2_count,
  count(*) FILTER (WHERE event_type = 'INCIDENT_CREATED' AND (payload->>'ocr_suspect')::boolean)
      AS ocr_suspect_count,
  count(*) FILTER (WHERE event_type = 'INCIDENT_RESOLVED') AS resolved_count,
  count(*) FILTER (WHERE event_type = 'FEEDBACK_SUBMITTED') AS feedback_count,
  percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP
      (ORDER BY (payload->>'pipeline_total_ms')::float8)
      FILTER (WHERE event_type = 'INVOICE_PROCESSED') AS pipeline,
  percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP
      (ORDER BY (payload->>'extraction_ms')::float8)
      FILTER (WHERE event_type = 'INVOICE_PROCESSED'
                AND payload->>'extraction_ms' IS NOT NULL) AS extraction,
  coalesce(max((payload->>'depth')::bigint) FILTER (WHERE event_type = 'QUEUE_SAMPLE'), 0)
      AS max_depth,
  coalesce(bool_or((payload->>'stuck')::boolean) FILTER (WHERE event_type = 'QUEUE_SAMPLE'),
           false) AS stuck
FROM telemetry_events
WHERE occurred_at >= $1 AND occurred_at < $2 AND tenant_id = ANY($3::text[])
"""

_RAW_ERRORS = """
SELECT (payload->>'status')::int AS status, count(*) AS n
FROM telemetry_events
WHERE event_type = 'HTTP_REQUEST' AND occurred_at >= $1 AND occurred_at < $2
  AND tenant_id = ANY($3::text[]) AND (payload->>'status')::int >= 400
GROUP BY 1
"""

_RAW_DEPTH = """
SELECT (payload->>'depth')::bigint FROM telemetry_events
WHERE event_type = 'QUEUE_SAMPLE' AND occurred_at >= $1 AND occurred_at < $2
  AND tenant_id = ANY($3::text[])
ORDER BY occurred_at DESC, event_id DESC LIMIT 1
"""


async def recomputed_summary(
    pg: asyncpg.Pool, start: datetime, end: datetime, tenants: list[str]
) -> dict[str, Any]:
    """Counts, exact percentiles, errors by code and queue figures of `tenants` in the window."""
    row = await pg.fetchrow(_RAW_SUMMARY, start, end, tenants)
    assert row is not None
    errors = await pg.fetch(_RAW_ERRORS, start, end, tenants)
    depth = await pg.fetchval(_RAW_DEPTH, start, end, tenants)

    def latency(values: list[float] | None) -> dict[str, float | None]:
        p50, p95, p99 = values or (None, None, None)
        return {"p50": p50, "p95": p95, "p99": p99}

    return {
        "counts": {
            key: row[key]
            for key in (
                "total_invoices",
                "incident_count",
                "s1_count",
                "s2_count",
                "ocr_suspect_count",
                "resolved_count",
                "feedback_count",
                "accept_rounding_count",
            )
        },
        "latency": {
            "pipeline_total_ms": latency(row["pipeline"]),
            "extraction_ms": latency(row["extraction"]),
        },
        "by_code": {str(r["status"]): r["n"] for r in sorted(errors, key=lambda r: r["status"])},
        "queue": {
            "current_depth": depth or 0,
            "max_depth_in_period": row["max_depth"],
            "stuck_detected": row["stuck"],
        },
    }


def summary_shape(document: dict[str, Any]) -> dict[str, Any]:
    """The parts of a run-summary document `recomputed_summary` recomputes."""
    return {
        "counts": document["counts"],
        "latency": document["latency"],
        "by_code": document["errors"]["by_code"],
        "queue": document["queue"],
    }
