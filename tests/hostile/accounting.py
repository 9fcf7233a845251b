"""What the release gate's error rate is made of, read the way the stack reads it.

`ptf_http_requests_total{code}` from a real `/metrics` scrape, and the
pipeline's HTTP_REQUEST events in its outbox (what telemetry counts as 5xx).
"""

from __future__ import annotations

import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from tests.support.services import ServiceHandle


async def requests_by_class(svc: ServiceHandle) -> dict[str, float]:
    """`ptf_http_requests_total` summed by status class (`4xx`, `5xx`) from a real scrape."""
    async with svc.http.get("/metrics") as response:
        text = await response.text()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ptf_http_requests_total":
                kind = sample.labels["code"][0] + "xx"
                totals[kind] = totals.get(kind, 0.0) + sample.value
    return totals


async def request_events(pg: asyncpg.Pool, statuses: range) -> int:
    """The pipeline's HTTP_REQUEST outbox events (what telemetry's 5xx rate counts) by status."""
    count: int = await pg.fetchval(
        "SELECT count(*) FROM pipeline_outbox WHERE event_type = 'HTTP_REQUEST'"
        " AND (payload->>'status')::int >= $1 AND (payload->>'status')::int < $2",
        statuses.start,
        statuses.stop,
    )
    return count
