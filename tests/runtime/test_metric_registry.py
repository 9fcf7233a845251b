"""Every service's real `/metrics` against the metric registry.

One wired stack per module; the traffic (a preflight, a gate Check ending in a
contract breach, the three smoke invoices with the incident resolved and given
feedback, a readiness evaluation, a replayed purge token, an unknown path) runs
once, then each service is scraped and parsed with prometheus_client's parser.
The queue-depth gauge is checked on its own pipeline, with no worker, on a
database of its own, so the jobs it leaves waiting disturb no other test; a
`ptf-pipeline worker` process is scraped on that database too.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from services.pipeline.service import make_definition
from services.runtime import metric_registry as registry
from services.runtime.devservers import free_port
from services.runtime.metric_registry import SERVICES, MetricFamily
from services.runtime.metrics import UNMATCHED_ROUTE
from services.runtime.tokens.errors import TokenError
from tests.monitoring.live_stack import (
    ADMIN,
    LiveStack,
    contract_breach,
    invoices_with_an_incident,
    isolated_config,
    live_stack,
    preflight,
    ready_evaluation,
)
from tests.pipeline.service_support import document, fast_settings, new_tenant
from tests.support.polling import eventually
from tests.support.services import ServiceHandle, make_config_factory, running_service

WITHIN = 20.0
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
Scrape = dict[str, list[Sample]]
"""Registry family name → its samples, as one scrape showed them."""


def _registry_name(parsed_name: str, kind: str) -> str:
    """The parser drops a counter's `_total`; the registry spells the exported name."""
    return f"{parsed_name}_total" if kind == "counter" else parsed_name


def parse(text: str) -> Scrape:
    return {
        _registry_name(family.name, family.type): list(family.samples)
        for family in text_string_to_metric_families(text)
    }


def label_names(samples: list[Sample]) -> set[str]:
    return {name for sample in samples for name in sample.labels if name != "le"}


async def scrape(svc: ServiceHandle) -> Scrape:
    async with svc.http.get("/metrics") as response:
        assert response.status == 200
        return parse(await response.text())


def value(scraped: Scrape, family: MetricFamily, **labels: str) -> float:
    """Sum of the family's samples (counters/gauges) whose labels include `labels`."""
    return sum(
        s.value
        for s in scraped.get(family.name, [])
        if s.name == family.name and labels.items() <= s.labels.items()
    )


async def _replay_purge_token(stack: LiveStack, pg: asyncpg.Pool) -> None:
    """Purge a fresh, empty tenant, then present the same token again (TOKEN_USED)."""
    pipeline = stack.services["pipeline"]
    tenant = await new_tenant(pg, "replay")
    path = f"/admin/tenants/{tenant.tenant_id}/purge"
    async with pipeline.http.post(path, json={"operator": "ops"}, headers=ADMIN) as response:
        token = (await response.json())["confirmation_token"]
    confirm = {"confirmation_token": token, "operator": "ops"}
    for expected in (200, 409):
        async with pipeline.http.post(f"{path}/confirm", json=confirm, headers=ADMIN) as response:
            assert response.status == expected, await response.text()


@pytest.fixture(scope="module")
async def stack(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveStack]:
    make_config = isolated_config(database_url, redis_url)
    async with live_stack(make_config, tmp_path_factory.mktemp("metrics")) as running:
        yield running


@pytest.fixture(scope="module")
async def scrapes(stack: LiveStack) -> dict[str, Scrape]:
    """Each service's scrape after the traffic (telemetry once the relayed events arrived).

    Services started before the gate saw its port refuse, and gRPC shares that
    connection backoff between channels, so the gate channel is awaited first.
    """
    for svc in stack.services.values():
        await asyncio.wait_for(svc.channel.channel_ready(), WITHIN)
    async with asyncpg.create_pool(stack.services["pipeline"].config.database_url) as pg:
        await preflight(stack)
        await contract_breach(stack)
        await invoices_with_an_incident(stack, pg)
        await _replay_purge_token(stack, pg)
    await ready_evaluation(stack)
    for svc in stack.services.values():
        async with svc.http.get("/no-such-path/12345") as response:
            assert response.status == 404

    async def telemetry_has_events() -> Scrape | None:
        scraped = await scrape(stack.services["telemetry"])
        return scraped if value(scraped, registry.TELEMETRY_EVENTS) > 0 else None

    await eventually(telemetry_has_events, within=WITHIN)
    return {name: await scrape(svc) for name, svc in stack.services.items()}


@pytest.mark.parametrize("service", SERVICES)
async def test_every_scraped_family_is_registered_and_owned_by_the_service(
    scrapes: dict[str, Scrape], service: str
) -> None:
    strays = {
        name
        for name in scrapes[service]
        if name not in registry.EXPORTER_FAMILIES
        and (name not in registry.BY_NAME or service not in registry.BY_NAME[name].owners)
    }
    assert strays == set()


@pytest.mark.parametrize("service", SERVICES)
async def test_every_owned_family_is_exported_with_the_registry_labels(
    scrapes: dict[str, Scrape], service: str
) -> None:
    exported = {
        family.name: label_names(scrapes[service].get(family.name, []))
        for family in registry.owned_by(service)
    }
    expected = {family.name: set(family.labels) for family in registry.owned_by(service)}
    missing = {name for name in expected if name not in scrapes[service]}
    assert missing == set()
    assert exported == expected


async def test_telemetry_exports_no_release_gate_family(scrapes: dict[str, Scrape]) -> None:
    assert [name for name in scrapes["telemetry"] if name.startswith("release_gate_")] == []


async def test_gate_exports_the_release_gate_families(scrapes: dict[str, Scrape]) -> None:
    assert value(scrapes["gate"], registry.GATE_CONTRACT_BREACHES) >= 1


async def test_stage_histogram_has_every_stage_after_an_invoice(
    scrapes: dict[str, Scrape],
) -> None:
    counts = {
        s.labels["stage"]: s.value
        for s in scrapes["pipeline"][registry.STAGE_DURATION.name]
        if s.name == f"{registry.STAGE_DURATION.name}_count"
    }
    assert set(counts) == set(registry.STAGES)
    assert all(count >= 1 for count in counts.values())


async def test_replayed_token_counts_as_token_used(scrapes: dict[str, Scrape]) -> None:
    failures = scrapes["pipeline"]
    assert value(failures, registry.TOKEN_CONSUME_FAILURES, reason=TokenError.TOKEN_USED) >= 1
    assert {s.labels["reason"] for s in failures[registry.TOKEN_CONSUME_FAILURES.name]} == {
        e.value for e in TokenError
    }


async def test_http_requests_are_counted_by_route_template(scrapes: dict[str, Scrape]) -> None:
    routes = {s.labels["route"] for s in scrapes["pipeline"][registry.HTTP_REQUESTS.name]}
    assert "/admin/incidents/{incident_id}/resolve" in routes
    assert [route for route in routes if _UUID.search(route)] == []


@pytest.mark.parametrize("service", SERVICES)
async def test_unknown_paths_count_under_one_unmatched_route(
    scrapes: dict[str, Scrape], service: str
) -> None:
    requests = registry.HTTP_REQUESTS
    assert value(scrapes[service], requests, route=UNMATCHED_ROUTE, code="404") >= 1
    assert not any("no-such-path" in s.labels["route"] for s in scrapes[service][requests.name])


async def test_resolution_and_feedback_are_counted(scrapes: dict[str, Scrape]) -> None:
    pipeline = scrapes["pipeline"]
    assert value(pipeline, registry.INCIDENTS_RESOLVED) >= 1
    assert value(pipeline, registry.FEEDBACK, hint_correct="true") >= 1


async def test_health_gauges_show_the_last_readiness_evaluation(
    scrapes: dict[str, Scrape],
) -> None:
    health = scrapes["health"]
    checks = {s.labels["check"]: s.value for s in health[registry.HEALTH_CHECK_STATUS.name]}
    assert {"config", "database", "queue", "services"} <= set(checks)
    assert set(checks.values()) <= {0, 1, 2}
    (ready,) = health[registry.HEALTH_READY.name]
    assert ready.value == (0 if 2 in checks.values() else 1)


async def test_queue_depth_gauge_reports_the_jobs_waiting_without_a_worker(
    empty_database: str, redis_url: str, tmp_path: Path
) -> None:
    make_config = make_config_factory(
        {
            "DATABASE_URL": empty_database,
            "REDIS_URL": redis_url,
            "PTF_REDIS_PREFIX": f"test-{uuid.uuid4().hex[:10]}",
            "PTF_METRICS_DIR": str(tmp_path),
        }
    )
    settings = fast_settings(inprocess_workers=0, queue_sample_interval_seconds=0.05)
    definition = make_definition(settings)
    async with (
        running_service(definition, make_config("pipeline")) as pipeline,
        asyncpg.create_pool(empty_database, min_size=1, max_size=2) as pg,
    ):
        tenant = await new_tenant(pg, "queued")
        for _ in range(3):
            async with pipeline.http.post(
                f"/full-process?tenant_id={tenant.tenant_id}&async=1",
                json=document(),
                headers=tenant.headers,
            ) as response:
                assert response.status == 202, await response.text()
        waiting = await pg.fetchval(
            "SELECT count(*) FROM pipeline_jobs WHERE state IN ('QUEUED', 'RUNNING')"
        )
        assert waiting == 3

        async def depth() -> float | None:
            shown = value(await scrape(pipeline), registry.QUEUE_DEPTH)
            return shown if shown == waiting else None

        assert await eventually(depth, within=WITHIN) == waiting


async def _worker_scrape(http_port: int) -> Scrape | None:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{http_port}/metrics") as response,
        ):
            return parse(await response.text())
    except aiohttp.ClientConnectionError:
        return None


async def test_worker_process_exports_only_pipeline_families_and_no_queue_gauge(
    empty_database: str, redis_url: str
) -> None:
    """A worker process has no queue sampler: a 0 depth from it would read as an empty queue."""
    http_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PTF_")}
    env.update(
        DATABASE_URL=empty_database,
        REDIS_URL=redis_url,
        PTF_REDIS_PREFIX=f"test-{uuid.uuid4().hex[:10]}",
        PTF_TELEMETRY_ADDR="127.0.0.1:9",
        BUILD_ID="test",
    )
    command = ["-m", "services.pipeline", "worker", "--concurrency", "1"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *command, "--http-port", str(http_port), env=env
    )
    try:
        scraped = await eventually(lambda: _worker_scrape(http_port), within=WITHIN)
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()
    owned = {family.name for family in registry.owned_by(registry.PIPELINE)}
    assert set(scraped) - registry.EXPORTER_FAMILIES <= owned
    assert {registry.DB_STATEMENTS.name, registry.BUILD_INFO.name} <= set(scraped)
    assert registry.QUEUE_DEPTH.name not in scraped
