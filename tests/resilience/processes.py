"""Service and worker processes a fault test can start, signal and kill, and a load driver.

Every process is a fresh `python -m services.<name>` (or `... pipeline worker`)
with the test's stores and fixed ports, so a test can SIGKILL one and start it
again on the same address. Each process writes its log to a file in the
test's tmp dir, which is what to read when a fault test fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from asyncio.subprocess import Process
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from ptf.common.v1 import common_pb2
from ptf.telemetry.v1 import telemetry_pb2, telemetry_pb2_grpc

from services.runtime.devservers import free_port
from services.runtime.healthcheck import is_serving
from services.runtime.keys.channels import keyed_channel
from tests.support.polling import eventually

REPO = Path(__file__).resolve().parents[2]
# Nothing listens here: a dependency a test does not start.
NOWHERE = "127.0.0.1:9"
# Development's well-known keys (ENV=development): what services and operators present.
DEV_SERVICE_KEY = "dev-service-key"
DEV_ADMIN_KEY = "dev-admin-key"
# Starting a Python service process (imports, migrations) on a busy 2-core machine.
START_WITHIN_SECONDS = 60.0


def process_env(
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    metrics_dir: Path | None = None,
    **extra: str,
) -> dict[str, str]:
    """The environment of a service process: the test's stores, nothing inherited from PTF_*.

    Give `metrics_dir` (the test's tmp dir) to a gate: it persists its metric store there
    instead of in the repository's .data folder.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PTF_")}
    env.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "PTF_REDIS_PREFIX": redis_prefix,
            "BUILD_ID": "test",
            "ENV": "development",
        }
    )
    if metrics_dir is not None:
        env["PTF_METRICS_DIR"] = str(metrics_dir)
    env.update(extra)
    return env


def _open_log(path: Path) -> BinaryIO:
    """The process's log file (tiny and local: opening it does not stall the loop)."""
    return path.open("wb")


async def _spawn(module_args: list[str], env: Mapping[str, str], log: Path) -> Process:
    """`python -m MODULE ARGS` from the repository root, stdout and stderr into `log`."""
    with _open_log(log) as log_file:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            *module_args,
            env=dict(env),
            cwd=REPO,
            stdout=log_file,
            stderr=log_file,
        )


async def _launch(
    module_args: list[str], env: Mapping[str, str], log: Path, ready: Callable[[], Awaitable[bool]]
) -> Process:
    """Spawn `python -m MODULE ARGS` and wait until `ready()`; killed again if it never is."""
    process = await _spawn(module_args, env, log)

    async def up() -> bool:
        if process.returncode is not None:
            raise AssertionError(f"exited with {process.returncode} (see {log})")
        return await ready()

    try:
        await eventually(up, within=START_WITHIN_SECONDS, interval=0.1)
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    return process


class _Child:
    """Signals shared by service and worker processes (attributes set by the dataclasses)."""

    process: Process | None
    kills: int

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a node or the OOM killer takes the pod.

        A killed worker's claimed jobs stay RUNNING under a lease nobody renews. A
        process that has already exited is left as it is (and not counted).
        """
        if self.process is None or self.process.returncode is not None:
            return
        self.process.kill()
        await self.process.wait()
        self.kills += 1

    async def terminate(self, within: float) -> tuple[int, float]:
        """SIGTERM, as Kubernetes sends it; (exit code, seconds until the process exited)."""
        assert self.process is not None
        sent = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), timeout=within)
        return code, time.monotonic() - sent


@dataclass
class ServiceProcess(_Child):
    """`python -m services.<name>` on fixed ports; restartable on the same ports."""

    name: str
    env: dict[str, str]
    log_dir: Path
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    process: Process | None = None
    starts: int = 0
    kills: int = 0

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def start(self) -> None:
        """Spawn the process and return once its gRPC health check answers SERVING."""
        self.starts += 1
        env = {**self.env, "PTF_GRPC_PORT": str(self.grpc_port)}
        env["PTF_HTTP_PORT"] = str(self.http_port)
        async with grpc.aio.insecure_channel(self.grpc_target) as channel:
            self.process = await _launch(
                [f"services.{self.name}"],
                env,
                self.log_dir / f"{self.name}.{self.starts}.log",
                lambda: is_serving(channel),
            )


@dataclass
class WorkerProcess(_Child):
    """`python -m services.pipeline worker`, with /health on its own port to know it runs."""

    env: dict[str, str]
    log_dir: Path
    concurrency: int = 2
    relay: bool = False
    label: str = "worker"
    process: Process | None = None
    starts: int = 0
    kills: int = 0

    async def start(self) -> None:
        """Spawn a worker and return once its worker loops run (/health says alive)."""
        self.starts += 1
        port = free_port()
        args = ["worker", "--concurrency", str(self.concurrency), "--http-port", str(port)]
        if self.relay:
            args.append("--relay")
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:

            async def alive() -> bool:
                try:
                    async with http.get("/health") as response:
                        return response.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            self.process = await _launch(
                ["services.pipeline", *args],
                self.env,
                self.log_dir / f"{self.label}.{self.starts}.log",
                alive,
            )

    async def stop(self) -> int:
        """SIGTERM and wait: the graceful stop a deployment's rollout does."""
        if self.process is None or self.process.returncode is not None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), timeout=START_WITHIN_SECONDS)


async def stop_all(processes: Sequence[ServiceProcess | WorkerProcess]) -> None:
    """Cleanup after a test: kill whatever is still running (assertions are done by then)."""
    for proc in processes:
        if proc.process is not None and proc.process.returncode is None:
            proc.process.kill()
            await proc.process.wait()


async def submit_all(
    http: aiohttp.ClientSession,
    tenant_id: str,
    headers: Mapping[str, str],
    documents: Sequence[dict[str, Any]],
    *,
    concurrency: int = 8,
) -> list[str]:
    """POST each document to `/full-process?async=true`; the job ids, in document order.

    Every submission must be accepted (202 queued or 200 already done): the
    fault tests inject faults behind the intake, never in front of it.
    """
    job_ids: list[str] = [""] * len(documents)
    next_index = iter(range(len(documents)))

    async def submitter() -> None:
        for index in next_index:
            async with http.post(
                f"/full-process?tenant_id={tenant_id}&async=true",
                json=documents[index],
                headers=dict(headers),
            ) as response:
                body = await response.json()
                assert response.status in (200, 202), (response.status, body)
            job_ids[index] = body["job_id"]

    await asyncio.gather(*(submitter() for _ in range(concurrency)))
    return job_ids


# What one request of a load does; raises on failure, returns an outcome label.
Request = Callable[[], Awaitable[str]]

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectionError,
    ConnectionError,
)


def outcome_of(exc: BaseException) -> str:
    """A failed request's label: `connection:<kind>` for the failures SIGTERM must not cause."""
    if isinstance(exc, grpc.aio.AioRpcError):
        code = exc.code()
        kind = "connection" if code is grpc.StatusCode.UNAVAILABLE else "grpc"
        return f"{kind}:{code.name}"
    if isinstance(exc, CONNECTION_ERRORS):
        return f"connection:{type(exc).__name__}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return f"error:{type(exc).__name__}"


@dataclass
class LoadRun:
    """A closed-loop load: `clients` tasks issuing requests back to back until `stop()`.

    Every request issued before `stop()` is awaited to its end and its outcome counted;
    none is issued after it.
    """

    outcomes: Counter[str] = field(default_factory=Counter)
    issued: int = 0
    in_flight: int = 0
    in_flight_at_stop: int = 0
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def answered(self) -> int:
        return sum(self.outcomes.values())

    def stop(self) -> None:
        """Issue nothing more; call it just before the fault so every request precedes it."""
        self.in_flight_at_stop = self.in_flight
        self._stopped.set()

    async def drive(self, requests: Sequence[Request], *, clients: int = 8) -> None:
        """Run the clients (round robin over `requests`) until `stop()`, then let them finish."""

        async def client(offset: int) -> None:
            turn = offset
            while not self._stopped.is_set():
                request = requests[turn % len(requests)]
                turn += 1
                self.issued += 1
                self.in_flight += 1
                try:
                    self.outcomes[await request()] += 1
                except Exception as exc:  # every failure is counted by kind, none escapes
                    self.outcomes[outcome_of(exc)] += 1
                finally:
                    self.in_flight -= 1

        await asyncio.gather(*(client(i) for i in range(clients)))


async def run_summary(target: str, tenant_id: str, since: datetime) -> telemetry_pb2.RunSummary:
    """Telemetry's run summary of one tenant since `since`, read with the dev service key."""
    start = Timestamp()
    start.FromDatetime(since)
    async with keyed_channel(target, (("x-api-key", DEV_SERVICE_KEY),)) as channel:
        stub = telemetry_pb2_grpc.TelemetryServiceStub(channel)
        summary: telemetry_pb2.RunSummary = await stub.GetRunSummary(
            telemetry_pb2.GetRunSummaryRequest(
                period=common_pb2.TimeWindow(start=start), tenant_id=tenant_id
            ),
            timeout=10,
        )
    return summary


def record_figures(path: Path, figures: Mapping[str, Any]) -> None:
    """Write a fault test's figures as JSON (quoted in the closing note) and print them."""
    text = json.dumps(dict(figures), indent=2, sort_keys=True, default=str)
    path.write_text(text + "\n")
    print(f"figures ({path}):\n{text}")
