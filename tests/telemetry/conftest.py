"""Telemetry test fixtures: disjoint time slots and a telemetry service on a temp metrics dir."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.telemetry.service import DEFINITION
from tests.conftest import StartService
from tests.support.services import ServiceHandle
from tests.telemetry.factories import Slot, TimeSlots


@pytest.fixture(scope="session")
def time_slots() -> TimeSlots:
    return TimeSlots()


@pytest.fixture
def slot(time_slots: TimeSlots) -> Slot:
    return time_slots.next()


@pytest.fixture
async def telemetry(start_service: StartService, tmp_path: Path) -> AsyncIterator[ServiceHandle]:
    """A running telemetry service whose metric stores live in this test's tmp dir."""
    async with start_service(DEFINITION, PTF_METRICS_DIR=str(tmp_path / "metrics")) as svc:
        yield svc
