"""`make run` / `ptf-stack`: the whole ptf-admin stack on one machine.

Starts embedded PostgreSQL and Redis when `DATABASE_URL` / `REDIS_URL` are
unset (data under `.data/`), then the four services as child processes, waits
until each reports SERVING over grpc.health.v1, prints every endpoint, and
stops everything in reverse order on Ctrl-C or SIGTERM.

The pipeline runs as in production: the API process takes intake with no
worker loops of its own, and `PTF_STACK_PIPELINE_WORKERS` (default 1) separate
`ptf-pipeline worker` processes do the jobs; 0 runs the pipeline as one process
with in-process workers instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc

from services.runtime.config import load_config
from services.runtime.config.settings import default_ports
from services.runtime.devservers import EmbeddedPostgres, EmbeddedRedis, free_port
from services.runtime.healthcheck import is_serving

SERVICES = ("telemetry", "health", "pipeline", "gate")
PIPELINE_WORKER = "pipeline-worker"
WORKER_PROCESSES_ENV = "PTF_STACK_PIPELINE_WORKERS"
DATA_DIR = Path(".data")
READY_TIMEOUT_SECONDS = 60.0
RUNBOOK = Path(__file__).resolve().parents[2] / "monitoring" / "runbooks" / "ptf-admin-runbook.md"


@dataclass
class ChildService:
    name: str
    grpc_port: int
    http_port: int
    process: subprocess.Popen[bytes]


async def wait_serving(child: ChildService) -> None:
    """Poll grpc.health.v1 until the child reports SERVING; fail if it exits or times out.

    A worker process has no gRPC server (port 0): its HTTP `/health` is polled instead.
    """
    if child.grpc_port == 0:
        await _wait_alive(child)
        return
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    async with grpc.aio.insecure_channel(f"127.0.0.1:{child.grpc_port}") as channel:
        while True:
            if child.process.poll() is not None:
                raise RuntimeError(f"{child.name} exited with {child.process.returncode}")
            if await is_serving(channel):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} did not report SERVING in time")
            await asyncio.sleep(0.2)


async def _wait_alive(child: ChildService) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    url = f"http://127.0.0.1:{child.http_port}/health"
    async with aiohttp.ClientSession() as session:
        while True:
            if child.process.poll() is not None:
                raise RuntimeError(f"{child.name} exited with {child.process.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} did not answer /health in time")
            await asyncio.sleep(0.2)


@contextlib.contextmanager
def _stores(env: dict[str, str]) -> Iterator[None]:
    """Embedded stores for whichever of DATABASE_URL / REDIS_URL is unset."""
    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    try:
        if not env.get("DATABASE_URL"):
            pg = EmbeddedPostgres(DATA_DIR / "postgres", port=55432, durable=True)
            env["DATABASE_URL"] = pg.start()
            started.append(pg)
            print(f"embedded PostgreSQL  {env['DATABASE_URL']}  (data in {pg.data_dir})")
        if not env.get("REDIS_URL"):
            rd = EmbeddedRedis(DATA_DIR / "redis", port=56379, durable=True)
            env["REDIS_URL"] = rd.start()
            started.append(rd)
            print(f"embedded Redis       {env['REDIS_URL']}  (data in {rd.data_dir})")
        yield
    finally:
        for server in reversed(started):
            server.stop()


def spawn_service(
    name: str, env: dict[str, str], ports: tuple[int, int] | None = None, *, quiet: bool = False
) -> ChildService:
    """Start `python -m services.<name>` on the given (gRPC, HTTP) ports or the defaults.

    `quiet` discards the child's log lines (benchmarks); otherwise they go to our stderr.
    """
    grpc_port, http_port = ports or default_ports(name)
    child_env = dict(env)
    child_env.update(PTF_GRPC_PORT=str(grpc_port), PTF_HTTP_PORT=str(http_port))
    # One metrics folder per service: gate and telemetry both persist a gate store.
    metrics_root = Path(env.get("PTF_METRICS_DIR", str(DATA_DIR / "metrics")))
    child_env["PTF_METRICS_DIR"] = str(metrics_root / name)
    process = subprocess.Popen(
        [sys.executable, "-m", f"services.{name}"],
        env=child_env,
        stderr=subprocess.DEVNULL if quiet else None,
    )
    return ChildService(name, grpc_port, http_port, process)


def spawn_pipeline_worker(
    env: dict[str, str], http_port: int, *, concurrency: int = 1, quiet: bool = False
) -> ChildService:
    """`python -m services.pipeline worker`, with `/health` and `/metrics` on `http_port`.

    One worker loop: the local stack shares its machine's cores with PostgreSQL,
    Redis and the API, and a second loop there only splits the same messages into
    smaller batches, more statements and more CPU per invoice (docs/performance.md).
    Scale with `PTF_STACK_PIPELINE_WORKERS` processes instead.
    """
    child_env = dict(env)
    metrics_root = Path(env.get("PTF_METRICS_DIR", str(DATA_DIR / "metrics")))
    child_env["PTF_METRICS_DIR"] = str(metrics_root / PIPELINE_WORKER)
    command = ["-m", "services.pipeline", "worker", "--concurrency", str(concurrency)]
    process = subprocess.Popen(
        [sys.executable, *command, "--http-port", str(http_port)],
        env=child_env,
        stderr=subprocess.DEVNULL if quiet else None,
    )
    return ChildService(PIPELINE_WORKER, 0, http_port, process)


def worker_processes(env: dict[str, str]) -> int:
    """How many pipeline worker processes the stack runs (`PTF_STACK_PIPELINE_WORKERS`)."""
    raw = env.get(WORKER_PROCESSES_ENV, "1")
    if not raw.isdigit():
        raise SystemExit(f"{WORKER_PROCESSES_ENV} must be a whole number >= 0, got {raw!r}")
    return int(raw)


def spawn_stack(
    env: dict[str, str],
    ports: dict[str, tuple[int, int]] | None = None,
    worker_ports: list[int] | None = None,
    *,
    quiet: bool = False,
) -> list[ChildService]:
    """The four services, then one pipeline worker process per entry of `worker_ports`.

    With worker processes the pipeline API runs no worker loops itself; with none
    (an empty list) it keeps its in-process workers: the single-process layout.
    `ports` default to each service's; `worker_ports` to `worker_processes(env)` free ports.
    """
    if worker_ports is None:
        worker_ports = [free_port() for _ in range(worker_processes(env))]
    pipeline_env = dict(env)
    if worker_ports:
        pipeline_env["PTF_PIPELINE_INPROCESS_WORKERS"] = "0"
    children: list[ChildService] = []
    for name in SERVICES:
        service_env = pipeline_env if name == "pipeline" else env
        children.append(
            spawn_service(name, service_env, None if ports is None else ports[name], quiet=quiet)
        )
    for port in worker_ports:
        children.append(spawn_pipeline_worker(env, port, quiet=quiet))
    return children


def stop_children(children: list[ChildService]) -> None:
    """SIGTERM in reverse start order, then wait; kill what does not stop in time."""
    for child in reversed(children):
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    for child in reversed(children):
        try:
            child.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.process.kill()


def _print_banner(children: list[ChildService], env: dict[str, str]) -> None:
    config = load_config("gate", env)
    print("\nptf-admin is up:\n")
    print(f"  {'service':<16} {'gRPC':<17} HTTP")
    for child in children:
        grpc_address = f"127.0.0.1:{child.grpc_port}" if child.grpc_port else "-"
        print(f"  {child.name:<16} {grpc_address:<17} http://127.0.0.1:{child.http_port}")
    print("\nDevelopment credentials (refused with ENV=staging|production):")
    print(f"  tenant key (tenants pilot, default): {config.dev_tenant_key}")
    print(f"  admin key:                           {config.dev_admin_key}")
    print(f"  service key (gatectl --key, CI):     {config.dev_service_key}")
    print("\nTry:")
    print("  curl -s http://127.0.0.1:8084/health")
    print("  curl -s http://127.0.0.1:8082/metrics | grep ptf_build_info")
    print("  grpcurl -plaintext 127.0.0.1:50051 list")
    print("  grpcurl -plaintext 127.0.0.1:50054 grpc.health.v1.Health/Check")
    print("\nCheck it end to end (ready, the three smoke invoices, system health, feedback):")
    print(
        f"  {_shown(Path(sys.executable).parent / 'gatectl')} post-deploy"
        f" --api-key {config.dev_tenant_key} --admin-key {config.dev_admin_key}"
    )
    print("\nWatch it with Prometheus (our scrape config and alert rules), from another shell:")
    print("  make observe")
    print(f"\nOperating it (alerts, rollback, kill switch): {_shown(RUNBOOK)}")
    print("\nCtrl-C stops everything.\n", flush=True)


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it lies below it (as `make run` has it)."""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def main() -> None:
    env = dict(os.environ)
    env.setdefault("PTF_BIND_HOST", "127.0.0.1")
    stop = False

    def request_stop(*_: object) -> None:
        nonlocal stop
        stop = True

    # Both signals set the flag (SIGINT may arrive ignored from a background shell);
    # the loop below then stops the children and stores in order.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    children: list[ChildService] = []
    with _stores(env):
        try:
            children = spawn_stack(env)
            for child in children:
                asyncio.run(wait_serving(child))
            if not stop:
                _print_banner(children, env)
            while not stop:
                dead = [c for c in children if c.process.poll() is not None]
                if dead:
                    print(f"{dead[0].name} exited with {dead[0].process.returncode}; stopping")
                    break
                time.sleep(0.5)
        finally:
            print("stopping ptf-admin ...", flush=True)
            stop_children(children)


if __name__ == "__main__":
    main()
