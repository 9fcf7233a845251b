"""Start-up and shutdown have one owner: a failed start closes what it opened, a crash shows.

Connections are counted on the real stores: backends of the test database in
`pg_stat_activity` (the runtime's pools name themselves `ptf-admin`) and Redis
clients carrying this test's `client_name` in CLIENT LIST.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator

import aiohttp
import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2

from services.runtime.config import AppConfig
from services.runtime.healthcheck import health_status
from services.runtime.server import Runtime, ServiceDefinition, ServiceParts, start_service
from tests.support.polling import eventually
from tests.support.services import ConfigFactory

SERVICE_NAME = "ptf.test.v1.Lifecycle"


class BuildFailed(Exception):
    """What the failing builder raises."""


class TaskCrashed(Exception):
    """What the crashing background task raises."""


@pytest.fixture
def client_name() -> str:
    return f"lifecycle-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def config(make_config: ConfigFactory, redis_url: str, client_name: str) -> AppConfig:
    separator = "&" if "?" in redis_url else "?"
    return make_config("telemetry", REDIS_URL=f"{redis_url}{separator}client_name={client_name}")


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port some other process already listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


async def _backends(pg: asyncpg.Pool) -> int:
    count: int = await pg.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = 'ptf-admin'"
    )
    return count


async def _redis_clients(redis_client: aioredis.Redis, name: str) -> int:
    clients = await redis_client.client_list()
    return sum(1 for client in clients if client.get("name") == name)


async def _assert_nothing_left_open(
    pg: asyncpg.Pool, redis_client: aioredis.Redis, client_name: str, backends_before: int
) -> None:
    # A closed connection's backend leaves pg_stat_activity a moment after the socket
    # closes; a leaked pool never does, so waiting cannot hide a leak.
    async def closed() -> bool:
        return await _backends(pg) == backends_before

    await eventually(closed, within=10)
    assert await _redis_clients(redis_client, client_name) == 0


def _definition(build_steps: list[str], *, crash: asyncio.Event | None = None) -> ServiceDefinition:
    """A service that uses the pool and Redis, starts a background task and can crash it."""

    async def build(runtime: Runtime) -> ServiceParts:
        await runtime.pool.fetchval("SELECT 1")
        await runtime.redis.ping()

        async def background() -> None:
            if crash is None:
                await asyncio.Event().wait()
            else:
                await crash.wait()
                raise TaskCrashed("boom")

        runtime.spawn("lifecycle-background", background)
        build_steps.append("built")
        return ServiceParts(grpc_service_names=[SERVICE_NAME], register_grpc=lambda _: None)

    return ServiceDefinition(name="telemetry", build=build)


def _failing_definition(tasks: list[asyncio.Task[None]], closed: list[str]) -> ServiceDefinition:
    """A builder that opens the stores, a client of its own and a task, then raises."""

    async def build(runtime: Runtime) -> ServiceParts:
        await runtime.pool.fetchval("SELECT 1")
        await runtime.redis.ping()

        async def close_client() -> None:
            closed.append("client")

        runtime.close_on_exit(close_client)
        tasks.append(runtime.supervisor.spawn("lifecycle-idle", asyncio.Event().wait))
        raise BuildFailed("the builder failed after opening the pool")

    return ServiceDefinition(name="telemetry", build=build)


async def test_a_failing_build_closes_the_pool_redis_its_clients_and_background_tasks(
    config: AppConfig, pg: asyncpg.Pool, redis_client: aioredis.Redis, client_name: str
) -> None:
    before = await _backends(pg)
    tasks: list[asyncio.Task[None]] = []
    closed: list[str] = []
    with pytest.raises(BuildFailed):
        await start_service(_failing_definition(tasks, closed), config, grace_seconds=1)
    assert ([task.cancelled() for task in tasks], closed) == ([True], ["client"])
    await _assert_nothing_left_open(pg, redis_client, client_name, before)


@pytest.mark.parametrize("port", ["grpc", "http"])
async def test_a_port_already_in_use_fails_start_and_leaves_nothing_open(
    make_config: ConfigFactory,
    config: AppConfig,
    busy_port: int,
    port: str,
    pg: asyncpg.Pool,
    redis_client: aioredis.Redis,
    client_name: str,
) -> None:
    env = {"PTF_GRPC_PORT" if port == "grpc" else "PTF_HTTP_PORT": str(busy_port)}
    taken = make_config("telemetry", REDIS_URL=config.redis_url, **env)
    before = await _backends(pg)
    steps: list[str] = []
    with pytest.raises((OSError, RuntimeError)):
        await start_service(_definition(steps), taken, grace_seconds=1)
    assert steps == ["built"]
    await _assert_nothing_left_open(pg, redis_client, client_name, before)


async def test_shutdown_twice_is_safe_and_closes_everything(
    config: AppConfig, pg: asyncpg.Pool, redis_client: aioredis.Redis, client_name: str
) -> None:
    before = await _backends(pg)
    running = await start_service(_definition([]), config, grace_seconds=1)
    assert await _backends(pg) > before
    assert await _redis_clients(redis_client, client_name) > 0
    await running.shutdown()
    await running.shutdown()
    await _assert_nothing_left_open(pg, redis_client, client_name, before)


async def test_a_crashed_background_task_makes_the_service_not_serving(
    config: AppConfig,
) -> None:
    crash = asyncio.Event()
    running = await start_service(_definition([], crash=crash), config, grace_seconds=1)
    try:
        async with grpc.aio.insecure_channel(running.grpc_target) as channel:
            serving = health_pb2.HealthCheckResponse.SERVING
            assert await health_status(channel, SERVICE_NAME) == serving
            crash.set()

            async def not_serving() -> bool:
                statuses = [await health_status(channel, name) for name in ("", SERVICE_NAME)]
                return statuses == [health_pb2.HealthCheckResponse.NOT_SERVING] * 2

            await eventually(not_serving, within=10)
    finally:
        await running.shutdown()


async def test_a_crashed_background_task_fails_liveness_with_its_name(
    config: AppConfig,
) -> None:
    crash = asyncio.Event()
    running = await start_service(_definition([], crash=crash), config, grace_seconds=1)
    try:
        crash.set()
        async with aiohttp.ClientSession(base_url=running.http_base) as http:

            async def failed() -> dict[str, object]:
                async with http.get("/health") as response:
                    body: dict[str, object] = await response.json()
                    return body if response.status == 503 else {}

            body = await eventually(failed, within=10)
        assert body["failed_tasks"] == {"lifecycle-background": "TaskCrashed"}
    finally:
        await running.shutdown()
