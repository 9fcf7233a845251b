"""Fixtures of the gate service tests: fake signal servers, an injected clock, a gate starter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import StartService
from tests.gate.service_support import (
    FakeClock,
    SignalServers,
    StartGate,
    gate_starter,
    signal_servers,
)


@pytest.fixture
async def signals() -> AsyncIterator[SignalServers]:
    async with signal_servers() as servers:
        yield servers


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    return tmp_path / "gate-metrics"


@pytest.fixture
def start_gate(start_service: StartService, signals: SignalServers, metrics_dir: Path) -> StartGate:
    return gate_starter(start_service, signals, metrics_dir)
