"""Run one ptf-admin service: a grpc.aio server and an aiohttp app in one event loop.

`start_service()` builds and binds everything (port 0 in tests) and returns a
`RunningService`; `run_service()` is what a service's `main` calls: it
validates config (exit 78), handles SIGTERM/SIGINT and shuts down gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg
import grpc
import redis.asyncio as aioredis
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.runtime.config import (
    AppConfig,
    ConfigError,
    ConfigValidationError,
    load_config,
    validate_config,
)
from services.runtime.db import MigrationSet, apply_migration_sets, create_pool
from services.runtime.errors import ErrorMappingServer, error_middleware
from services.runtime.logs import configure_logging
from services.runtime.metrics import (
    Metrics,
    create_metrics,
    db_query_recorder,
    http_requests_middleware,
    metrics_route,
)
from services.runtime.redis_client import RedisKeys, create_redis

log = logging.getLogger(__name__)

EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


@dataclass
class Runtime:
    """Shared resources handed to a service's builder; owned and closed by the runtime."""

    config: AppConfig
    pool: asyncpg.Pool
    redis: aioredis.Redis
    keys: RedisKeys
    metrics: Metrics
    health: health.aio.HealthServicer
    background_failures: dict[str, str] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def spawn(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        """Run a background task owned by the service; a crash is logged and kept for health."""

        async def guarded() -> None:
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("background task crashed", extra={"task": name})
                self.background_failures[name] = type(exc).__name__

        self._tasks.append(asyncio.create_task(guarded(), name=name))

    async def cancel_background(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


@dataclass
class ServiceParts:
    """What a service contributes to its process."""

    grpc_service_names: Sequence[str]
    register_grpc: Callable[[grpc.aio.Server], None]
    routes: Sequence[web.RouteDef] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # Before the servers stop: end streams, stop taking work.
    on_shutdown: Callable[[], Awaitable[None]] | None = None
    # Once in-flight RPCs are done: flush what they left behind, close clients.
    after_stop: Callable[[], Awaitable[None]] | None = None


class ServiceBuilder(Protocol):
    """Builds a service's servicers and routes from the shared runtime."""

    async def __call__(self, runtime: Runtime) -> ServiceParts: ...


@dataclass(frozen=True)
class ServiceDefinition:
    """A service's name, its builder and the migration sets it needs, applied in order.

    Shared stores (e.g. confirmation tokens) ship their own set, so two services
    that use them apply the same versions once, whichever starts first.
    """

    name: str
    build: ServiceBuilder
    migrations: tuple[MigrationSet, ...] = ()


class RunningService:
    """A started service: its bound ports and an idempotent `shutdown()`."""

    def __init__(
        self,
        runtime: Runtime,
        server: grpc.aio.Server,
        http_runner: web.AppRunner,
        parts: ServiceParts,
        grpc_port: int,
        http_port: int,
        grace_seconds: float,
    ) -> None:
        self.runtime = runtime
        self.server = server
        self.grpc_port = grpc_port
        self.http_port = http_port
        self._http_runner = http_runner
        self._parts = parts
        self._grace = grace_seconds
        self._shutdown_task: asyncio.Task[None] | None = None

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def shutdown(self) -> None:
        """Stop accepting, let in-flight RPCs finish within the grace period, release resources.

        Safe to call more than once and from several tasks: all await the same shutdown.
        """
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.create_task(self._shutdown())
        await asyncio.shield(self._shutdown_task)

    async def _shutdown(self) -> None:
        log.info("shutting down", extra={"grace_seconds": self._grace})
        await self.runtime.health.enter_graceful_shutdown()
        if self._parts.on_shutdown is not None:
            await self._parts.on_shutdown()
        await self.runtime.cancel_background()
        await self.server.stop(self._grace)
        if self._parts.after_stop is not None:
            await self._parts.after_stop()
        await self._http_runner.cleanup()
        await self.runtime.redis.aclose()
        await self.runtime.pool.close()
        self.runtime.metrics.shutdown()
        log.info("stopped")

    async def wait_for_termination(self) -> None:
        await self.server.wait_for_termination()


def _alive_route(config: AppConfig) -> web.RouteDef:
    """Liveness: no I/O, so a database blip never restarts every pod."""

    async def alive(_: web.Request) -> web.Response:
        return web.json_response(
            {"status": "alive", "service": config.service, "build_id": config.build_id}
        )

    return web.get("/health", alive)


async def start_service(
    definition: ServiceDefinition, config: AppConfig, *, grace_seconds: float = 10.0
) -> RunningService:
    """Connect to the stores, migrate, build the service and bind both servers."""
    metrics = create_metrics(config)
    pool = await create_pool(config.database_url, on_query=db_query_recorder(metrics))
    redis = create_redis(config.redis_url)
    try:
        await redis.ping()
        await apply_migration_sets(pool, definition.migrations)
    except BaseException:
        await redis.aclose()
        await pool.close()
        metrics.shutdown()
        raise
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    runtime = Runtime(
        config=config,
        pool=pool,
        redis=redis,
        keys=RedisKeys(config.redis_prefix),
        metrics=metrics,
        health=health_servicer,
    )
    parts = await definition.build(runtime)

    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", parts.max_body_bytes + 64 * 1024),
        ],
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    parts.register_grpc(ErrorMappingServer(server))
    names = [*parts.grpc_service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    grpc_port = server.add_insecure_port(f"{config.bind_host}:{config.grpc_port}")

    app = web.Application(
        middlewares=[http_requests_middleware(metrics), error_middleware],
        client_max_size=parts.max_body_bytes,
    )
    app.add_routes([_alive_route(config), metrics_route(runtime.metrics), *parts.routes])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.bind_host, config.http_port, reuse_port=False)
    await site.start()
    http_port = runner.addresses[0][1]

    await server.start()
    for name in parts.grpc_service_names:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "service started",
        extra={"grpc_port": grpc_port, "http_port": http_port, "build_id": config.build_id},
    )
    return RunningService(runtime, server, runner, parts, grpc_port, http_port, grace_seconds)


def load_validated_config(service: str) -> AppConfig:
    """Load and validate config; on failure print every problem and exit 78."""
    try:
        config = load_config(service)
        validate_config(config.thresholds)
    except ConfigValidationError as exc:
        log.error(
            "Config validation failed with %d error(s)",
            len(exc.violations),
            extra={"violations": [str(v) for v in exc.violations]},
        )
        for violation in exc.violations:
            print(f"config error: {violation}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from exc
    except ConfigError as exc:
        log.error("Config validation failed with %d error(s)", len(exc.problems))
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from exc
    log.info(
        "Config validation passed",
        extra={"build_id": config.build_id, "config_hash": config.config_hash, "env": config.env},
    )
    return config


async def _serve_until_signal(definition: ServiceDefinition, config: AppConfig) -> None:
    running = await start_service(definition, config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await running.shutdown()


def run_service(definition: ServiceDefinition, argv: Sequence[str] | None = None) -> None:
    """Entry point of `ptf-<service>`: logging, config (exit 78), serve until SIGTERM/SIGINT."""
    del argv
    configure_logging(definition.name)
    config = load_validated_config(definition.name)
    if not config.database_url or not config.redis_url:
        log.error("DATABASE_URL and REDIS_URL must be set (make run starts local servers)")
        raise SystemExit(EXIT_CONFIG)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_signal(definition, config))
