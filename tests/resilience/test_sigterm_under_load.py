"""Fault: SIGTERM, as Kubernetes sends it on a rollout, to each service while it is under load."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from ptf.gate.v1 import gate_pb2, gate_pb2_grpc
from ptf.health.v1 import health_pb2, health_pb2_grpc
from ptf.pipeline.v1 import pipeline_pb2, pipeline_pb2_grpc
from ptf.telemetry.v1 import telemetry_pb2, telemetry_pb2_grpc

from services.runtime.keys.channels import keyed_channel
from tests.pipeline.service_support import document, load_sample_tables, new_tenant
from tests.resilience.processes import (
    DEV_ADMIN_KEY,
    DEV_SERVICE_KEY,
    NOWHERE,
    REPO,
    LoadRun,
    Request,
    ServiceProcess,
    WorkerProcess,
    process_env,
    record_figures,
    stop_all,
    submit_all,
)
from tests.support.polling import eventually

pytestmark = pytest.mark.slow

SERVICES = ("gate", "telemetry", "pipeline", "health")
WARM_UP_REQUESTS = 100  # answered before the signal, so the load is really running
RPC_TIMEOUT_SECONDS = 30.0
WORKER_JOBS = 200  # submitted while a worker is stopped
WARM_UP_JOBS = 20  # finished by the worker before its SIGTERM, so it is really busy


def termination_grace_seconds(service: str) -> float:
    """The pod's terminationGracePeriodSeconds: after it, Kubernetes sends SIGKILL."""
    manifest = (REPO / "deploy" / "k8s" / "base" / f"{service}.yaml").read_text()
    found = re.search(r"terminationGracePeriodSeconds:\s*(\d+)", manifest)
    assert found is not None, f"{service}.yaml sets no terminationGracePeriodSeconds"
    return float(found.group(1))


def _http(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    headers: dict[str, str],
    accepted: tuple[int, ...] = (200,),
    body: Callable[[], object] | None = None,
) -> Request:
    """One HTTP request of the load: 'ok' when answered with an accepted status."""

    async def request() -> str:
        payload = body() if body is not None else None
        async with http.request(method, path, headers=headers, json=payload) as response:
            await response.read()
            return "ok" if response.status in accepted else f"http:{response.status}"

    return request


def _rpc(call: Callable[[], Awaitable[object]]) -> Request:
    """One gRPC call of the load: 'ok' when it returns (a failed call raises)."""

    async def request() -> str:
        await call()
        return "ok"

    return request


async def _requests_of(
    service: ServiceProcess, stack: AsyncExitStack, pg: asyncpg.Pool, http: aiohttp.ClientSession
) -> list[Request]:
    """A read or write over each transport, as the service's clients send them."""
    target = service.grpc_target
    admin = await stack.enter_async_context(
        keyed_channel(target, (("x-admin-key", DEV_ADMIN_KEY),))
    )
    keyed = await stack.enter_async_context(
        keyed_channel(target, (("x-api-key", DEV_SERVICE_KEY),))
    )
    timeout = RPC_TIMEOUT_SECONDS
    if service.name == "gate":
        gate = gate_pb2_grpc.GateServiceStub(admin)
        return [
            _rpc(lambda: gate.ListAudit(gate_pb2.ListAuditRequest(limit=5), timeout=timeout)),
            _http(http, "GET", "/health", {}),
        ]
    if service.name == "telemetry":
        telemetry = telemetry_pb2_grpc.TelemetryServiceStub(keyed)
        return [
            _rpc(
                lambda: telemetry.GetRunSummary(
                    telemetry_pb2.GetRunSummaryRequest(), timeout=timeout
                )
            ),
            _http(http, "GET", "/run-summary", {"X-API-Key": DEV_SERVICE_KEY}),
        ]
    if service.name == "pipeline":
        tenant = await new_tenant(pg, "sigterm")
        pipeline = pipeline_pb2_grpc.PipelineServiceStub(admin)
        return [
            _rpc(
                lambda: pipeline.ListIncidents(
                    pipeline_pb2.ListIncidentsRequest(tenant_id=tenant.tenant_id, limit=5),
                    timeout=timeout,
                )
            ),
            _http(
                http,
                "POST",
                f"/full-process?tenant_id={tenant.tenant_id}&async=true",
                tenant.headers,
                accepted=(200, 202),
                body=document,
            ),
        ]
    health = health_pb2_grpc.HealthServiceStub(keyed)
    # Its dependencies are not running: readiness answers not-ready (503), which is an answer.
    return [
        _rpc(lambda: health.Ready(health_pb2.ReadyRequest(), timeout=timeout)),
        _http(http, "GET", "/health/ready", {}, accepted=(200, 503)),
    ]


@pytest.fixture
async def service(
    request: pytest.FixtureRequest,
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> AsyncIterator[ServiceProcess]:
    """The service as a process; the services it calls are not started (their calls fail
    fast), so what is measured is this process's own shutdown."""
    env = process_env(
        database_url,
        redis_url,
        redis_prefix,
        tmp_path,
        PTF_TELEMETRY_ADDR=NOWHERE,
        PTF_PIPELINE_ADDR=NOWHERE,
        PTF_HEALTH_ADDR=NOWHERE,
        PTF_GATE_ADDR=NOWHERE,
    )
    process = ServiceProcess(request.param, env, tmp_path)
    try:
        await process.start()
        yield process
    finally:
        await stop_all([process])


@pytest.mark.parametrize("service", SERVICES, indirect=True)
async def test_sigterm_under_load_completes_accepted_requests_and_exits_in_grace(
    service: ServiceProcess, pg: asyncpg.Pool, tmp_path: Path
) -> None:
    """Fault: SIGTERM while 8 clients send requests back to back (a gRPC call and an HTTP
    request of the service in turn); the clients issue nothing after the signal.

    Expected: every request issued before the signal gets its normal answer (no
    connection error, no UNAVAILABLE, no 5xx), and the process exits 0 before the
    pod's terminationGracePeriodSeconds (30 s) would have it SIGKILLed.

    Figures (tmp_path/figures.json): requests before the signal, requests in flight at
    the signal, outcomes by kind (errors seen), exit code and seconds to exit.
    """
    grace = termination_grace_seconds(service.name)
    run = LoadRun()
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession(service.http_base))
        load = asyncio.create_task(run.drive(await _requests_of(service, stack, pg, http)))

        async def warmed_up() -> bool:
            return load.done() or run.answered >= WARM_UP_REQUESTS

        await eventually(warmed_up, within=60)
        run.stop()
        code, seconds = await service.terminate(within=grace)
        await load
    errors = {kind: n for kind, n in run.outcomes.items() if kind != "ok"}
    record_figures(
        tmp_path / "figures.json",
        {
            "service": service.name,
            "requests_before_signal": run.issued,
            "in_flight_at_signal": run.in_flight_at_stop,
            "outcomes": dict(run.outcomes),
            "errors_seen": sum(errors.values()),
            "exit_code": code,
            "seconds_to_exit": round(seconds, 2),
            "grace_seconds": grace,
        },
    )
    assert run.in_flight_at_stop >= 1, "nothing was in flight at the signal"
    assert errors == {}
    assert code == 0


async def test_sigterm_to_a_busy_worker_finishes_its_jobs_and_exits_in_grace(
    database_url: str, redis_url: str, redis_prefix: str, pg: asyncpg.Pool, tmp_path: Path
) -> None:
    """Fault: SIGTERM to a `ptf-pipeline worker` process (2 loops) while 200 invoices
    stream in, once it has finished 20 jobs and holds one; a second worker runs on.

    Expected: the worker stops taking messages, commits every job it holds (none is
    left RUNNING under its lease for another worker to reclaim after the visibility
    timeout), exits 0 within its pod's terminationGracePeriodSeconds (45 s), and the
    other worker finishes the backlog: every invoice DONE.

    Figures (tmp_path/figures.json): invoices, jobs the worker had finished and held at
    the signal, jobs left RUNNING under its lease, exit code and seconds to exit.
    """
    grace = termination_grace_seconds("pipeline-worker")
    env = process_env(database_url, redis_url, redis_prefix, tmp_path, PTF_TELEMETRY_ADDR=NOWHERE)
    pipeline = ServiceProcess("pipeline", {**env, "PTF_PIPELINE_INPROCESS_WORKERS": "0"}, tmp_path)
    stopping = WorkerProcess(env, tmp_path, label="stopping")
    other = WorkerProcess(env, tmp_path, label="other")
    try:
        await pipeline.start()
        await load_sample_tables(pg)
        tenant = await new_tenant(pg, "worker-sigterm")
        await asyncio.gather(stopping.start(), other.start())
        owner = f"%:{stopping.pid}:%"

        async def holding() -> asyncpg.Record | None:
            row = await pg.fetchrow(
                "SELECT count(*) FILTER (WHERE state = 'RUNNING') AS held,"
                " count(*) FILTER (WHERE state = 'DONE') AS finished"
                " FROM pipeline_jobs WHERE tenant_id = $1 AND"
                " coalesce(lease_owner, finished_by) LIKE $2",
                tenant.tenant_id,
                owner,
            )
            busy = row is not None and row["held"] and row["finished"] >= WARM_UP_JOBS
            return row if busy else None

        documents = [document() for _ in range(WORKER_JOBS)]
        async with aiohttp.ClientSession(pipeline.http_base) as http:
            submitting = asyncio.create_task(
                submit_all(http, tenant.tenant_id, tenant.headers, documents)
            )
            at_signal = await eventually(holding, within=60, interval=0.005)
            assert at_signal is not None
            code, seconds = await stopping.terminate(within=grace)
            await submitting
        left_running = await pg.fetchval(
            "SELECT count(*) FROM pipeline_jobs WHERE tenant_id = $1 AND state = 'RUNNING'"
            " AND lease_owner LIKE $2",
            tenant.tenant_id,
            owner,
        )

        async def all_done() -> bool:
            done = await pg.fetchval(
                "SELECT count(*) FROM pipeline_jobs WHERE tenant_id = $1 AND state = 'DONE'",
                tenant.tenant_id,
            )
            return bool(done == WORKER_JOBS)

        await eventually(all_done, within=60, interval=0.1)
    finally:
        await stop_all([stopping, other, pipeline])
    record_figures(
        tmp_path / "figures.json",
        {
            "invoices": WORKER_JOBS,
            "jobs_finished_by_worker_before_signal": at_signal["finished"],
            "jobs_held_at_signal": at_signal["held"],
            "jobs_left_running_under_its_lease": left_running,
            "exit_code": code,
            "seconds_to_exit": round(seconds, 2),
            "grace_seconds": grace,
        },
    )
    assert left_running == 0
    assert code == 0
