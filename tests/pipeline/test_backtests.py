"""Backtests (SPEC §3.7, §7): start → token → confirm → a worker replays → result in parts.

On the real pipeline (HTTP on loopback, embedded PostgreSQL/Redis); stored
extractions are real submissions.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from ptf.pipeline.v1 import pipeline_pb2, pipeline_pb2_grpc

from services.pipeline.domain import evaluate_extraction
from services.pipeline.domain.extraction import parse_extraction
from services.pipeline.market import MarketStore
from services.pipeline.service import make_definition
from services.runtime.config import Thresholds
from services.runtime.config.loading import apply_threshold_overrides
from services.runtime.config.operations import BacktestSettings
from services.runtime.devservers import EmbeddedRedis
from tests.conftest import StartService
from tests.pipeline.service_support import (
    ADMIN,
    NO_TELEMETRY,
    Tenant,
    document,
    fast_settings,
    field,
    load_sample_tables,
    new_tenant,
    s2_document,
    submit,
)
from tests.support.services import ServiceHandle
from tests.support.stores import DATA_ROOT

# 10000 kWh × 3.5 × 1.2 = 42000: totals 15 % and 19 % off are S2 under SEVERE_RATIO 0.20
# and S1 under 0.10.
LOWER_SEVERE = {"Mismatch": {"SEVERE_RATIO": 0.10}}


@pytest.fixture
async def pipeline(start_service: StartService, pg: asyncpg.Pool) -> AsyncIterator[ServiceHandle]:
    settings = fast_settings(
        backtest=BacktestSettings(batch_size=3, poll_interval_seconds=0.1, max_page_limit=50)
    )
    async with start_service(make_definition(settings), PTF_TELEMETRY_ADDR=NO_TELEMETRY) as svc:
        await load_sample_tables(pg)
        yield svc


async def planted(svc: ServiceHandle, pg: asyncpg.Pool) -> Tenant:
    """A tenant with clean, S2 and near-S1 invoices of 2026-01."""
    tenant = await new_tenant(pg, "bt")
    for total in (42000, 50000, 48300, 49980, 42000, 50000, 48500):
        await submit(svc, tenant, document(invoice_total_with_vat_tl=field(total)))
    return tenant


def backtest_params(tenant: Tenant, thresholds: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "tenant_id": tenant.tenant_id,
        "since": "2026-01",
        "until": "2026-01",
        "thresholds": LOWER_SEVERE if thresholds is None else thresholds,
    }


async def _call(
    svc: ServiceHandle, method: str, path: str, body: Any = None, headers: Any = None
) -> tuple[int, Any]:
    async with svc.http.request(
        method, path, json=body, headers=ADMIN if headers is None else headers
    ) as response:
        return response.status, await response.json()


async def _start(svc: ServiceHandle, params: dict[str, Any]) -> dict[str, Any]:
    status, body = await _call(svc, "POST", "/admin/backtests", params)
    assert status == 200, body
    return body


async def queue_backtest(svc: ServiceHandle, params: dict[str, Any]) -> str:
    """Start and confirm; the id of the queued backtest."""
    started = await _start(svc, params)
    status, queued = await _call(
        svc,
        "POST",
        "/admin/backtests/confirm",
        {"confirmation_token": started["confirmation_token"]},
    )
    assert status == 202, queued
    backtest_id: str = queued["backtest_id"]
    return backtest_id


async def run_backtest(svc: ServiceHandle, params: dict[str, Any]) -> str:
    """Start, confirm and wait until DONE; the backtest id."""
    backtest_id = await queue_backtest(svc, params)
    for _ in range(600):
        status, body = await _call(svc, "GET", f"/admin/backtests/{backtest_id}")
        assert status == 200, body
        if body["state"] in ("DONE", "FAILED"):
            assert body["state"] == "DONE", body
            return backtest_id
        await asyncio.sleep(0.1)
    raise AssertionError("backtest did not finish")


async def _all_diffs(svc: ServiceHandle, backtest_id: str, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = f"part=diffs&limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        status, page = await _call(svc, "GET", f"/admin/backtests/{backtest_id}/result?{query}")
        assert status == 200, page
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def _direct_s1(pg: asyncpg.Pool, tenant: Tenant, thresholds: Thresholds) -> int:
    """S1 incidents of the tenant's stored extractions, recomputed with the domain directly."""
    market = MarketStore(pg)
    count = 0
    for row in await pg.fetch(
        "SELECT document FROM pipeline_invoices WHERE tenant_id = $1", tenant.tenant_id
    ):
        extraction = parse_extraction(json.loads(row["document"]))
        prices, tariffs = await market.lookup(extraction.invoice_period, extraction.tariff_group)
        result = evaluate_extraction(extraction, thresholds, prices, tariffs)
        count += bool(result.incident and result.incident.severity.value == "S1")
    return count


async def test_lowering_severe_ratio_reports_the_s1_a_direct_recomputation_finds(
    pipeline: ServiceHandle, pg: asyncpg.Pool
) -> None:
    tenant = await planted(pipeline, pg)
    backtest_id = await run_backtest(pipeline, backtest_params(tenant))
    status, metrics = await _call(pipeline, "GET", f"/admin/backtests/{backtest_id}/result")
    assert status == 200, metrics
    base = pipeline.config.thresholds
    candidate, problems = apply_threshold_overrides(base, LOWER_SEVERE, "test")
    assert not problems
    assert metrics["invoices"] == 7
    assert metrics["old"]["severity"]["S1"]["count"] == await _direct_s1(pg, tenant, base)
    assert metrics["new"]["severity"]["S1"]["count"] == await _direct_s1(pg, tenant, candidate)
    assert metrics["new"]["severity"]["S1"]["count"] > metrics["old"]["severity"]["S1"]["count"]
    assert metrics["result_hash"].startswith("sha256:")


async def test_diff_pages_concatenate_to_the_whole_set_while_another_backtest_runs(
    pipeline: ServiceHandle, pg: asyncpg.Pool
) -> None:
    tenant = await planted(pipeline, pg)
    backtest_id = await run_backtest(pipeline, backtest_params(tenant))
    other = await _start(pipeline, backtest_params(tenant, {"Mismatch": {"SEVERE_RATIO": 0.12}}))
    await _call(
        pipeline,
        "POST",
        "/admin/backtests/confirm",
        {"confirmation_token": other["confirmation_token"]},
    )
    paged = await _all_diffs(pipeline, backtest_id, 1)
    whole = await _all_diffs(pipeline, backtest_id, 50)
    ids = [item["invoice_id"] for item in paged]
    assert paged == whole
    assert len(ids) == len(set(ids))
    stored = await pg.fetchval(
        "SELECT count(*) FROM pipeline_backtest_diffs WHERE backtest_id = $1::uuid", backtest_id
    )
    assert len(paged) == stored > 0


async def test_download_streams_the_metrics_and_every_diff_as_gzip(
    pipeline: ServiceHandle, pg: asyncpg.Pool
) -> None:
    tenant = await planted(pipeline, pg)
    backtest_id = await run_backtest(pipeline, backtest_params(tenant))
    async with pipeline.http.get(
        f"/admin/backtests/{backtest_id}/result/download", headers=ADMIN
    ) as response:
        assert response.status == 200
        lines = gzip.decompress(await response.read()).decode().splitlines()
    head, *diffs = [json.loads(line) for line in lines]
    assert head["metrics"]["invoices"] == 7
    assert [d["diff"] for d in diffs] == await _all_diffs(pipeline, backtest_id, 50)


async def test_a_confirmation_token_replayed_is_token_used(
    pipeline: ServiceHandle, pg: asyncpg.Pool
) -> None:
    tenant = await new_tenant(pg, "bt")
    token = (await _start(pipeline, backtest_params(tenant)))["confirmation_token"]
    body = {"confirmation_token": token}
    assert (await _call(pipeline, "POST", "/admin/backtests/confirm", body))[0] == 202
    status, error = await _call(pipeline, "POST", "/admin/backtests/confirm", body)
    assert (status, error["error_code"]) == (409, "TOKEN_USED")


async def test_an_unknown_token_is_token_invalid(pipeline: ServiceHandle) -> None:
    body = {"confirmation_token": "0" * 64}
    status, error = await _call(pipeline, "POST", "/admin/backtests/confirm", body)
    assert (status, error["error_code"]) == (409, "TOKEN_INVALID")


async def test_a_token_confirmed_with_other_parameters_is_token_params_mismatch(
    pipeline: ServiceHandle, pg: asyncpg.Pool
) -> None:
    tenant = await new_tenant(pg, "bt")
    token = (await _start(pipeline, backtest_params(tenant)))["confirmation_token"]
    other = backtest_params(tenant, {"Mismatch": {"SEVERE_RATIO": 0.15}})
    body = {"confirmation_token": token, "params": other}
    status, error = await _call(pipeline, "POST", "/admin/backtests/confirm", body)
    assert (status, error["error_code"]) == (409, "TOKEN_PARAMS_MISMATCH")


async def test_a_token_past_its_ttl_is_token_expired(
    start_service: StartService, pg: asyncpg.Pool
) -> None:
    settings = fast_settings(backtest=replace(BacktestSettings(), token_ttl_seconds=0.2))
    async with start_service(make_definition(settings), PTF_TELEMETRY_ADDR=NO_TELEMETRY) as svc:
        tenant = await new_tenant(pg, "bt")
        token = (await _start(svc, backtest_params(tenant)))["confirmation_token"]
        await asyncio.sleep(1.0)
        body = {"confirmation_token": token}
        status, error = await _call(svc, "POST", "/admin/backtests/confirm", body)
    assert (status, error["error_code"]) == (409, "TOKEN_EXPIRED")


async def test_invalid_candidate_thresholds_are_422_listing_every_violation(
    pipeline: ServiceHandle, pg: asyncpg.Pool
) -> None:
    tenant = await new_tenant(pg, "bt")
    bad = {"Mismatch": {"SEVERE_RATIO": 0.01, "RATIO": -1}, "Nope": {"X": 1}}
    status, error = await _call(pipeline, "POST", "/admin/backtests", backtest_params(tenant, bad))
    assert (status, error["error_code"]) == (422, "INVALID_THRESHOLDS")
    listed = error["message"].split(": ", 1)[1].split("; ")
    assert any("Nope" in v for v in listed)
    assert any("SEVERE_RATIO" in v or "RATIO" in v for v in listed)
    assert len(listed) >= 3


@pytest.mark.parametrize(
    "change",
    [
        {"since": "2026-13"},
        {"since": "2026-02", "until": "2026-01"},
        {"until": 202601},
        {"thresholds": []},
        {"tenant_id": "x" * 500},
    ],
)
async def test_malformed_or_out_of_range_start_requests_are_400(
    pipeline: ServiceHandle, pg: asyncpg.Pool, change: dict[str, Any]
) -> None:
    tenant = await new_tenant(pg, "bt")
    status, error = await _call(
        pipeline, "POST", "/admin/backtests", {**backtest_params(tenant), **change}
    )
    assert status == 400, error


async def test_a_forged_or_edited_cursor_is_400(pipeline: ServiceHandle, pg: asyncpg.Pool) -> None:
    tenant = await planted(pipeline, pg)
    backtest_id = await run_backtest(pipeline, backtest_params(tenant))
    _, page = await _call(
        pipeline, "GET", f"/admin/backtests/{backtest_id}/result?part=diffs&limit=1"
    )
    cursor = page["next_cursor"]
    assert cursor
    edited = cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")
    for bad in (edited, "forged", "x" * 600):
        status, error = await _call(
            pipeline, "GET", f"/admin/backtests/{backtest_id}/result?part=diffs&cursor={bad}"
        )
        assert (status, error["error_code"]) == (400, "INVALID_CURSOR")


async def test_a_limit_over_the_maximum_is_capped_and_below_one_is_400(
    pipeline: ServiceHandle, pg: asyncpg.Pool
) -> None:
    tenant = await planted(pipeline, pg)
    backtest_id = await run_backtest(pipeline, backtest_params(tenant))
    path = f"/admin/backtests/{backtest_id}/result?part=diffs&limit="
    status, page = await _call(pipeline, "GET", path + "100000")
    assert (status, page["truncated"]) == (200, True)
    for bad in ("0", "-3", "ten"):
        status, error = await _call(pipeline, "GET", path + bad)
        assert (status, error["error_code"]) == (400, "INVALID_LIMIT")


async def test_an_unknown_or_malformed_backtest_id_is_404_or_400(pipeline: ServiceHandle) -> None:
    status, error = await _call(
        pipeline, "GET", "/admin/backtests/00000000-0000-0000-0000-000000000000"
    )
    assert (status, error["error_code"]) == (404, "BACKTEST_NOT_FOUND")
    status, error = await _call(pipeline, "GET", "/admin/backtests/nope/result")
    assert (status, error["error_code"]) == (400, "INVALID_BACKTEST_ID")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/admin/backtests"),
        ("POST", "/admin/backtests/confirm"),
        ("GET", "/admin/backtests/00000000-0000-0000-0000-000000000000"),
        ("GET", "/admin/backtests/00000000-0000-0000-0000-000000000000/result"),
        ("GET", "/admin/backtests/00000000-0000-0000-0000-000000000000/result/download"),
    ],
)
async def test_backtest_routes_refuse_a_missing_or_tenant_key(
    pipeline: ServiceHandle, pg: asyncpg.Pool, method: str, path: str
) -> None:
    tenant = await new_tenant(pg, "bt")
    assert (await _call(pipeline, method, path, {}, headers={}))[0] == 401
    assert (await _call(pipeline, method, path, backtest_params(tenant), headers=tenant.headers))[
        0
    ] == 403


async def test_a_result_before_the_backtest_is_done_is_409(
    pipeline: ServiceHandle, pg: asyncpg.Pool
) -> None:
    tenant = await new_tenant(pg, "bt")
    await submit(pipeline, tenant, s2_document())
    started = await _start(pipeline, backtest_params(tenant))
    await pg.execute(
        "UPDATE pipeline_backtests SET state = 'RUNNING', lease_expires_at = 'infinity',"
        " lease_owner = 'held' WHERE params_hash = $1",
        started["params_hash"],
    )
    backtest_id = await pg.fetchval(
        "SELECT backtest_id::text FROM pipeline_backtests WHERE params_hash = $1",
        started["params_hash"],
    )
    status, error = await _call(pipeline, "GET", f"/admin/backtests/{backtest_id}/result")
    assert (status, error["error_code"]) == (409, "BACKTEST_NOT_DONE")


async def test_the_lifecycle_over_grpc_ends_in_the_metrics_the_service_key_reads(
    pipeline: ServiceHandle, pg: asyncpg.Pool
) -> None:
    tenant = await planted(pipeline, pg)
    admin = pipeline_pb2_grpc.PipelineServiceStub(pipeline.admin_channel)
    params = pipeline_pb2.StartBacktestRequest(
        tenant_id=tenant.tenant_id,
        period_start="2026-01",
        period_end="2026-01",
        candidate_thresholds_json=json.dumps(LOWER_SEVERE),
    )
    started = await admin.StartBacktest(params)
    assert started.params_hash == (await _start(pipeline, backtest_params(tenant)))["params_hash"]
    queued = await admin.ConfirmBacktest(
        pipeline_pb2.ConfirmBacktestRequest(token=started.token.token, params=params)
    )
    assert queued.state == pipeline_pb2.JOB_STATE_QUEUED
    service = pipeline_pb2_grpc.PipelineServiceStub(pipeline.service_channel)
    request = pipeline_pb2.GetBacktestResultRequest(backtest_id=queued.backtest_id, limit=2)
    for _ in range(600):
        reply = await service.GetBacktestResult(request)
        if reply.job.state == pipeline_pb2.JOB_STATE_DONE:
            break
        await asyncio.sleep(0.1)
    metrics = json.loads(reply.metrics_json)
    assert (reply.job.replayed, reply.job.progress, metrics["invoices"]) == (7, 1.0, 7)
    assert len(reply.diffs_json) == 2
    assert reply.next_cursor
    _, http_metrics = await _call(pipeline, "GET", f"/admin/backtests/{queued.backtest_id}/result")
    assert http_metrics["result_hash"] == reply.result_hash


async def test_a_replayed_token_over_grpc_is_failed_precondition_token_used(
    pipeline: ServiceHandle, pg: asyncpg.Pool
) -> None:
    tenant = await new_tenant(pg, "bt")
    admin = pipeline_pb2_grpc.PipelineServiceStub(pipeline.admin_channel)
    started = await admin.StartBacktest(
        pipeline_pb2.StartBacktestRequest(
            tenant_id=tenant.tenant_id, period_start="2026-01", period_end="2026-02"
        )
    )
    confirm = pipeline_pb2.ConfirmBacktestRequest(token=started.token.token)
    await admin.ConfirmBacktest(confirm)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await admin.ConfirmBacktest(confirm)
    assert "TOKEN_USED" in (caught.value.details() or "")


@pytest.mark.parametrize(
    "request_fields",
    [
        {"candidate_thresholds_json": "[1, 2]"},
        {"candidate_thresholds_json": "{not json"},
        {"period_start": "2026-00"},
        {"tenant_id": "UPPER"},
    ],
)
async def test_malformed_start_rpcs_are_invalid_argument(
    pipeline: ServiceHandle, pg: asyncpg.Pool, request_fields: dict[str, str]
) -> None:
    tenant = await new_tenant(pg, "bt")
    fields = {
        "tenant_id": tenant.tenant_id,
        "period_start": "2026-01",
        "period_end": "2026-01",
        **request_fields,
    }
    admin = pipeline_pb2_grpc.PipelineServiceStub(pipeline.admin_channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await admin.StartBacktest(pipeline_pb2.StartBacktestRequest(**fields))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_watch_backtest_streams_progress_until_done(
    pipeline: ServiceHandle, pg: asyncpg.Pool
) -> None:
    tenant = await planted(pipeline, pg)
    started = await _start(pipeline, backtest_params(tenant))
    status, queued = await _call(
        pipeline,
        "POST",
        "/admin/backtests/confirm",
        {"confirmation_token": started["confirmation_token"]},
    )
    assert status == 202
    stub = pipeline_pb2_grpc.PipelineServiceStub(pipeline.service_channel)
    request = pipeline_pb2.WatchBacktestRequest(backtest_id=queued["backtest_id"])
    seen = [job async for job in stub.WatchBacktest(request)]
    assert seen[-1].state == pipeline_pb2.JOB_STATE_DONE
    assert (seen[-1].replayed, seen[-1].total) == (7, 7)
    replayed = [job.replayed for job in seen]
    assert replayed == sorted(replayed)


async def test_watch_backtest_of_an_unknown_id_is_not_found(pipeline: ServiceHandle) -> None:
    stub = pipeline_pb2_grpc.PipelineServiceStub(pipeline.admin_channel)
    request = pipeline_pb2.WatchBacktestRequest(backtest_id=str(uuid.uuid4()))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stub.WatchBacktest(request):
            pass
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_confirming_while_the_token_store_is_down_is_503_token_store_unavailable(
    start_service: StartService, pg: asyncpg.Pool
) -> None:
    """Fault: Redis (the token store) stops between start and confirm: the consume fails
    closed, nothing is queued."""
    DATA_ROOT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=DATA_ROOT, prefix="bt-redis-") as folder:
        server = EmbeddedRedis(Path(folder))
        url = await asyncio.to_thread(server.start)
        try:
            async with start_service(
                make_definition(fast_settings()), REDIS_URL=url, PTF_TELEMETRY_ADDR=NO_TELEMETRY
            ) as svc:
                tenant = await new_tenant(pg, "bt")
                started = await _start(svc, backtest_params(tenant))
                await asyncio.to_thread(server.stop)
                body = {"confirmation_token": started["confirmation_token"]}
                status, error = await _call(svc, "POST", "/admin/backtests/confirm", body)
        finally:
            await asyncio.to_thread(server.stop)
    assert (status, error["error_code"]) == (503, "TOKEN_STORE_UNAVAILABLE")
    queued = await pg.fetchval(
        "SELECT state FROM pipeline_backtests WHERE params_hash = $1", started["params_hash"]
    )
    assert queued == "PENDING"
