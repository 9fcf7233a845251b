"""End-to-end smoke test (seed 002 §5): the three seed fixtures through the real services.

Telemetry and the pipeline API run as services; a `ptf-pipeline worker` process
does the processing; market tables and the tenant key are loaded with the
`ptf-pipeline` CLI. Flow: submit → worker → incidents → system health →
resolve → feedback → feedback stats, asserting every expectation of the seed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from ptf.common.v1 import common_pb2
from ptf.telemetry.v1 import telemetry_pb2, telemetry_pb2_grpc

from services.pipeline.service import make_definition
from services.pipeline.settings import PipelineSettings
from services.runtime.smoke_fixtures import SmokeFixture, expectation_failures, load_smoke_fixtures
from services.telemetry.service import DEFINITION as TELEMETRY
from tests.conftest import StartService
from tests.support.polling import eventually
from tests.support.services import ServiceHandle

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DATA = REPO / "services" / "pipeline" / "sample_data"
ADMIN = {"X-Admin-Key": "dev-admin-key"}

pytestmark = pytest.mark.slow


def _cli_env(config_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PTF_")}
    env.update({"BUILD_ID": "test", **config_env})
    return env


def _cli(env: dict[str, str], *args: str, command: str = "ptf-pipeline") -> str:
    """Run `ptf-pipeline ARGS` (or another of the venv's commands) as an operator would."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / command), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


class Stack:
    """The running services, the worker process and the smoke tenant's key."""

    def __init__(self, pipeline: ServiceHandle, telemetry: ServiceHandle, tenant: str, key: str):
        self.pipeline = pipeline
        self.telemetry = telemetry
        self.tenant = tenant
        self.key = key

    async def submit(self, fixture: SmokeFixture) -> dict[str, Any]:
        async with self.pipeline.http.post(
            f"/full-process?tenant_id={self.tenant}",
            json=fixture.extraction,
            headers={"X-API-Key": self.key},
        ) as response:
            body: dict[str, Any] = await response.json()
        assert response.status == 200, body
        return body

    async def admin_get(self, path: str, **params: str) -> Any:
        async with self.pipeline.http.get(
            path, params={"tenant_id": self.tenant, **params}, headers=ADMIN
        ) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def admin_post(self, path: str, body: dict[str, Any]) -> Any:
        async with self.pipeline.http.post(path, json=body, headers=ADMIN) as response:
            assert response.status == 200, await response.text()
            return await response.json()


@pytest.fixture
async def stack(
    start_service: StartService,
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> AsyncIterator[Stack]:
    async with start_service(TELEMETRY, PTF_METRICS_DIR=str(tmp_path)) as telemetry:
        settings = PipelineSettings(inprocess_workers=0)
        async with start_service(
            make_definition(settings), PTF_TELEMETRY_ADDR=telemetry.running.grpc_target
        ) as pipeline:
            env = _cli_env(
                {
                    "DATABASE_URL": database_url,
                    "REDIS_URL": redis_url,
                    "PTF_REDIS_PREFIX": redis_prefix,
                    "PTF_TELEMETRY_ADDR": telemetry.running.grpc_target,
                }
            )
            _cli(env, "load-market-prices", str(SAMPLE_DATA / "market_prices.sample.csv"))
            _cli(env, "load-tariffs", str(SAMPLE_DATA / "tariffs.sample.csv"))
            tenant = f"smoke-{uuid.uuid4().hex[:10]}"
            key = _cli(
                env,
                *("keys", "create", "--role", "tenant", "--tenant", tenant, "--operator", "smoke"),
                command="ptf-admin",
            ).strip()
            worker = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.pipeline",
                "worker",
                "--concurrency",
                "2",
                env=env,
                cwd=REPO,
                stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                yield Stack(pipeline, telemetry, tenant, key)
            finally:
                worker.send_signal(signal.SIGTERM)
                assert await worker.wait() == 0


def _assert_incident_matches(incident: dict[str, Any], expected: dict[str, Any]) -> None:
    for key in ("severity", "primary_flag", "action_hint"):
        assert incident[key] == expected[key], key
    for key, value in expected["mismatch_info"].items():
        assert incident["mismatch_info"][key] == value, key


async def _run_summary(stack: Stack, since: datetime) -> telemetry_pb2.RunSummary:
    start = Timestamp()
    start.FromDatetime(since)
    stub = telemetry_pb2_grpc.TelemetryServiceStub(stack.telemetry.service_channel)
    return await stub.GetRunSummary(
        telemetry_pb2.GetRunSummaryRequest(
            period=common_pb2.TimeWindow(start=start), tenant_id=stack.tenant
        )
    )


async def test_three_seed_fixtures_run_the_whole_loop(stack: Stack, pg: asyncpg.Pool) -> None:
    started = datetime.now(UTC)
    fixtures = {f.name: f for f in load_smoke_fixtures()}
    happy = fixtures["happy_path_invoice"]
    s2 = fixtures["s2_mismatch_invoice"]
    s1 = fixtures["s1_ocr_suspect_invoice"]

    # 1-3: extraction, validation, calculation and incidents through the worker process.
    results = {name: await stack.submit(f) for name, f in fixtures.items()}
    for name, fixture in fixtures.items():
        assert expectation_failures(results[name]["result"], fixture.expected) == [], name
    assert results[happy.name]["incident_id"] is None
    assert results[happy.name]["result"]["quality"]["grade"] == "OK"

    listed = await stack.admin_get("/admin/incidents")
    incidents = {i["incident_id"]: i for i in listed["incidents"]}
    assert len(incidents) == 2
    for fixture in (s2, s1):
        _assert_incident_matches(incidents[results[fixture.name]["incident_id"]], fixture.expected)
    assert incidents[results[s1.name]["incident_id"]]["mismatch_info"]["ratio"] == pytest.approx(
        58000 / 100000
    )

    # 4: system health snapshot from telemetry, once the outbox has delivered the events.
    async def delivered() -> telemetry_pb2.RunSummary | None:
        summary = await _run_summary(stack, started)
        return summary if summary.counts.total_invoices == 3 else None

    summary = await eventually(delivered, within=30)
    assert (summary.counts.incident_count, summary.counts.s1_count, summary.counts.s2_count) == (
        2,
        1,
        1,
    )
    assert summary.counts.ocr_suspect_count == 1
    assert summary.errors.total_5xx == 0
    health = await stack.admin_get("/admin/system-health")
    assert health["source"] == "telemetry"
    buckets = {b["label"]: b["count"] for b in health["mismatch_histogram"]["buckets"]}
    assert buckets == {"[0, 0.05)": 0, "[0.05, 0.2)": 1, "[0.2, 1)": 1, "[1, inf)": 0}
    assert health["primary_flag_distribution"] == {"INVOICE_TOTAL_MISMATCH": 2}
    assert health["action_class_distribution"] == {"VERIFY_INVOICE_LOGIC": 1, "VERIFY_OCR": 1}

    # 5: resolve both incidents; feedback on the S2 one.
    s2_id = results[s2.name]["incident_id"]
    resolved = await stack.admin_post(
        f"/admin/incidents/{s2_id}/resolve",
        {"resolution_reason": "supplier billed a late fee", "operator": "smoke"},
    )
    await stack.admin_post(
        f"/admin/incidents/{results[s1.name]['incident_id']}/resolve",
        {"resolution_reason": "rescanned the invoice", "operator": "smoke"},
    )
    with_feedback = await stack.admin_post(
        f"/admin/incidents/{s2_id}/feedback",
        {"hint_correct": True, "actual_root_cause": "INVOICE_LOGIC", "operator": "smoke"},
    )
    assert with_feedback["feedback_json"]["hint_correct"] is True
    assert with_feedback["feedback_json"]["actual_root_cause"] == "INVOICE_LOGIC"
    assert with_feedback["updated_at"] != resolved["updated_at"]

    # 6: feedback stats.
    stats = await stack.admin_get("/admin/feedback-stats")
    assert stats["feedback_coverage"] > 0
    assert (stats["resolved_count"], stats["feedback_count"]) == (2, 1)
    assert stats["hint_accuracy_rate"] == 1.0

    async def feedback_counted() -> telemetry_pb2.RunSummary | None:
        current = await _run_summary(stack, started)
        return current if current.counts.feedback_count == 1 else None

    final = await eventually(feedback_counted, within=30)
    assert final.counts.resolved_count == 2
    assert final.rates.feedback_coverage == 0.5

    # Every event of the tenant reached telemetry valid: the outbox's, and the HTTP request
    # outcomes, which go to telemetry directly.
    async def settled() -> list[asyncpg.Record] | None:
        rows = await pg.fetch(
            "SELECT event_type, rejected, delivered_at FROM pipeline_outbox WHERE tenant_id = $1",
            stack.tenant,
        )
        requests = await pg.fetchval(
            "SELECT count(*) FROM telemetry_events"
            " WHERE tenant_id = $1 AND event_type = 'HTTP_REQUEST'",
            stack.tenant,
        )
        delivered = all(r["delivered_at"] is not None for r in rows)
        return rows if delivered and requests > 0 else None

    events = await eventually(settled, within=30)
    assert [r["event_type"] for r in events if r["rejected"]] == []
