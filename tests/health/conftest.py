"""Fixtures of the health service tests (tests/health/support.py builds the stack)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import StartService
from tests.health.support import Peers, StartHealth, health_starter, peer_servers


@pytest.fixture
async def peers() -> AsyncIterator[Peers]:
    async with peer_servers() as servers:
        yield servers


@pytest.fixture
def start_health(start_service: StartService, peers: Peers) -> StartHealth:
    """A real pipeline (configured by `pipeline`) and health (by `env`) pointed at it."""
    return health_starter(start_service, peers)
