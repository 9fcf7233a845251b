"""Fault: telemetry down (SIGKILLed) for the middle third of a 1,000-invoice run."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.pipeline.service_support import (
    Tenant,
    document,
    load_sample_tables,
    new_tenant,
    s2_document,
)
from tests.resilience.processes import (
    ServiceProcess,
    process_env,
    record_figures,
    run_summary,
    stop_all,
    submit_all,
)
from tests.support.polling import eventually

pytestmark = pytest.mark.slow

INVOICES = 1000
S2_EVERY = 10  # every tenth invoice is the seed's S2 mismatch: one incident each


@dataclass
class OutageStack:
    telemetry: ServiceProcess
    pipeline: ServiceProcess
    tenant: Tenant


@pytest.fixture
async def outage_stack(
    database_url: str, redis_url: str, redis_prefix: str, pg: asyncpg.Pool, tmp_path: Path
) -> AsyncIterator[OutageStack]:
    """Telemetry and the pipeline API (its two in-process workers and the outbox relay) as
    processes; telemetry on fixed ports so it comes back where the pipeline looks for it."""
    env = process_env(database_url, redis_url, redis_prefix, tmp_path)
    telemetry = ServiceProcess("telemetry", env, tmp_path)
    pipeline = ServiceProcess(
        "pipeline", {**env, "PTF_TELEMETRY_ADDR": telemetry.grpc_target}, tmp_path
    )
    try:
        await telemetry.start()
        await pipeline.start()
        await load_sample_tables(pg)
        yield OutageStack(telemetry, pipeline, await new_tenant(pg, "outage"))
    finally:
        await stop_all([pipeline, telemetry])


async def _database_truth(pg: asyncpg.Pool, tenant_id: str) -> dict[str, int]:
    """What the pipeline's own tables say happened to the tenant."""
    row = await pg.fetchrow(
        "SELECT (SELECT count(*) FROM pipeline_jobs WHERE tenant_id = $1 AND state = 'DONE')"
        "   AS total_invoices,"
        " (SELECT count(*) FROM pipeline_incidents WHERE tenant_id = $1) AS incident_count,"
        " (SELECT count(*) FROM pipeline_incidents WHERE tenant_id = $1 AND severity = 'S1')"
        "   AS s1_count,"
        " (SELECT count(*) FROM pipeline_incidents WHERE tenant_id = $1 AND severity = 'S2')"
        "   AS s2_count",
        tenant_id,
    )
    assert row is not None
    return dict(row)


async def _stored_by_telemetry(pg: asyncpg.Pool, tenant_id: str) -> dict[str, int]:
    """The tenant's events in telemetry's store, HTTP request outcomes apart."""
    row = await pg.fetchrow(
        "SELECT count(*) FILTER (WHERE event_type = 'HTTP_REQUEST') AS requests,"
        " count(*) FILTER (WHERE event_type <> 'HTTP_REQUEST') AS others"
        " FROM telemetry_events WHERE tenant_id = $1",
        tenant_id,
    )
    assert row is not None
    return dict(row)


async def _undelivered(pg: asyncpg.Pool, tenant_id: str) -> int:
    count: int = await pg.fetchval(
        "SELECT count(*) FROM pipeline_outbox WHERE tenant_id = $1 AND delivered_at IS NULL",
        tenant_id,
    )
    return count


async def test_run_summary_after_a_telemetry_outage_equals_the_database_truth(
    outage_stack: OutageStack, pg: asyncpg.Pool, tmp_path: Path
) -> None:
    """Fault: 1,000 invoices are submitted in thirds; telemetry is SIGKILLed after the
    first third and started again (same ports, same database) after the second.

    Expected: the outbox holds what telemetry could not take (the HTTP request outcomes
    of the outage among it) and the relay delivers it once telemetry is back: the run
    summary's counts (invoices, incidents, S1, S2) equal what the pipeline's tables hold
    and its HTTP requests the requests made, nothing lost and nothing doubled, and
    telemetry stores each event once.

    Figures (tmp_path/figures.json): invoices, outage seconds, events waiting in the
    outbox when telemetry came back, seconds until the outbox drained, the summary and
    the database counts.
    """
    stack, tenant = outage_stack, outage_stack.tenant
    since = datetime.now(UTC) - timedelta(seconds=5)
    documents = [s2_document() if i % S2_EVERY == 0 else document() for i in range(INVOICES)]
    first, second = INVOICES // 3, 2 * INVOICES // 3
    async with aiohttp.ClientSession(stack.pipeline.http_base) as http:
        await submit_all(http, tenant.tenant_id, tenant.headers, documents[:first])
        await stack.telemetry.kill()
        down_at = time.monotonic()
        await submit_all(http, tenant.tenant_id, tenant.headers, documents[first:second])
        waiting_at_restart = await _undelivered(pg, tenant.tenant_id)
        await stack.telemetry.start()
        outage_seconds = time.monotonic() - down_at
        back_at = time.monotonic()
        await submit_all(http, tenant.tenant_id, tenant.headers, documents[second:])

    async def drained() -> bool:
        truth = await _database_truth(pg, tenant.tenant_id)
        requests = (await _stored_by_telemetry(pg, tenant.tenant_id))["requests"]
        done = truth["total_invoices"] == INVOICES and requests == INVOICES
        return done and await _undelivered(pg, tenant.tenant_id) == 0

    await eventually(drained, within=90, interval=0.2)
    drained_after = time.monotonic() - back_at

    truth = await _database_truth(pg, tenant.tenant_id)
    summary = await run_summary(stack.telemetry.grpc_target, tenant.tenant_id, since)
    counts = {
        "total_invoices": summary.counts.total_invoices,
        "incident_count": summary.counts.incident_count,
        "s1_count": summary.counts.s1_count,
        "s2_count": summary.counts.s2_count,
        "total_requests": summary.errors.total_requests,
    }
    outbox_events = await pg.fetchval(
        "SELECT count(*) FROM pipeline_outbox"
        " WHERE tenant_id = $1 AND event_type <> 'HTTP_REQUEST'",
        tenant.tenant_id,
    )
    telemetry_events = await _stored_by_telemetry(pg, tenant.tenant_id)
    record_figures(
        tmp_path / "figures.json",
        {
            "invoices": INVOICES,
            "outage_seconds": round(outage_seconds, 2),
            "outbox_events_waiting_at_restart": waiting_at_restart,
            "seconds_to_drain_after_restart": round(drained_after, 2),
            "summary_counts": counts,
            "database_counts": truth,
            "outbox_events": outbox_events,
            "telemetry_events": telemetry_events,
            "telemetry_starts": stack.telemetry.starts,
        },
    )

    assert waiting_at_restart > 0, "telemetry's outage held nothing back: no fault injected"
    assert truth == {
        "total_invoices": INVOICES,
        "incident_count": INVOICES // S2_EVERY,
        "s1_count": 0,
        "s2_count": INVOICES // S2_EVERY,
    }
    assert counts == {**truth, "total_requests": INVOICES}
    assert telemetry_events == {"requests": INVOICES, "others": outbox_events}
