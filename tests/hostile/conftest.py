"""Fixtures of the hostile-input tests: the services an outsider probes, on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from services.pipeline.service import make_definition
from services.telemetry.service import DEFINITION as TELEMETRY
from tests.conftest import StartService
from tests.gate.service_support import SignalServers, StartGate, gate_starter, signal_servers
from tests.pipeline.service_support import NO_TELEMETRY, fast_settings, load_sample_tables
from tests.support.services import ServiceHandle


@pytest.fixture
async def pipeline(start_service: StartService, pg: asyncpg.Pool) -> AsyncIterator[ServiceHandle]:
    """The pipeline with telemetry down (its events stay in the outbox) and the sample tables."""
    async with start_service(
        make_definition(fast_settings()), PTF_TELEMETRY_ADDR=NO_TELEMETRY
    ) as svc:
        await load_sample_tables(pg)
        yield svc


@pytest.fixture
async def telemetry(start_service: StartService, tmp_path: Path) -> AsyncIterator[ServiceHandle]:
    async with start_service(TELEMETRY, PTF_METRICS_DIR=str(tmp_path / "metrics")) as svc:
        yield svc


@pytest.fixture
async def signals() -> AsyncIterator[SignalServers]:
    async with signal_servers() as servers:
        yield servers


@pytest.fixture
def start_gate(start_service: StartService, signals: SignalServers, tmp_path: Path) -> StartGate:
    return gate_starter(start_service, signals, tmp_path / "gate-metrics")
