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
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg
import grpc
import redis.asyncio as aioredis
from aiohttp import StreamReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.runtime.config import (
    AppConfig,
    ConfigError,
    ConfigValidationError,
    HttpServerSettings,
    load_config,
    validate_config,
)
from services.runtime.db import MigrationSet, apply_migration_sets, create_pool
from services.runtime.errors import ErrorMappingServer, RequestTimeout, error_middleware
from services.runtime.logs import configure_logging
from services.runtime.metrics import (
    Metrics,
    create_metrics,
    http_requests_middleware,
    metrics_route,
    store_traffic,
)
from services.runtime.openapi import Paths, openapi_route, service_document
from services.runtime.redis_client import RedisKeys, create_redis
from services.runtime.supervision import Supervisor, cancel_and_wait
from services.runtime.traffic import StoreTraffic

log = logging.getLogger(__name__)

EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# After SIGTERM a process reports NOT_SERVING but keeps serving this long before
# its gRPC server stops. gRPC core drops the calls that have reached the process
# but are not yet handed to a handler when the server stops (the client sees
# CANCELLED): under load a few always are, though their clients sent them before
# the signal. Short, so that a call sent well after the signal is still refused.
SIGNAL_DRAIN_SECONDS = 0.2


@dataclass
class Runtime:
    """Shared resources handed to a service's builder; owned and closed by the runtime."""

    config: AppConfig
    pool: asyncpg.Pool
    redis: aioredis.Redis
    keys: RedisKeys
    metrics: Metrics
    # What `pool` and `redis` send, counted; a pool the service opens itself adds to it.
    traffic: StoreTraffic
    health: health.aio.HealthServicer
    supervisor: Supervisor
    exit_stack: AsyncExitStack

    def spawn(self, name: str, work: Callable[[], Awaitable[object]]) -> None:
        """Run a background task owned by the service; a crash turns the service NOT_SERVING.

        The task is cancelled on the exit stack, so at shutdown it stops before
        whatever the builder opened ahead of it (see `close_on_exit`) is closed.
        """
        task = self.supervisor.spawn(name, work)
        self.exit_stack.push_async_callback(cancel_and_wait, task)

    def close_on_exit(self, close: Callable[[], Awaitable[object]]) -> None:
        """Close a client the builder opened (a channel, a session) at shutdown or failed start.

        Runs after the gRPC server has stopped and `after_stop` is done, in reverse
        order of registration.
        """
        self.exit_stack.push_async_callback(close)

    @property
    def background_failures(self) -> dict[str, str]:
        """Background tasks that crashed, by name, with their exception's type."""
        return self.supervisor.failures


@dataclass
class ServiceParts:
    """What a service contributes to its process."""

    grpc_service_names: Sequence[str]
    register_grpc: Callable[[grpc.aio.Server], None]
    routes: Sequence[web.RouteDef] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # The OpenAPI paths of `routes` (services/<svc>/openapi.py); the runtime adds its own.
    openapi: Paths = field(default_factory=dict)
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
        self, runtime: Runtime, server: grpc.aio.Server, stack: AsyncExitStack, ports: _Ports
    ) -> None:
        self.runtime = runtime
        self.server = server
        self.grpc_port = ports.grpc
        self.http_port = ports.http
        # What the HTTP app serves; the contract tests hold /openapi.json to it.
        self.http_router: web.UrlDispatcher | None = None
        self._stack = stack
        self._shutdown_task: asyncio.Task[None] | None = None

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def shutdown(self) -> None:
        """Stop accepting, let in-flight RPCs finish within the grace period, release resources.

        Unwinds the exit stack `start_service` built, so shutdown closes exactly what
        start opened, in reverse order. Safe to call more than once and from several
        tasks: all await the same shutdown.
        """
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.create_task(self._shutdown())
        await asyncio.shield(self._shutdown_task)

    async def drain(self, seconds: float) -> None:
        """Report NOT_SERVING but keep serving for `seconds`, so calls already on their
        way reach a handler before `shutdown()` stops the servers."""
        await self.runtime.health.enter_graceful_shutdown()
        await asyncio.sleep(seconds)

    async def _shutdown(self) -> None:
        log.info("shutting down")
        await self._stack.aclose()
        log.info("stopped")

    async def wait_for_termination(self) -> None:
        await self.server.wait_for_termination()


@dataclass(frozen=True)
class _Ports:
    grpc: int
    http: int


class _ServingStatus:
    """grpc.health.v1 for the process: SERVING once started, NOT_SERVING after a task crash."""

    def __init__(self, servicer: health.aio.HealthServicer) -> None:
        self._servicer = servicer
        self._names: list[str] = [""]
        self._started = False
        self._crashed = False
        self._lock = asyncio.Lock()

    async def started(self, names: Sequence[str]) -> None:
        self._names = ["", *names]
        self._started = True
        await self._publish()

    async def task_crashed(self) -> None:
        self._crashed = True
        await self._publish()

    async def _publish(self) -> None:
        async with self._lock:  # a crash during start-up must not be overwritten by SERVING
            serving = self._started and not self._crashed
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if serving
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for name in self._names:
                await self._servicer.set(name, status)


def _alive_route(config: AppConfig, failures: dict[str, str]) -> web.RouteDef:
    """Liveness: no I/O, so a database blip never restarts every pod.

    A crashed background task does fail it (503): the process cannot recover by
    itself, a restart can.
    """

    async def alive(_: web.Request) -> web.Response:
        body: dict[str, object] = {"service": config.service, "build_id": config.build_id}
        if failures:
            return web.json_response(
                {"status": "failed", **body, "failed_tasks": dict(failures)}, status=503
            )
        return web.json_response({"status": "alive", **body})

    return web.get("/health", alive)


class _ProtocolLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's connection-level logger: a request it cannot parse is one WARNING line.

    aiohttp reports every unparsable request with `logger.exception` (ERROR and a
    traceback), so anyone could flood the logs; a 4xx is the client's error.
    """

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        refused = kwargs.get("exc_info")
        if isinstance(refused, HttpProcessingError) and 400 <= refused.code < 500:
            self.warning(
                "malformed HTTP request refused: %d %s", refused.code, type(refused).__name__
            )
            return
        super().exception(msg, *args, **kwargs)


def _expire_body(content: StreamReader) -> None:
    if not content.is_eof():
        content.set_exception(
            RequestTimeout("REQUEST_TIMEOUT", "the request body was not received in time")
        )


def _body_deadline(seconds: float) -> Middleware:
    """A body still arriving after `seconds` fails its reader with 408 REQUEST_TIMEOUT.

    aiohttp has no read timeout of its own once the headers are in; the handler
    waiting on `read()` would wait as long as the client trickles.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.content.is_eof():
            return await handler(request)
        timer = asyncio.get_running_loop().call_later(seconds, _expire_body, request.content)
        try:
            return await handler(request)
        finally:
            timer.cancel()
            if isinstance(request.content.exception(), RequestTimeout):
                # The 408 is answered; aiohttp's lingering close now reads and drops the
                # rest of the body before closing. Left set, the timeout would fail that
                # read ("Unhandled exception") and the socket would close with unread
                # client bytes, a TCP reset that can destroy the 408 before the client
                # reads it. StreamReader has no public way to clear it.
                request.content._exception = None

    return middleware


def _http_runner(app: web.Application, settings: HttpServerSettings) -> web.AppRunner:
    """The runner with the config's bounds: an idle connection, or one whose headers are
    still incomplete, is closed after `idle_timeout_seconds` (aiohttp's keep-alive timer
    runs from the connection's start)."""
    return web.AppRunner(
        app,
        access_log=None,
        keepalive_timeout=settings.idle_timeout_seconds,
        logger=_ProtocolLog(logging.getLogger("aiohttp.server")),
    )


async def start_service(
    definition: ServiceDefinition, config: AppConfig, *, grace_seconds: float = 10.0
) -> RunningService:
    """Connect to the stores, migrate, build the service and bind both servers.

    Everything opened goes on one exit stack: if a step fails (migrations, the
    build, a port already in use), what was opened so far is closed in reverse
    order before the error propagates; otherwise the stack is the service's shutdown.
    """
    stack = AsyncExitStack()
    try:
        running = await _start(definition, config, grace_seconds, stack)
    except BaseException:
        await stack.aclose()
        raise
    log.info(
        "service started",
        extra={
            "grpc_port": running.grpc_port,
            "http_port": running.http_port,
            "build_id": config.build_id,
        },
    )
    return running


async def _start(
    definition: ServiceDefinition, config: AppConfig, grace_seconds: float, stack: AsyncExitStack
) -> RunningService:
    # Pushed in creation order, so the stack unwinds: graceful NOT_SERVING, the
    # service's on_shutdown, gRPC stop (grace), after_stop, HTTP, background tasks,
    # Redis, pool, metrics.
    metrics = create_metrics(config)
    stack.callback(metrics.shutdown)
    traffic = store_traffic(metrics)
    pool = await create_pool(config.database_url, traffic=traffic)
    stack.push_async_callback(pool.close)
    redis = create_redis(config.redis_url, traffic=traffic)
    stack.push_async_callback(redis.aclose)
    await redis.ping()
    await apply_migration_sets(pool, definition.migrations)

    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    status = _ServingStatus(health_servicer)
    supervisor = Supervisor(on_crash=status.task_crashed)
    stack.push_async_callback(supervisor.aclose)
    runtime = Runtime(
        config=config,
        pool=pool,
        redis=redis,
        keys=RedisKeys(config.redis_prefix),
        metrics=metrics,
        traffic=traffic,
        health=health_servicer,
        supervisor=supervisor,
        exit_stack=stack,
    )
    parts = await definition.build(runtime)

    app = web.Application(
        middlewares=[
            http_requests_middleware(metrics),
            error_middleware,
            _body_deadline(config.http.body_timeout_seconds),
        ],
        client_max_size=parts.max_body_bytes,
    )
    app.add_routes(
        [
            _alive_route(config, supervisor.failures),
            metrics_route(metrics),
            openapi_route(service_document(config.service, config.build_id, parts.openapi)),
            *parts.routes,
        ]
    )
    runner = _http_runner(app, config.http)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    if parts.after_stop is not None:
        stack.push_async_callback(parts.after_stop)
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", parts.max_body_bytes + 64 * 1024),
        ],
    )
    stack.push_async_callback(server.stop, grace_seconds)
    if parts.on_shutdown is not None:
        stack.push_async_callback(parts.on_shutdown)
    stack.push_async_callback(health_servicer.enter_graceful_shutdown)

    # grpc.health.v1 goes through the error mapping too, so a malformed request to it is
    # INVALID_ARGUMENT like everywhere else (reflection is a bidi stream: left as it is).
    mapped = ErrorMappingServer(server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, mapped)
    parts.register_grpc(mapped)
    names = [*parts.grpc_service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    grpc_port = server.add_insecure_port(f"{config.bind_host}:{config.grpc_port}")
    site = web.TCPSite(runner, config.bind_host, config.http_port, reuse_port=False)
    await site.start()
    http_port = runner.addresses[0][1]
    await server.start()
    await status.started(parts.grpc_service_names)
    running = RunningService(runtime, server, stack, _Ports(grpc=grpc_port, http=http_port))
    running.http_router = app.router
    return running


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
    await running.drain(SIGNAL_DRAIN_SECONDS)
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
