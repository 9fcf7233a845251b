"""`GET /live` on real pipeline services sharing one Redis (docs/SPEC.md §8)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import asyncpg
import pytest
from opentelemetry.sdk.metrics import MeterProvider

from services.pipeline.service import make_definition
from services.runtime.live.bus import LiveBus
from services.runtime.live.metrics import LiveMetrics
from tests.conftest import StartService
from tests.pipeline.service_support import (
    ADMIN,
    document,
    fast_settings,
    load_sample_tables,
    new_tenant,
    s2_document,
    submit,
)
from tests.support.services import ServiceHandle

NO_TELEMETRY = "127.0.0.1:1"


@asynccontextmanager
async def _pipeline(start_service: StartService, workers: int = 0) -> AsyncIterator[ServiceHandle]:
    async with start_service(
        make_definition(fast_settings(inprocess_workers=workers)), PTF_TELEMETRY_ADDR=NO_TELEMETRY
    ) as svc:
        yield svc


@asynccontextmanager
async def _publisher(svc: ServiceHandle) -> AsyncIterator[LiveBus]:
    runtime = svc.running.runtime
    meter = MeterProvider().get_meter("test")
    bus = LiveBus(runtime.redis, runtime.keys, runtime.config.live, LiveMetrics(meter))
    yield bus
    await bus.close()


async def _events(response: aiohttp.ClientResponse, count: int) -> list[dict[str, Any]]:
    """The next `count` SSE events' parsed data, skipping comments."""
    found: list[dict[str, Any]] = []
    async with asyncio.timeout(20):
        while len(found) < count:
            line = (await response.content.readline()).decode().rstrip("\n")
            if line.startswith("data: "):
                found.append(json.loads(line[len("data: ") :]))
    return found


async def _opened(response: aiohttp.ClientResponse) -> None:
    """Wait for the stream's opening comment, sent once the subscription is registered."""
    async with asyncio.timeout(20):
        assert (await response.content.readline()).startswith(b": open")


async def test_a_subscriber_on_each_pipeline_receives_a_job_processed_by_the_other(
    start_service: StartService, pg: asyncpg.Pool
) -> None:
    """Only `two` runs a worker: a subscriber on `one` sees the job's DONE event anyway,
    the job as the API shows it under `data`."""
    async with _pipeline(start_service) as one, _pipeline(start_service, workers=1) as two:
        await load_sample_tables(pg)
        tenant = await new_tenant(pg)
        channel = f"jobs.{tenant.tenant_id}"
        async with (
            one.http.get("/live", params={"channel": channel}, headers=tenant.headers) as on_one,
            two.http.get("/live", params={"channel": channel}, headers=tenant.headers) as on_two,
        ):
            assert on_one.status == 200
            assert on_one.headers["Content-Type"].startswith("text/event-stream")
            await _opened(on_one)
            await _opened(on_two)
            job = await submit(two, tenant, document())
            for response in (on_one, on_two):
                (event,) = await _events(response, 1)
                assert (event["event"], event["channel"]) == ("job.state", channel)
                assert event["data"]["job_id"] == job["job_id"]
                assert event["data"]["state"] == "DONE"
                assert event["seq"] >= 1


async def test_an_incident_opened_and_resolved_reaches_the_tenants_incident_channel(
    start_service: StartService, pg: asyncpg.Pool
) -> None:
    async with _pipeline(start_service) as one, _pipeline(start_service, workers=1) as two:
        await load_sample_tables(pg)
        tenant = await new_tenant(pg)
        channel = f"incidents.{tenant.tenant_id}"
        async with one.http.get(
            "/live", params={"channel": channel}, headers=tenant.headers
        ) as stream:
            await _opened(stream)
            job = await submit(two, tenant, s2_document())
            async with one.http.post(
                f"/admin/incidents/{job['incident_id']}/resolve",
                json={"resolution_reason": "fixed", "operator": "ayse"},
                headers=ADMIN,
            ) as resolved:
                assert resolved.status == 200, await resolved.text()
            created, closed = await _events(stream, 2)
        assert created["event"] == "incident.created"
        assert created["data"]["incident_id"] == job["incident_id"]
        assert created["data"]["job_id"] == job["job_id"]
        assert created["data"]["severity"] == "S2"
        assert closed["event"] == "incident.resolved"
        assert closed["data"]["incident_id"] == job["incident_id"]
        assert closed["seq"] > created["seq"]


async def test_last_event_id_delivers_only_later_events(
    start_service: StartService, pg: asyncpg.Pool
) -> None:
    async with _pipeline(start_service) as svc, _publisher(svc) as bus:
        tenant = await new_tenant(pg)
        channel = f"incidents.{tenant.tenant_id}"
        seqs = [await bus.publish(channel, "incident.created", {"n": n}) for n in range(5)]
        headers = {**tenant.headers, "Last-Event-ID": str(seqs[2])}
        async with svc.http.get("/live", params={"channel": channel}, headers=headers) as stream:
            await _opened(stream)
            got = await _events(stream, 2)
            assert [e["data"]["n"] for e in got] == [3, 4]


@pytest.mark.parametrize("channel", ["gate.decisions", "health", "jobs.someone-else"])
async def test_a_tenant_key_outside_its_channels_gets_403(
    start_service: StartService, pg: asyncpg.Pool, channel: str
) -> None:
    async with _pipeline(start_service) as svc:
        tenant = await new_tenant(pg)
        async with svc.http.get("/live", params={"channel": channel}, headers=tenant.headers) as r:
            assert r.status == 403
            assert (await r.json())["error_code"] == "CHANNEL_FORBIDDEN"


async def test_refused_subscriptions_get_clear_errors(
    start_service: StartService, pg: asyncpg.Pool
) -> None:
    async with _pipeline(start_service) as svc:
        cases: list[tuple[dict[str, str], dict[str, str], int, str]] = [
            ({}, ADMIN, 400, "MISSING_CHANNEL"),
            ({"channel": "jobs." + "a" * 200}, ADMIN, 400, "INVALID_CHANNEL"),
            ({"channel": "nope"}, ADMIN, 403, "CHANNEL_FORBIDDEN"),
            ({"channel": "health"}, {}, 401, "MISSING_API_KEY"),
            ({"channel": "health"}, {"X-API-Key": "wrong"}, 401, "INVALID_API_KEY"),
            ({"channel": "health"}, {**ADMIN, "Last-Event-ID": "-1"}, 400, "INVALID_LAST_EVENT_ID"),
        ]
        for params, headers, status, code in cases:
            async with svc.http.get("/live", params=params, headers=headers) as r:
                assert (r.status, (await r.json())["error_code"]) == (status, code), params
