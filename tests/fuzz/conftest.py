"""The four services the fuzz tests send hostile input to, each on loopback with its stores.

Their neighbours are fakes (the gate's) or unreachable (the pipeline's telemetry,
health's pipeline): fuzzing must reach parsing and validation, not depend on them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path

import asyncpg
import pytest

from services.gate.service import definition as gate_definition
from services.health.service import DEFINITION as HEALTH
from services.pipeline.service import make_definition
from services.telemetry.service import DEFINITION as TELEMETRY
from tests.conftest import StartService
from tests.gate.service_support import signal_servers
from tests.pipeline.service_support import NO_TELEMETRY, fast_settings, load_sample_tables
from tests.support.services import ServiceHandle

SERVICE_NAMES = ("gate", "health", "pipeline", "telemetry")


async def start_named(
    name: str, start_service: StartService, stack: AsyncExitStack, metrics_dir: Path
) -> ServiceHandle:
    """Start service `name` on `stack` with the neighbours described above."""
    starting: AbstractAsyncContextManager[ServiceHandle]
    if name == "gate":
        signals = await stack.enter_async_context(signal_servers())
        starting = start_service(
            gate_definition(), **signals.env(), PTF_METRICS_DIR=str(metrics_dir)
        )
    elif name == "telemetry":
        starting = start_service(TELEMETRY, PTF_METRICS_DIR=str(metrics_dir))
    elif name == "pipeline":
        starting = start_service(make_definition(fast_settings()), PTF_TELEMETRY_ADDR=NO_TELEMETRY)
    else:
        starting = start_service(HEALTH, PTF_PIPELINE_ADDR=NO_TELEMETRY)
    return await stack.enter_async_context(starting)


@pytest.fixture(params=SERVICE_NAMES)
async def service(
    request: pytest.FixtureRequest, start_service: StartService, pg: asyncpg.Pool, tmp_path: Path
) -> AsyncIterator[tuple[str, ServiceHandle]]:
    """Each of the four services in turn, as (name, handle)."""
    async with AsyncExitStack() as stack:
        svc = await start_named(request.param, start_service, stack, tmp_path / "metrics")
        if request.param == "pipeline":
            await load_sample_tables(pg)
        yield request.param, svc
