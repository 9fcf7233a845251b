"""Start any ptf-admin service in-process on free ports, with a gRPC channel and HTTP client."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
import grpc

from services.runtime.config import AppConfig, load_config
from services.runtime.keys.channels import keyed_channel
from services.runtime.server import RunningService, ServiceDefinition, start_service


@dataclass
class ServiceHandle:
    """A running service as a test sees it."""

    running: RunningService
    channel: grpc.aio.Channel  # presents no key
    admin_channel: grpc.aio.Channel  # presents the dev admin key of `config`
    service_channel: grpc.aio.Channel  # presents the dev service key of `config`
    http: aiohttp.ClientSession

    @property
    def config(self) -> AppConfig:
        return self.running.runtime.config


ConfigFactory = Callable[..., AppConfig]

# Well inside pytest-timeout's 120 s, so a stuck start or stop fails with the stuck
# tasks' stacks instead of an opaque timeout that shows only idle threads.
LIFECYCLE_SECONDS = 60.0

T = TypeVar("T")


def _task_stacks() -> str:
    """Every other pending task of this loop with its stack: where a lifecycle step waits."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task():
            task.print_stack(limit=12, file=out)
    return out.getvalue()


async def _within_lifecycle_limit(step: str, awaitable: Awaitable[T]) -> T:
    try:
        async with asyncio.timeout(LIFECYCLE_SECONDS):
            return await awaitable
    except TimeoutError:
        raise AssertionError(
            f"service {step} did not finish within {LIFECYCLE_SECONDS:.0f} s;"
            f" pending tasks:\n{_task_stacks()}"
        ) from None


def make_config_factory(base_env: Mapping[str, str]) -> ConfigFactory:
    """`factory(service, **env)` → AppConfig on ports 0 with the test stores."""

    def factory(service: str, **env: str) -> AppConfig:
        environ = {"PTF_GRPC_PORT": "0", "PTF_HTTP_PORT": "0", "BUILD_ID": "test", **base_env}
        environ.update(env)
        return load_config(service, environ)

    return factory


@asynccontextmanager
async def running_service(
    definition: ServiceDefinition, config: AppConfig, *, grace_seconds: float = 5.0
) -> AsyncIterator[ServiceHandle]:
    """Start, hand out a connected channel and HTTP session, shut down afterwards."""
    running = await _within_lifecycle_limit(
        "start", start_service(definition, config, grace_seconds=grace_seconds)
    )
    try:
        async with (
            grpc.aio.insecure_channel(running.grpc_target) as channel,
            keyed_channel(running.grpc_target, (("x-admin-key", config.dev_admin_key),)) as admin,
            keyed_channel(running.grpc_target, (("x-api-key", config.dev_service_key),)) as service,
            aiohttp.ClientSession(base_url=running.http_base) as http,
        ):
            yield ServiceHandle(
                running=running,
                channel=channel,
                admin_channel=admin,
                service_channel=service,
                http=http,
            )
    finally:
        await _within_lifecycle_limit("shutdown", running.shutdown())
