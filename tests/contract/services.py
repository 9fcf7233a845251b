"""The four services as the contract tests start them: real stores, loopback, test timings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

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
# Nothing listens here: health's probes of the other services fail fast (readiness 503).
_NOWHERE = NO_TELEMETRY

_DEFINITIONS: dict[str, Callable[[], ServiceDefinition]] = {
    "gate": lambda: GATE,
    "telemetry": lambda: TELEMETRY,
    "pipeline": lambda: make_definition(fast_settings()),
    "health": lambda: HEALTH,
}
_ENV: dict[str, dict[str, str]] = {
    "gate": {},
    "telemetry": {},
    "pipeline": {"PTF_TELEMETRY_ADDR": _NOWHERE},
    "health": {
        "PTF_GATE_ADDR": _NOWHERE,
        "PTF_TELEMETRY_ADDR": _NOWHERE,
        "PTF_PIPELINE_ADDR": _NOWHERE,
    },
}

ServiceStarter = Callable[[str], AbstractAsyncContextManager[ServiceHandle]]


def service_starter(start_service: StartService, pg: asyncpg.Pool) -> ServiceStarter:
    """`async with start(name) as svc:` one service; the pipeline gets its reference tables."""

    @asynccontextmanager
    async def start(name: str) -> AsyncIterator[ServiceHandle]:
        async with start_service(_DEFINITIONS[name](), **_ENV[name]) as svc:
            if name == "pipeline":
                await load_sample_tables(pg)
            yield svc

    return start
