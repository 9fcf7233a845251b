"""Fixtures of the housekeeping tests: a gate and a pipeline whose housekeeping runs every 0.2 s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from services.gate.service import definition
from services.pipeline.service import make_definition
from tests.conftest import StartService
from tests.gate.service_support import signal_servers
from tests.pipeline.service_support import NO_TELEMETRY, fast_settings
from tests.support.services import ServiceHandle

FAST_HOUSEKEEPING = {"PTF_HOUSEKEEPING_INTERVAL_SECONDS": "0.2"}
OUTBOX_RETENTION_SECONDS = 3600


@asynccontextmanager
async def _gate(start_service: StartService, metrics_dir: Path) -> AsyncIterator[ServiceHandle]:
    """A gate wired to fake signal servers (housekeeping needs none of them)."""
    async with (
        signal_servers() as signals,
        start_service(
            definition(), **signals.env(), PTF_METRICS_DIR=str(metrics_dir), **FAST_HOUSEKEEPING
        ) as svc,
    ):
        yield svc


@asynccontextmanager
async def _pipeline(start_service: StartService) -> AsyncIterator[ServiceHandle]:
    """A pipeline with no worker loops and no relay, so only housekeeping touches the stream."""
    async with start_service(
        make_definition(fast_settings(inprocess_workers=0, run_relay=False)),
        PTF_TELEMETRY_ADDR=NO_TELEMETRY,
        PTF_OUTBOX_RETENTION_SECONDS=str(OUTBOX_RETENTION_SECONDS),
        **FAST_HOUSEKEEPING,
    ) as svc:
        yield svc


@pytest.fixture
async def gate(start_service: StartService, tmp_path: Path) -> AsyncIterator[ServiceHandle]:
    async with _gate(start_service, tmp_path / "gate-metrics") as svc:
        yield svc


@pytest.fixture
async def pipeline(start_service: StartService) -> AsyncIterator[ServiceHandle]:
    async with _pipeline(start_service) as svc:
        yield svc


@pytest.fixture(params=["gate", "pipeline"])
async def token_user(
    request: pytest.FixtureRequest, start_service: StartService, tmp_path: Path
) -> AsyncIterator[ServiceHandle]:
    """Each service that issues confirmation tokens (gate overrides, tenant purges)."""
    starting = (
        _gate(start_service, tmp_path / "gate-metrics")
        if request.param == "gate"
        else _pipeline(start_service)
    )
    async with starting as svc:
        yield svc
