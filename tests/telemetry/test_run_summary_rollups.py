"""The run summary read from hourly rollups equals a direct recomputation over raw rows.

Random events of every summary-relevant type over several tenants and five hours are
recorded through RecordEvents; summaries of windows whose edges fall inside hours (and
one inside a single hour) must match the raw-row aggregates: counts, exact
percentile_cont percentiles, errors by code and queue figures, all tenants and per tenant.
"""

from __future__ import annotations

import asyncio
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
from tests.telemetry.raw_summary import recomputed_summary, summary_shape

EVENTS = 1500
HOURS = 5


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


async def _served(
    svc: ServiceHandle, start: datetime, end: datetime, tenant: str | None
) -> dict[str, Any]:
    params = {"since": iso(start), "until": iso(end)}
    if tenant is not None:
        params["tenant_id"] = tenant
    async with svc.http.get("/run-summary", params=params, headers=SERVICE_HEADERS) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
    return summary_shape(body)


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
            expected = await recomputed_summary(pg, start, end, scope)
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
    assert served == await recomputed_summary(pg, start, end, [tenant, ""])
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
    assert served == await recomputed_summary(pg, start, end, [tenant, ""])


async def test_concurrent_batches_into_the_same_hour_are_all_rolled_up(
    telemetry: ServiceHandle, pg: asyncpg.Pool, slot: Slot
) -> None:
    rng = random.Random(7)
    tenants = [new_tenant() for _ in range(2)]
    events = _random_events(rng, tenants, slot)
    batches = [events[first : first + 100] for first in range(0, len(events), 100)]
    responses = await asyncio.gather(
        *(record(telemetry.service_channel, batch) for batch in batches)
    )
    assert [r.accepted for r in responses] == [len(batch) for batch in batches]
    start, end = slot.at(0), slot.at(HOURS * 60)
    expected = await recomputed_summary(pg, start, end, [*tenants, ""])
    assert await _served(telemetry, start, end, None) == expected
