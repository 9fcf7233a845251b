"""Support for the store and restart fault tests (issue 12 items 3-5): own stores, a stack.

A test that stops PostgreSQL or Redis must not stop the suite's shared
servers, so `own_stores()` starts a private pair it may stop and restart
(Redis keeps nothing on disk: it comes back empty). `service_stack()` runs
the four services and a `ptf-pipeline worker` as subprocesses on those
stores, with the process helpers of `tests.resilience.processes`. `Load`
and `ReadinessProbe` drive and watch the stack while a store is down;
`Tally` counts what they saw for the test's figures.
"""

from __future__ import annotations

import asyncio
import json
import signal
import tempfile
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import grpc
from ptf.common.v1 import common_pb2
from ptf.gate.v1 import gate_pb2, gate_pb2_grpc
from ptf.pipeline.v1 import pipeline_pb2, pipeline_pb2_grpc
from ptf.telemetry.v1 import telemetry_pb2, telemetry_pb2_grpc

from services.runtime.devservers import EmbeddedPostgres, EmbeddedRedis
from services.runtime.keys.channels import keyed_channel
from tests.gate.service_support import new_release, override_result, preflight_request, verdict
from tests.pipeline.service_support import document, s2_document
from tests.resilience.processes import (
    ServiceProcess,
    WorkerProcess,
    process_env,
    stop_all,
)
from tests.support.stores import DATA_ROOT

SERVICES = ("gate", "telemetry", "pipeline", "health")
# The development keys every service seeds in ENV=development (README, SPEC §9).
TENANT_KEY = {"X-API-Key": "dev-tenant-key"}
ADMIN_KEY = {"X-Admin-Key": "dev-admin-key"}
TENANT_METADATA = (("x-api-key", "dev-tenant-key"),)
ADMIN_METADATA = (("x-admin-key", "dev-admin-key"),)
SERVICE_METADATA = (("x-api-key", "dev-service-key"),)
# Short queue timings so a lost or abandoned job is re-sent within a test, not after 30 s.
FAST_QUEUE = {
    "PTF_QUEUE_VISIBILITY_TIMEOUT_SECONDS": "3",
    "PTF_QUEUE_BACKOFF_BASE_SECONDS": "0.1",
    "PTF_QUEUE_BACKOFF_MAX_SECONDS": "0.5",
    "PTF_PIPELINE_EXTRACTOR_TIMEOUT_SECONDS": "1.5",
    "PTF_PIPELINE_SYNC_TIMEOUT_SECONDS": "5",
}


@dataclass
class OwnStores:
    """A private PostgreSQL and Redis that a test may stop and start again."""

    postgres: EmbeddedPostgres
    redis: EmbeddedRedis

    @property
    def database_url(self) -> str:
        return self.postgres.url

    @property
    def redis_url(self) -> str:
        return self.redis.url

    async def stop_postgres(self, mode: str = "fast") -> None:
        """`fast`: PostgreSQL's fast shutdown (SIGINT: open transactions roll back).
        `immediate`: SIGQUIT, what a crash looks like to clients; it recovers from its
        WAL on the next start (committed work kept, the rest gone)."""
        process = self.postgres.process
        if mode == "immediate" and process is not None and process.poll() is None:
            process.send_signal(signal.SIGQUIT)
            await asyncio.to_thread(process.wait, 30)
        await asyncio.to_thread(self.postgres.stop)

    async def start_postgres(self) -> None:
        await asyncio.to_thread(self.postgres.start)

    async def stop_redis(self) -> None:
        await asyncio.to_thread(self.redis.stop)

    async def start_redis(self) -> None:
        await asyncio.to_thread(self.redis.start)


@asynccontextmanager
async def own_stores() -> AsyncIterator[OwnStores]:
    """Start a private PostgreSQL and Redis (in a folder their unprivileged user can reach)."""
    DATA_ROOT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=DATA_ROOT, prefix="test-resilience-") as folder:
        stores = OwnStores(
            EmbeddedPostgres(Path(folder) / "pg"), EmbeddedRedis(Path(folder) / "redis")
        )
        try:
            await asyncio.gather(stores.start_postgres(), stores.start_redis())
            yield stores
        finally:
            await asyncio.gather(stores.stop_postgres(), stores.stop_redis())


def stack_env(stores: OwnStores, **extra: str) -> dict[str, str]:
    """A service process's environment on this test's own stores (a Redis of its own)."""
    env = process_env(stores.database_url, stores.redis_url, "ptf")
    env.update(extra)
    return env


@dataclass
class Stack:
    """The four services and one worker process, all on one pair of stores."""

    services: dict[str, ServiceProcess]
    worker: WorkerProcess
    http: dict[str, aiohttp.ClientSession] = field(default_factory=dict)


@asynccontextmanager
async def service_stack(stores: OwnStores, logs: Path, **extra_env: str) -> AsyncIterator[Stack]:
    """gate, telemetry, pipeline (no in-process workers), health and a worker process.

    Ports are chosen first so each service knows the others' addresses; all
    start at once (migrations run under an advisory lock). On a clean exit
    every process must stop with 0 on SIGTERM.
    """
    services = {name: ServiceProcess(name, {}, logs) for name in SERVICES}
    env = stack_env(
        stores,
        **{f"PTF_{name.upper()}_ADDR": p.grpc_target for name, p in services.items()},
        **FAST_QUEUE,
        PTF_PIPELINE_INPROCESS_WORKERS="0",
        PTF_METRICS_DIR=str(logs),
        **extra_env,
    )
    for process in services.values():
        process.env = env
    stack = Stack(services, WorkerProcess(env, logs))
    processes: list[ServiceProcess | WorkerProcess] = [*services.values(), stack.worker]
    async with AsyncExitStack() as exit_stack:
        exit_stack.push_async_callback(stop_all, processes)
        await asyncio.gather(*(p.start() for p in processes))
        for name, process in services.items():
            session = aiohttp.ClientSession(
                base_url=process.http_base, timeout=aiohttp.ClientTimeout(total=30)
            )
            exit_stack.push_async_callback(session.close)
            stack.http[name] = session
        yield stack
        codes = {p.name: (await p.terminate(within=30))[0] for p in services.values()}
        codes["worker"] = await stack.worker.stop()
        assert codes == dict.fromkeys(codes, 0), codes


@dataclass
class Tally:
    """What a load generator saw, by kind of request and outcome."""

    statuses: Counter[str] = field(default_factory=Counter)
    error_codes: Counter[str] = field(default_factory=Counter)
    missing_retry_after: int = 0
    connection_errors: int = 0
    # Every 5xx other than 503 (each is a server error the test forbids), with its body.
    samples_of_500: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + self.connection_errors

    def count(self, kind: str, status: int | str) -> int:
        return self.statuses[f"{kind} {status}"]

    def total(self, status: int) -> int:
        return self.total_code(str(status))

    def total_code(self, status: str) -> int:
        """Responses with this HTTP status or gRPC code name, over every kind."""
        return sum(n for key, n in self.statuses.items() if key.endswith(f" {status}"))

    async def observe(self, kind: str, response: aiohttp.ClientResponse) -> dict[str, Any]:
        """Count one response; a 503 must carry Retry-After, a 5xx body is kept for the report."""
        self.statuses[f"{kind} {response.status}"] += 1
        try:
            body: dict[str, Any] = await response.json(content_type=None)
        except (ValueError, aiohttp.ClientError):
            body = {}
        if response.status >= 400:
            self.error_codes[f"{kind} {response.status} {body.get('error_code')}"] += 1
        if response.status == 503 and "Retry-After" not in response.headers:
            self.missing_retry_after += 1
        if response.status >= 500 and response.status != 503:
            self.samples_of_500.append(f"{kind}: {json.dumps(body)[:300]}")
        return body

    def observe_grpc(self, kind: str, error: grpc.aio.AioRpcError | None) -> None:
        """Count one call: OK, or its status; UNAVAILABLE must carry `retry-after`."""
        if error is None:
            self.statuses[f"{kind} OK"] += 1
            return
        code = error.code()
        trailers = dict(error.trailing_metadata() or ())
        self.statuses[f"{kind} {code.name}"] += 1
        self.error_codes[f"{kind} {code.name} {trailers.get('ptf-error-code')}"] += 1
        if code is grpc.StatusCode.UNAVAILABLE and "retry-after" not in trailers:
            # Also what a transport failure (the server gone) looks like: forbidden either way.
            self.missing_retry_after += 1
        if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
            self.samples_of_500.append(f"{kind}: {code.name} {error.details()}"[:300])


class Clock:
    """Seconds since the test's fault started, for the figures."""

    def __init__(self) -> None:
        self._start = asyncio.get_running_loop().time()

    def __call__(self) -> float:
        return round(asyncio.get_running_loop().time() - self._start, 2)


@dataclass
class Load:
    """Concurrent synchronous submissions (and admin reads) until stopped, counted in `tally`.

    A refused request is retried after a short pause rather than after its
    Retry-After, so the outage is probed continuously; a 503 and its header
    are what the test checks.
    """

    pipeline: aiohttp.ClientSession
    tenant_id: str
    documents: Callable[[int], dict[str, Any]]  # the n-th document to submit
    tally: Tally = field(default_factory=Tally)
    accepted_jobs: set[str] = field(default_factory=set)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _sent: int = 0

    def start(self, submitters: int = 3, readers: int = 1, strangers: int = 0) -> None:
        """`strangers` read with a new, unknown key each time (never cached: a lookup)."""
        self._tasks = [asyncio.create_task(self._submit_loop()) for _ in range(submitters)]
        self._tasks += [
            asyncio.create_task(self._read_loop("incidents", ADMIN_KEY.copy))
            for _ in range(readers)
        ]
        self._tasks += [
            asyncio.create_task(self._read_loop("stranger", _stranger_key))
            for _ in range(strangers)
        ]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _guarded(self, kind: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            async with self.pipeline.request(method, path, **kwargs) as response:
                body = await self.tally.observe(kind, response)
        except (aiohttp.ClientError, TimeoutError):
            self.tally.connection_errors += 1
            return {}
        if response.status >= 400:
            await asyncio.sleep(0.1)
        return body

    async def _submit_loop(self) -> None:
        while not self._stop.is_set():
            self._sent += 1
            body = await self._guarded(
                "submit",
                "POST",
                f"/full-process?tenant_id={self.tenant_id}",
                json=self.documents(self._sent),
                headers=TENANT_KEY,
            )
            if "job_id" in body:
                self.accepted_jobs.add(str(body["job_id"]))

    async def _read_loop(self, kind: str, key: Callable[[], dict[str, str]]) -> None:
        """Admin reads of the tenant's incidents, with the header `key()` gives each time."""
        while not self._stop.is_set():
            await self._guarded(
                kind,
                "GET",
                "/admin/incidents",
                params={"tenant_id": self.tenant_id, "limit": "5"},
                headers=key(),
            )
            await asyncio.sleep(0.05)


def _stranger_key() -> dict[str, str]:
    """A well-formed admin key nobody created: never cached, so every use is a lookup."""
    return {"X-Admin-Key": f"stranger-{uuid.uuid4().hex}"}


@dataclass
class ReadinessProbe:
    """Polls health's `/health/ready`: the sequence of distinct states, and any 5xx but 503."""

    health: aiohttp.ClientSession
    states: list[str] = field(default_factory=list)
    failing: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    @property
    def current(self) -> str | None:
        return self.states[-1] if self.states else None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                async with self.health.get("/health/ready") as response:
                    body = await response.json(content_type=None)
                state = str(body.get("status"))
                for check in body.get("failing_checks", []):
                    self.failing[check] += 1
                if response.status >= 500 and response.status != 503:
                    self.server_errors.append(f"{response.status}: {json.dumps(body)[:300]}")
            except (aiohttp.ClientError, TimeoutError, ValueError):
                state = "unreachable"
            if state != self.current:
                self.states.append(state)
            await asyncio.sleep(0.2)


def logged_errors(logs: Path) -> list[str]:
    """ERROR and CRITICAL lines of every process log in `logs` (an outage is WARNING only).

    Services log an unexpected exception once at ERROR; an outage the code
    expects (a store unreachable, a retry) is a WARNING, so any ERROR line is
    an exception nobody handled.
    """
    found: list[str] = []
    for path in sorted(logs.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("level") in ("ERROR", "CRITICAL"):
                found.append(f"{path.name}: {str(record.get('msg'))[:200]}")
    return found


GrpcCall = Callable[[], Awaitable[Any]]


def mixed_documents(n: int) -> dict[str, Any]:
    """The n-th document of a load: every third an S2 mismatch, so incidents are written too."""
    return s2_document() if n % 3 == 0 else document()


async def query_row(url: str, sql: str, *args: Any) -> dict[str, Any]:
    """One row of `sql` on a connection of its own (the test's pools would not survive the
    outage the test causes)."""
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(sql, *args)
    finally:
        await conn.close()
    assert row is not None
    return dict(row)


@dataclass
class GrpcLoad:
    """gRPC calls made back to back until stopped, their status codes counted in `tally`.

    A refused call must be UNAVAILABLE with a `retry-after` trailer; INTERNAL
    and UNKNOWN are the gRPC twins of a 500 and are kept with their details.
    """

    calls: dict[str, GrpcCall]
    tally: Tally = field(default_factory=Tally)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(k, c)) for k, c in self.calls.items()]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _loop(self, kind: str, call: GrpcCall) -> None:
        while not self._stop.is_set():
            try:
                await call()
            except grpc.aio.AioRpcError as exc:
                self.tally.observe_grpc(kind, exc)
                await asyncio.sleep(0.1)
            else:
                self.tally.observe_grpc(kind, None)
            await asyncio.sleep(0.05)


def _submission(tenant_id: str) -> pipeline_pb2.SubmitInvoiceRequest:
    """An asynchronous SubmitInvoice of a new clean document."""
    request = pipeline_pb2.SubmitInvoiceRequest(
        tenant_id=tenant_id, extraction_json=json.dumps(document())
    )
    setattr(request, "async", True)  # a Python keyword, so not a constructor argument
    return request


def _submitter(stub: pipeline_pb2_grpc.PipelineServiceAsyncStub, tenant_id: str) -> GrpcCall:
    """Each call submits a new document (a resubmission would be a read, not an intake)."""

    async def submit() -> Any:
        return await stub.SubmitInvoice(_submission(tenant_id), timeout=30)

    return submit


@asynccontextmanager
async def grpc_load(stack: Stack, *tenants: str) -> AsyncIterator[GrpcLoad]:
    """gRPC calls to the pipeline, telemetry and gate, each with the key it needs.

    SubmitInvoice for each of `tenants` (dev tenant key), ListIncidents of the
    first (admin), GetReadinessStatus (service key, what health asks), telemetry
    GetRunSummary (service key), gate Preflight and Check (admin).
    """
    release = new_release()
    pipeline_target = stack.services["pipeline"].grpc_target
    async with (
        keyed_channel(pipeline_target, TENANT_METADATA) as tenant,
        keyed_channel(pipeline_target, ADMIN_METADATA) as admin,
        keyed_channel(pipeline_target, SERVICE_METADATA) as service,
        keyed_channel(stack.services["telemetry"].grpc_target, SERVICE_METADATA) as reader,
        keyed_channel(stack.services["gate"].grpc_target, ADMIN_METADATA) as gate_admin,
    ):
        pipeline = pipeline_pb2_grpc.PipelineServiceStub(tenant)
        pipeline_admin = pipeline_pb2_grpc.PipelineServiceStub(admin)
        pipeline_service = pipeline_pb2_grpc.PipelineServiceStub(service)
        telemetry = telemetry_pb2_grpc.TelemetryServiceStub(reader)
        gate = gate_pb2_grpc.GateServiceStub(gate_admin)
        preflight = preflight_request(release)
        calls: dict[str, GrpcCall] = {
            f"grpc SubmitInvoice {t}": _submitter(pipeline, t) for t in tenants
        }
        calls.update(
            {
                "grpc ListIncidents": partial(
                    pipeline_admin.ListIncidents,
                    pipeline_pb2.ListIncidentsRequest(tenant_id=tenants[0], limit=5),
                    timeout=30,
                ),
                "grpc GetReadinessStatus": partial(
                    pipeline_service.GetReadinessStatus,
                    pipeline_pb2.GetReadinessStatusRequest(),
                    timeout=30,
                ),
                "grpc GetRunSummary": partial(
                    telemetry.GetRunSummary,
                    telemetry_pb2.GetRunSummaryRequest(tenant_id=tenants[0]),
                    timeout=30,
                ),
                "grpc Preflight": partial(gate.Preflight, preflight, timeout=30),
                "grpc Check": partial(
                    gate.Check,
                    gate_pb2.CheckRequest(preflight=preflight, operator="load"),
                    timeout=30,
                ),
            }
        )
        yield GrpcLoad(calls)


def override_outcome(result: gate_pb2.PreflightResult) -> str:
    """`APPLIED/<verdict>`, or `<token error>/<verdict>` (e.g. TOKEN_USED/RELEASE_HOLD)."""
    if override_result(result) == "APPLIED":
        return f"APPLIED/{verdict(result)}"
    error = str(common_pb2.TokenError.Name(result.token_error)).removeprefix("TOKEN_ERROR_")
    return f"{error}/{verdict(result)}"
