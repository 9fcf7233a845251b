"""The run summary read from hourly rollups equals a direct recomputation over raw rows.

Random events of every summary-relevant type over several tenants and five hours are
recorded through RecordEvents; summaries of windows whose edges fall inside hours (and
one inside a single hour) must match the raw-row aggregates: counts, exact
percentile_cont percentiles, errors by code and queue figures, all tenants and per tenant.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.support.services import ServiceHandle
from tests.telemetry.factories import (
    SERVICE_HEADERS,
    Slot,
    event,
    feedback,
    http_request,
    incident,
    invoice,
    iso,
    mismatch_invoice,
    new_tenant,
    queue_sample,
    record,
    record_all,
    resolved,
)

EVENTS = 1500
HOURS = 5

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


def _random_events(rng: random.Random, tenants: list[str], slot: Slot) -> list[Any]:
    """A mix of invoices (latencies on a wide scale, with ties), incidents, HTTP and queue."""
    events = []
    for _ in range(EVENTS):
        at = slot.at(rng.uniform(0, HOURS * 60))
        tenant = rng.choice(tenants)
        kind = rng.random()
        if kind < 0.45:
            ms = rng.choice([round(rng.lognormvariate(6, 1.2), 3), float(rng.randint(1, 50))])
            extraction = None if rng.random() < 0.3 else round(rng.uniform(0, ms), 3)
            if rng.random() < 0.1:
                payload = mismatch_invoice(rng.random(), pipeline_total_ms=ms)
            else:
                payload = invoice(
                    pipeline_total_ms=ms,
                    extraction_ms=extraction,
                    accept_rounding=rng.random() < 0.1,
                )
            events.append(event("INVOICE_PROCESSED", tenant, payload, at))
        elif kind < 0.6:
            severity = rng.choice(["S1", "S2"])
            payload = incident(severity, ocr_suspect=rng.random() < 0.3)
            events.append(event("INCIDENT_CREATED", tenant, payload, at))
        elif kind < 0.65:
            events.append(event("INCIDENT_RESOLVED", tenant, resolved(), at))
        elif kind < 0.7:
            events.append(event("FEEDBACK_SUBMITTED", tenant, feedback(rng.random() < 0.5), at))
        elif kind < 0.95:
            status = rng.choice([200, 200, 200, 400, 404, 409, 500, 503])
            events.append(event("HTTP_REQUEST", "", http_request(status), at))
        else:
            sample = queue_sample(rng.randint(0, 30), stuck=rng.random() < 0.05)
            events.append(event("QUEUE_SAMPLE", "", sample, at))
    return events


async def _recomputed(
    pg: asyncpg.Pool, start: datetime, end: datetime, tenants: list[str]
) -> dict[str, Any]:
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


async def _served(
    svc: ServiceHandle, start: datetime, end: datetime, tenant: str | None
) -> dict[str, Any]:
    params = {"since": iso(start), "until": iso(end)}
    if tenant is not None:
        params["tenant_id"] = tenant
    async with svc.http.get("/run-summary", params=params, headers=SERVICE_HEADERS) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
    return {
        "counts": body["counts"],
        "latency": body["latency"],
        "by_code": body["errors"]["by_code"],
        "queue": body["queue"],
    }


async def test_rollup_summary_equals_a_recomputation_over_raw_rows(
    telemetry: ServiceHandle, pg: asyncpg.Pool, slot: Slot
) -> None:
    rng = random.Random(13)
    tenants = [new_tenant() for _ in range(3)]
    await record_all(telemetry.service_channel, _random_events(rng, tenants, slot))
    windows = [
        (slot.at(0), slot.at(HOURS * 60)),
        (slot.at(17.25), slot.at(4 * 60 + 3.5)),
        (slot.at(61), slot.at(119)),
        (slot.at(59.5), slot.at(120.5)),
        (slot.at(rng.uniform(0, 120)), slot.at(rng.uniform(150, HOURS * 60))),
    ]
    for start, end in windows:
        for tenant in [None, *tenants]:
            scope = [*tenants, ""] if tenant is None else [tenant, ""]
            expected = await _recomputed(pg, start, end, scope)
            assert await _served(telemetry, start, end, tenant) == expected, (start, end, tenant)


async def test_deleting_events_recomputes_the_hours_they_were_in(
    telemetry: ServiceHandle, pg: asyncpg.Pool, slot: Slot
) -> None:
    tenant = new_tenant()
    events = [
        event("INVOICE_PROCESSED", tenant, invoice(pipeline_total_ms=float(ms)), slot.at(ms))
        for ms in range(1, 121)
    ]
    await record_all(telemetry.service_channel, events)
    await pg.execute(
        "DELETE FROM telemetry_events WHERE tenant_id = $1 AND occurred_at < $2",
        tenant,
        slot.at(60),
    )
    start, end = slot.start, slot.start + timedelta(hours=3)
    served = await _served(telemetry, start, end, tenant)
    assert served == await _recomputed(pg, start, end, [tenant, ""])
    assert served["counts"]["total_invoices"] == 61
    assert served["latency"]["pipeline_total_ms"]["p50"] == pytest.approx(90.0)


async def test_an_event_repeated_inside_one_batch_is_rolled_up_once(
    telemetry: ServiceHandle, pg: asyncpg.Pool, slot: Slot
) -> None:
    tenant = new_tenant()
    twice = event("INVOICE_PROCESSED", tenant, invoice(pipeline_total_ms=7.0), slot.at(30))
    response = await record(telemetry.service_channel, [twice, twice])
    assert (response.accepted, response.duplicates) == (1, 1)
    start, end = slot.start, slot.start + timedelta(hours=2)
    served = await _served(telemetry, start, end, tenant)
    assert served["counts"]["total_invoices"] == 1
    assert served == await _recomputed(pg, start, end, [tenant, ""])
