"""Wiring of the pipeline service: stores, queue, workers, relay, servicer and HTTP routes.

`make_definition(settings)` gives the API process (gRPC + HTTP, plus
`settings.inprocess_workers` worker loops so the synchronous path and
`make run` work without a separate worker); `run_worker_process()` is
`ptf-pipeline worker`, the same worker loops without servers, any number of
which can run side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import grpc
import redis.asyncio as aioredis
from aiohttp import web
from ptf.pipeline.v1 import pipeline_pb2, pipeline_pb2_grpc

from services.pipeline.app import PipelineApp
from services.pipeline.backtests import Backtests
from services.pipeline.backtests_cursor import CursorSigner, cursor_key
from services.pipeline.backtests_runner import BacktestRunner
from services.pipeline.extractors import ExtractorRateLimit, create_file_extractor
from services.pipeline.grpc_api import PipelineServicer
from services.pipeline.http_api import PipelineHttp
from services.pipeline.incident_feed import IncidentFeed
from services.pipeline.incidents import IncidentStore
from services.pipeline.intake import Intake
from services.pipeline.intake_batch import IntakeBatcher
from services.pipeline.jobs import JobStore
from services.pipeline.market import MarketStore, load_sample_tables
from services.pipeline.metrics import PipelineMetrics
from services.pipeline.notifications import JobNotifier, JobWatcher
from services.pipeline.openapi import PATHS as OPENAPI_PATHS
from services.pipeline.outbox import EventBuffer, OutboxRelay, prune_relayed
from services.pipeline.pilot import INCIDENT_LIMITER, INVOICE_LIMITER, PilotGuard, pilot_limiter
from services.pipeline.processor import InvoiceProcessor
from services.pipeline.purge import TenantPurge
from services.pipeline.queue import JobQueue
from services.pipeline.settings import MEBIBYTE, PipelineSettings
from services.pipeline.status import QueueSampler, ReadinessSource
from services.pipeline.telemetry_client import TelemetryClient
from services.pipeline.worker import Sweeper, Worker, WorkerGroup, consumer_name
from services.runtime.config import AppConfig
from services.runtime.db import MigrationSet, apply_migration_sets, create_pool
from services.runtime.housekeeping import spawn_housekeeping
from services.runtime.keys import KEY_MIGRATIONS, Access, seed_dev_keys
from services.runtime.keys.channels import service_channel
from services.runtime.live.bus import LiveBus, LivePublisher
from services.runtime.live.grpc_stream import LIVE_SERVICE_NAME, register_live
from services.runtime.live.openapi import LIVE_PATHS
from services.runtime.live.sse import LiveHttp
from services.runtime.metric_registry import RESULT_TRUNCATED
from services.runtime.metrics import (
    Metrics,
    counter,
    create_metrics,
    http_requests_middleware,
    metrics_route,
    store_traffic,
)
from services.runtime.redis_client import RedisKeys, create_redis
from services.runtime.server import Runtime, ServiceDefinition, ServiceParts
from services.runtime.supervision import Supervisor
from services.runtime.tokens.factory import create_token_store, expired_token_purge
from services.runtime.tokens.postgres_store import TOKEN_MIGRATIONS
from services.runtime.traffic import StoreTraffic

log = logging.getLogger(__name__)

SERVICE_NAME = pipeline_pb2.DESCRIPTOR.services_by_name["PipelineService"].full_name
# The shared key store first: the pipeline's migration 0004 moves its old keys into it.
MIGRATIONS = (
    KEY_MIGRATIONS,
    MigrationSet("pipeline", Path(__file__).parent / "migrations"),
    TOKEN_MIGRATIONS,
)
# Reconnect to telemetry within seconds after an outage instead of gRPC's default
# backoff of up to two minutes, so the outbox drains soon after telemetry returns.
TELEMETRY_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 3000),
)


def telemetry_channel(config: AppConfig) -> grpc.aio.Channel:
    """The channel to telemetry; every call presents the pipeline's service key."""
    return service_channel(config.addresses.telemetry, config, TELEMETRY_CHANNEL_OPTIONS)


@dataclass
class WorkerParts:
    """The worker machinery of one process."""

    group: WorkerGroup
    queue: JobQueue
    notifier: JobNotifier
    pilot: PilotGuard
    session: aiohttp.ClientSession


def pilot_guard(
    config: AppConfig, redis: aioredis.Redis, keys: RedisKeys, metrics: PipelineMetrics
) -> PilotGuard:
    """The kill switch and budgets of `config.pilot_tenant_id`, shared through Redis."""
    return PilotGuard(
        tenant_id=config.pilot_tenant_id,
        enabled=config.pilot_enabled,
        invoices=pilot_limiter(INVOICE_LIMITER, redis, keys, config.thresholds),
        incidents=pilot_limiter(INCIDENT_LIMITER, redis, keys, config.thresholds),
        incidents_skipped=metrics.pilot_incidents_skipped,
    )


def build_workers(
    *,
    config: AppConfig,
    settings: PipelineSettings,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    keys: RedisKeys,
    metrics: PipelineMetrics,
    count: int,
    claims: asyncpg.Pool | None = None,
    on_committed: Callable[[], None] = lambda: None,
) -> WorkerParts:
    """`count` worker loops and a sweeper sharing one processor; `claims` is the pool the
    loops claim their batches on (`claim_pool`)."""
    session = aiohttp.ClientSession()
    queue = JobQueue(redis, keys)
    publisher = LivePublisher(redis, keys, config.live, metrics.live)
    notifier = JobNotifier(publisher)
    feed = IncidentFeed(publisher)
    jobs = JobStore(pool, claims)
    pilot = pilot_guard(config, redis, keys, metrics)
    extractor = create_file_extractor(
        config, session, ExtractorRateLimit(redis, keys), settings.extractor
    )
    processor = InvoiceProcessor(
        pool,
        jobs,
        MarketStore(pool, cache_seconds=settings.market_cache_seconds),
        extractor,
        config.thresholds,
        settings.queue,
        metrics,
        pilot,
        on_committed,
    )
    workers = [
        Worker(consumer_name(i), queue, jobs, processor, notifier, feed, settings.queue, pilot)
        for i in range(count)
    ]
    sweeper = Sweeper(jobs, queue, notifier, settings.queue, pilot)
    group = WorkerGroup(workers, sweeper, queue)
    return WorkerParts(group=group, queue=queue, notifier=notifier, pilot=pilot, session=session)


async def claim_pool(
    database_url: str, loops: int, traffic: StoreTraffic | None = None
) -> asyncpg.Pool:
    """One generic-plan connection per worker loop, for `JobStore.claim_many`."""
    return await create_pool(
        database_url, min_size=1, max_size=max(1, loops), traffic=traffic, generic_plans=True
    )


def backtest_runner(
    config: AppConfig, settings: PipelineSettings, pool: asyncpg.Pool
) -> BacktestRunner:
    """The loop that claims and replays confirmed backtests in this (worker) process."""
    return BacktestRunner(
        pool,
        MarketStore(pool, cache_seconds=settings.market_cache_seconds),
        config.thresholds,
        settings.backtest,
        f"backtest-{socket.gethostname()}-{os.getpid()}",
    )


async def _build(runtime: Runtime, settings: PipelineSettings) -> ServiceParts:
    config, pool = runtime.config, runtime.pool
    access = Access.for_service(pool, config)
    await seed_dev_keys(access.store, config)
    if config.env == "development":
        await load_sample_tables(MarketStore(pool))
    metrics = PipelineMetrics(runtime.metrics, pilot_enabled=config.pilot_enabled)
    channel = telemetry_channel(config)
    telemetry = TelemetryClient(channel)
    relay = OutboxRelay(pool, telemetry.record_events, settings.relay)
    claims = None
    if settings.inprocess_workers:
        claims = await claim_pool(config.database_url, settings.inprocess_workers, runtime.traffic)
        runtime.close_on_exit(claims.close)
    parts = build_workers(
        config=config,
        settings=settings,
        pool=pool,
        redis=runtime.redis,
        keys=runtime.keys,
        metrics=metrics,
        count=settings.inprocess_workers,
        claims=claims,
        on_committed=relay.note_committed,
    )
    await parts.queue.ensure_group()
    jobs, incidents = (
        JobStore(pool),
        IncidentStore(
            pool,
            metrics,
            IncidentFeed(LivePublisher(runtime.redis, runtime.keys, config.live, metrics.live)),
        ),
    )
    watcher = JobWatcher(jobs, parts.notifier, settings.intake.wait_poll_seconds)
    intake = Intake(
        jobs,
        IntakeBatcher(pool, jobs, parts.queue, settings.intake.max_batch_size),
        watcher,
        parts.pilot,
        files_supported=config.extractor != "json",
        settings=settings.intake,
    )
    events = EventBuffer(pool, telemetry.record_events, settings.relay)
    app = PipelineApp(
        access=access,
        intake=intake,
        jobs=jobs,
        watcher=watcher,
        incidents=incidents,
        purge=TenantPurge(
            pool,
            create_token_store(
                runtime, retention_seconds=config.thresholds.Gate.USED_TOKEN_RETENTION_SECONDS
            ),
            config.thresholds.Pilot.PURGE_TOKEN_TTL_SECONDS,
        ),
        backtests=Backtests(
            pool,
            create_token_store(
                runtime, retention_seconds=config.thresholds.Gate.USED_TOKEN_RETENTION_SECONDS
            ),
            config.thresholds,
            settings.backtest,
            CursorSigner(cursor_key(settings.backtest.cursor_secret, config.database_url)),
            counter(runtime.metrics.meter, RESULT_TRUNCATED),
        ),
        telemetry=telemetry,
        readiness=ReadinessSource(config, pool, runtime.redis, runtime.keys),
        pool=pool,
        thresholds=config.thresholds,
        system_health_timeout=settings.system_health_timeout_seconds,
    )
    http = PipelineHttp(app, events)
    live = LiveBus(runtime.redis, runtime.keys, config.live, metrics.live)
    parts.notifier.read_from(live)
    await live.start()
    runtime.spawn("pipeline-live-fanout", live.run)
    sampler = QueueSampler(pool, config.thresholds, metrics, settings.queue_sample_interval_seconds)
    spawn_housekeeping(
        runtime,
        {
            "expired-tokens": expired_token_purge(runtime),
            "relayed-outbox": lambda: prune_relayed(
                pool, config.housekeeping.outbox_retention_seconds
            ),
            "job-stream": parts.queue.trim_acknowledged,
        },
    )
    runtime.spawn("pipeline-http-events", events.run)
    runtime.spawn("pipeline-queue-sampler", sampler.run)
    if settings.run_relay:
        runtime.spawn("pipeline-outbox-relay", relay.run)
    if settings.inprocess_workers:
        runtime.spawn("pipeline-workers", parts.group.run)
        runtime.spawn("pipeline-backtests", backtest_runner(config, settings, pool).run)

    def register(server: grpc.aio.Server) -> None:
        pipeline_pb2_grpc.add_PipelineServiceServicer_to_server(PipelineServicer(app), server)
        register_live(server, live, access, config.live)

    async def on_shutdown() -> None:
        parts.notifier.close()
        await live.close()
        await parts.group.stop(grace_seconds=settings.queue.visibility_timeout_seconds / 2)
        await events.flush()
        await parts.session.close()
        await channel.close()

    return ServiceParts(
        grpc_service_names=[SERVICE_NAME, LIVE_SERVICE_NAME],
        register_grpc=register,
        routes=[*http.routes(), *LiveHttp(live, access, config.live).routes()],
        openapi={**OPENAPI_PATHS, **LIVE_PATHS},
        max_body_bytes=settings.intake.max_body_bytes + MEBIBYTE // 16,
        on_shutdown=on_shutdown,
    )


def make_definition(settings: PipelineSettings | None = None) -> ServiceDefinition:
    """The pipeline API service; `settings` (tests) replaces the configured `config.pipeline`."""

    async def build(runtime: Runtime) -> ServiceParts:
        return await _build(runtime, settings or runtime.config.pipeline)

    return ServiceDefinition(name="pipeline", build=build, migrations=MIGRATIONS)


DEFINITION = make_definition()


async def migrate(pool: asyncpg.Pool) -> None:
    """Apply the pipeline's migrations (CLI commands and workers may start first)."""
    await apply_migration_sets(pool, MIGRATIONS)


def _worker_routes(metrics: Metrics, workers: asyncio.Task[None]) -> list[web.RouteDef]:
    """Liveness (503 once the worker loops have died) and metrics of a worker process."""

    async def alive(_: web.Request) -> web.Response:
        if workers.done():
            return web.json_response({"status": "failed", "service": "pipeline-worker"}, status=503)
        return web.json_response({"status": "alive", "service": "pipeline-worker"})

    return [web.get("/health", alive), metrics_route(metrics)]


async def run_worker_process(
    config: AppConfig,
    settings: PipelineSettings,
    concurrency: int,
    *,
    relay: bool,
    http_port: int | None = None,
) -> int:
    """`ptf-pipeline worker`: worker loops until SIGTERM/SIGINT, then a graceful stop.

    Returns the exit code: 0 after a signal, 1 if the worker loops died. With
    `http_port`, serves `/health` and `/metrics` for probes and scraping.
    """
    async with contextlib.AsyncExitStack() as stack:
        # Closed in reverse order: HTTP, the graceful worker stop, background tasks,
        # then clients, pool and metrics; on a failed start, only what was opened.
        metrics = create_metrics(config)
        stack.callback(metrics.shutdown)
        traffic = store_traffic(metrics)
        pool = await create_pool(
            config.database_url, max_size=max(2, concurrency + 2), traffic=traffic
        )
        stack.push_async_callback(pool.close)
        claims = await claim_pool(config.database_url, concurrency, traffic)
        stack.push_async_callback(claims.close)
        redis = create_redis(config.redis_url, traffic=traffic)
        stack.push_async_callback(redis.aclose)
        channel = telemetry_channel(config)
        stack.push_async_callback(channel.close)
        await migrate(pool)
        outbox = OutboxRelay(pool, TelemetryClient(channel).record_events, settings.relay)
        parts = build_workers(
            config=config,
            settings=settings,
            pool=pool,
            redis=redis,
            keys=RedisKeys(config.redis_prefix),
            metrics=PipelineMetrics(metrics, pilot_enabled=config.pilot_enabled),
            count=concurrency,
            claims=claims,
            on_committed=outbox.note_committed,
        )
        stack.push_async_callback(parts.session.close)
        supervisor = Supervisor()
        stack.push_async_callback(supervisor.aclose)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        workers = supervisor.spawn("pipeline-workers", parts.group.run)
        stack.push_async_callback(
            parts.group.stop, grace_seconds=settings.queue.visibility_timeout_seconds / 2
        )
        supervisor.spawn("pipeline-backtests", backtest_runner(config, settings, pool).run)
        if relay:
            supervisor.spawn("pipeline-outbox-relay", outbox.run)
        if http_port is not None:
            app = web.Application(middlewares=[http_requests_middleware(metrics)])
            app.add_routes(_worker_routes(metrics, workers))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await web.TCPSite(runner, config.bind_host, http_port).start()
        log.info("pipeline worker started", extra={"concurrency": concurrency, "relay": relay})
        waiter = supervisor.spawn("pipeline-worker-signals", stop.wait)
        await asyncio.wait([waiter, workers], return_when=asyncio.FIRST_COMPLETED)
        crashed = workers.done()
        if crashed:
            log.error("worker loops stopped unexpectedly", extra={"failed": supervisor.failures})
    log.info("pipeline worker stopped")
    return 1 if crashed else 0
