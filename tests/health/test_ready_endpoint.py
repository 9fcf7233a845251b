"""`/health/ready` and `Ready` end to end (SPEC §6, seed 002 §4, seed 003 §2.4).

The pipeline is the real pipeline service, asked over gRPC; gate and telemetry
are real gRPC servers on loopback whose grpc.health.v1 status each test
controls; Postgres and Redis are the real test stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from ptf.health.v1 import health_pb2 as ready_pb2
from ptf.health.v1 import health_pb2_grpc as ready_pb2_grpc

from services.pipeline.extractors import ExtractorRateLimit
from services.pipeline.pilot import INVOICE_LIMITER, pilot_limiter
from tests.health.support import Peers, StartHealth
from tests.support.polling import eventually
from tests.support.services import ServiceHandle


async def _ready(svc: ServiceHandle) -> tuple[int, dict[str, object]]:
    async with svc.http.get("/health/ready") as response:
        return response.status, await response.json()


async def _once(svc: ServiceHandle, http_status: int) -> dict[str, object]:
    """The first report with `http_status`: a change shows after the cache window passes."""

    async def probe() -> dict[str, object] | None:
        status, body = await _ready(svc)
        return body if status == http_status else None

    return await eventually(probe, within=5)


async def _becomes_ready(svc: ServiceHandle) -> None:
    await _once(svc, 200)


def _check(body: dict[str, object], name: str) -> dict[str, object]:
    checks = body["checks"]
    assert isinstance(checks, dict)
    check = checks[name]
    assert isinstance(check, dict)
    return check


async def test_healthy_system_is_ready_with_the_contract_fields(start_health: StartHealth) -> None:
    async with start_health() as (svc, _):
        status, body = await _ready(svc)
    assert status == 200
    assert body["status"] == "ready"
    assert body["build_id"] == "test"
    assert body["config_hash"] == svc.config.config_hash
    assert set(body["checks"]) == {"config", "database", "openai_api", "queue", "services"}  # type: ignore[arg-type]
    assert _check(body, "config") == {"status": "ok", "validated": True}
    assert _check(body, "openai_api") == {"status": "ok", "mode": "json"}
    assert _check(body, "queue")["depth"] == 0
    assert body["pilot"] == {
        "enabled": True,
        "tenant_id": "pilot",
        "rate_limit": {"current": 0, "limit": 50, "remaining": 50, "window_seconds": 3600},
    }
    assert set(body["last_activity"]) == {"last_incident_at", "last_extraction_at"}  # type: ignore[arg-type]
    assert "failing_checks" not in body


async def test_peer_not_serving_makes_it_not_ready(start_health: StartHealth, peers: Peers) -> None:
    async with start_health() as (svc, _):
        await peers.set_serving(False)
        body = await _once(svc, 503)
        assert body["failing_checks"] == ["services"]
        assert _check(body, "services")["gate"] == "NOT_SERVING"
        await peers.set_serving(True)
        await _becomes_ready(svc)


async def test_unreachable_peer_is_an_error(start_health: StartHealth) -> None:
    async with start_health(PTF_TELEMETRY_ADDR="127.0.0.1:1") as (svc, _):
        status, body = await _ready(svc)
    assert status == 503
    assert str(_check(body, "services")["telemetry"]).startswith("unreachable")


async def test_thresholds_file_broken_on_disk_flips_config_to_error(
    start_health: StartHealth, tmp_path: Path
) -> None:
    """Fault: the mounted thresholds file is edited into an invalid config after start.
    Readiness must report config error (503) before any pod restarts on it."""
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text("Mismatch:\n  RATIO: 0.05\n")
    async with start_health(PTF_THRESHOLDS_FILE=str(thresholds)) as (svc, _):
        assert (await _ready(svc))[0] == 200
        thresholds.write_text("Mismatch:\n  SEVERE_RATIO: 0.01\n")
        body = await _once(svc, 503)
        assert body["failing_checks"] == ["config"]
        assert "I1" in str(_check(body, "config")["message"])
        thresholds.write_text("Mismatch:\n  RATIO: 0.05\n")
        await _becomes_ready(svc)


async def test_valid_but_changed_thresholds_file_is_a_warning(
    start_health: StartHealth, tmp_path: Path
) -> None:
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text("Mismatch:\n  RATIO: 0.05\n")
    async with start_health(PTF_THRESHOLDS_FILE=str(thresholds)) as (svc, _):
        thresholds.write_text("Mismatch:\n  RATIO: 0.06\n")

        async def warned() -> dict[str, object] | None:
            status, body = await _ready(svc)
            return body if status == 200 and _check(body, "config")["status"] == "warning" else None

        body = await eventually(warned, within=5)
    assert _check(body, "config")["deployed_config_hash"] != svc.config.config_hash


@asynccontextmanager
async def _connections_held(pool: asyncpg.Pool, seconds: float) -> AsyncIterator[None]:
    """Take every pooled connection; give them back after `seconds` or when the block ends."""
    held = [await pool.acquire() for _ in range(pool.get_max_size())]
    done = asyncio.Event()

    async def release_later() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), seconds)
        for conn in held:
            await pool.release(conn)

    releaser = asyncio.create_task(release_later())
    try:
        yield
    finally:
        done.set()
        await releaser


@pytest.mark.parametrize(
    ("hold_seconds", "status", "http"),
    [(0.25, "warning", 200), (0.7, "error", 503)],
    ids=["slow-is-warning", "very-slow-is-error"],
)
async def test_database_latency_bands_flip_status(
    start_health: StartHealth, hold_seconds: float, status: str, http: int
) -> None:
    """Fault: every pooled connection is busy, so `SELECT 1` waits `hold_seconds`."""
    async with start_health() as (svc, _):
        async with _connections_held(svc.running.runtime.pool, hold_seconds):
            code, body = await _ready(svc)
        assert _check(body, "database")["status"] == status
        assert code == http
        await _becomes_ready(svc)


async def test_hanging_check_is_bounded_by_its_timeout(start_health: StartHealth) -> None:
    """Fault: the database never answers. The endpoint answers within the check timeout
    and reports the database as an error instead of hanging."""
    async with (
        start_health(PTF_THRESHOLD__HEALTH__CHECK_TIMEOUT_SECONDS="0.3") as (svc, _),
        _connections_held(svc.running.runtime.pool, 30),
    ):
        code, body = await asyncio.wait_for(_ready(svc), timeout=5)
    assert code == 503
    assert _check(body, "database") == {"status": "error", "message": "timed out after 0.3s"}


async def _insert_job(pg: asyncpg.Pool, tenant: str, age_minutes: float) -> None:
    invoice_id = uuid.uuid4()
    await pg.execute(
        "INSERT INTO pipeline_invoices (invoice_id, tenant_id, content_hash, source_kind)"
        " VALUES ($1, $2, $3, 'json')",
        invoice_id,
        tenant,
        uuid.uuid4().hex,
    )
    await pg.execute(
        "INSERT INTO pipeline_jobs (job_id, tenant_id, invoice_id, state, created_at)"
        " VALUES ($1, $2, $3, 'QUEUED', now() - make_interval(secs => $4))",
        uuid.uuid4(),
        tenant,
        invoice_id,
        age_minutes * 60,
    )


@pytest.fixture
async def clean_jobs(pg: asyncpg.Pool) -> AsyncIterator[None]:
    """Queue tests own the job table for their duration (the suite shares one database)."""
    yield
    await pg.execute("DELETE FROM pipeline_jobs WHERE tenant_id LIKE 'healthtest-%'")
    await pg.execute("DELETE FROM pipeline_invoices WHERE tenant_id LIKE 'healthtest-%'")


async def test_queue_backlog_that_progresses_is_a_warning(
    start_health: StartHealth, pg: asyncpg.Pool, clean_jobs: None
) -> None:
    async with start_health() as (svc, _):
        await _insert_job(pg, "healthtest-a", age_minutes=1)
        status, body = await _ready(svc)
    assert status == 200
    assert _check(body, "queue")["status"] == "warning"
    assert _check(body, "queue")["depth"] == 1


async def test_stuck_queue_is_an_error(
    start_health: StartHealth, pg: asyncpg.Pool, clean_jobs: None
) -> None:
    """Fault: workers stopped; the oldest waiting job is older than Recovery.STUCK_MINUTES
    and nothing finished since. Readiness must be 503 with queue error."""
    # Jobs other tests finished minutes ago would count as progress: move them back.
    await pg.execute(
        "UPDATE pipeline_jobs SET finished_at = finished_at - interval '1 day'"
        " WHERE finished_at > now() - interval '1 day'"
    )
    async with start_health() as (svc, _):
        await _insert_job(pg, "healthtest-b", age_minutes=11)
        status, body = await _ready(svc)
    assert status == 503
    assert body["failing_checks"] == ["queue"]
    assert _check(body, "queue")["stuck_detected"] is True


async def test_openai_mode_without_a_key_is_an_error(start_health: StartHealth) -> None:
    async with start_health(pipeline={"EXTRACTOR": "openai"}) as (svc, _):
        status, body = await _ready(svc)
    assert status == 503
    assert _check(body, "openai_api")["message"] == "OPENAI_API_KEY is not set"


async def test_openai_check_reflects_the_pipelines_extractor_not_healths_env(
    start_health: StartHealth,
) -> None:
    """Health's own EXTRACTOR/OPENAI_API_KEY are not what runs extraction; the pipeline's are."""
    async with start_health(EXTRACTOR="openai", OPENAI_API_KEY="sk-health") as (svc, _):
        status, body = await _ready(svc)
    assert status == 200
    assert _check(body, "openai_api") == {"status": "ok", "mode": "json"}


async def test_openai_rate_limited_is_an_error(start_health: StartHealth) -> None:
    pipeline = {"EXTRACTOR": "openai", "OPENAI_API_KEY": "sk-test"}
    async with start_health(pipeline=pipeline) as (svc, pipe):
        assert (await _ready(svc))[0] == 200
        runtime = pipe.running.runtime
        await ExtractorRateLimit(runtime.redis, runtime.keys).mark(30, "rate_limited")
        body = await _once(svc, 503)
    assert _check(body, "openai_api")["message"] == "rate_limited"
    assert "sk-test" not in json.dumps(body)


async def test_pilot_block_shows_rate_limit_usage(start_health: StartHealth) -> None:
    async with start_health() as (svc, pipe):
        runtime = pipe.running.runtime
        limiter = pilot_limiter(
            INVOICE_LIMITER, runtime.redis, runtime.keys, runtime.config.thresholds
        )
        for _ in range(5):
            await limiter.acquire("pilot")
        _, body = await _ready(svc)
    assert body["pilot"]["rate_limit"] == {  # type: ignore[index]
        "current": 5,
        "limit": 50,
        "remaining": 45,
        "window_seconds": 3600,
    }


async def test_kill_switch_off_keeps_the_system_ready(start_health: StartHealth) -> None:
    async with start_health(pipeline={"PILOT_ENABLED": "false"}) as (svc, _):
        status, body = await _ready(svc)
    assert status == 200
    assert body["pilot"]["enabled"] is False  # type: ignore[index]


async def test_verbose_gives_a_line_per_check_and_live_channel(start_health: StartHealth) -> None:
    async with start_health() as (svc, _), svc.http.get("/health/ready?verbose") as response:
        text = await response.text()
    assert response.status == 200
    assert text.startswith("READY")
    assert len(text.splitlines()) == 7
    assert text.splitlines()[-1].startswith("LIVE    health      staleness=fresh")


async def test_grpc_ready_returns_the_same_report(start_health: StartHealth, peers: Peers) -> None:
    async with start_health() as (svc, _):
        await peers.set_serving(False)
        await _once(svc, 503)
        reply = await ready_pb2_grpc.HealthServiceStub(svc.channel).Ready(ready_pb2.ReadyRequest())
    assert not reply.ready
    assert list(reply.failing_checks) == ["services"]
    assert json.loads(reply.report_json)["status"] == "not_ready"
    statuses = {c.name: c.status for c in reply.checks}
    assert statuses["services"] == ready_pb2.CHECK_STATUS_ERROR
    assert statuses["database"] == ready_pb2.CHECK_STATUS_OK


async def _db_statements(svc: ServiceHandle) -> float:
    async with svc.http.get("/metrics") as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        if family.name == "ptf_db_statements":
            return sum(s.value for s in family.samples if s.name == "ptf_db_statements_total")
    return 0.0


async def test_probe_storm_costs_one_evaluation(start_health: StartHealth) -> None:
    """500 concurrent probes inside one cache window share one evaluation: health's own
    database sees only its latency probe (the pipeline's one statement per status call
    is counted in tests/pipeline/test_readiness_status_rpc.py)."""
    async with start_health(PTF_THRESHOLD__HEALTH__CACHE_SECONDS="60") as (svc, _):
        before = await _db_statements(svc)
        statuses = await asyncio.gather(*(_ready(svc) for _ in range(500)))
        after = await _db_statements(svc)
    assert {code for code, _ in statuses} == {200}
    assert after - before == 1


async def test_stopped_pipeline_fails_readiness_but_health_stays_alive(
    start_health: StartHealth,
) -> None:
    async with start_health() as (svc, pipe):
        await _becomes_ready(svc)
        await pipe.running.shutdown()
        body = await _once(svc, 503)
        async with svc.http.get("/health") as alive:
            assert alive.status == 200
    assert str(_check(body, "services")["pipeline"]).startswith("unreachable")
    assert set(body["failing_checks"]) == {"openai_api", "queue", "services"}  # type: ignore[arg-type]
    assert _check(body, "queue")["message"].startswith("pipeline unreachable")  # type: ignore[union-attr]
    assert body["pilot"]["status"] == "error"  # type: ignore[index]
