"""The four services as the contract tests start them: real stores, loopback, test timings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

import asyncpg

from services.gate.service import DEFINITION as GATE
from services.health.service import DEFINITION as HEALTH
from services.pipeline.service import make_definition
from services.runtime.server import ServiceDefinition
from services.telemetry.service import DEFINITION as TELEMETRY
from tests.conftest import StartService
from tests.pipeline.service_support import NO_TELEMETRY, fast_settings, load_sample_tables
from tests.support.services import ServiceHandle

SERVICES = ("gate", "telemetry", "pipeline", "health")
# Nothing listens here: the pipeline's outbox and health checks of it fail fast.
_NOWHERE = NO_TELEMETRY

_DEFINITIONS: dict[str, Callable[[], ServiceDefinition]] = {
    "gate": lambda: GATE,
    "telemetry": lambda: TELEMETRY,
    "pipeline": lambda: make_definition(fast_settings()),
    "health": lambda: HEALTH,
}
_ADDRESS_ENV = {
    "gate": "PTF_GATE_ADDR",
    "telemetry": "PTF_TELEMETRY_ADDR",
    "pipeline": "PTF_PIPELINE_ADDR",
}

ServiceStarter = Callable[[str], AbstractAsyncContextManager[ServiceHandle]]


def service_starter(start_service: StartService, pg: asyncpg.Pool) -> ServiceStarter:
    """`async with start(name) as svc:` one service as it runs in a stack.

    The pipeline gets its reference tables; health gets the three services it
    watches, started first, so its readiness is what a healthy stack answers.
    """

    @asynccontextmanager
    async def start(name: str) -> AsyncIterator[ServiceHandle]:
        async with AsyncExitStack() as stack:
            env = {"PTF_TELEMETRY_ADDR": _NOWHERE}
            if name == "health":
                for watched, variable in _ADDRESS_ENV.items():
                    other = await stack.enter_async_context(start(watched))
                    env[variable] = other.running.grpc_target
            svc = await stack.enter_async_context(start_service(_DEFINITIONS[name](), **env))
            if name == "pipeline":
                await load_sample_tables(pg)
            yield svc

    return start
