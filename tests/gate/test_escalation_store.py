"""Escalation state in Postgres with a per-process cache (SPEC §5.2): shared, earliest wins."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.gate.domain.reasons import BlockReasonCode
from services.gate.escalation import EscalationRepository
from services.gate.service import DEFINITION
from services.runtime.db import apply_migration_sets

S1 = BlockReasonCode.S1_RATE_HIGH
LATENCY = BlockReasonCode.P95_LATENCY_HIGH
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def migrated(pg: asyncpg.Pool) -> asyncpg.Pool:
    await apply_migration_sets(pg, DEFINITION.migrations)
    return pg


@pytest.fixture
def release() -> str:
    return f"rel-{uuid.uuid4().hex[:8]}"


async def test_own_writes_show_at_once_through_the_cache(
    migrated: asyncpg.Pool, release: str
) -> None:
    replica = EscalationRepository(migrated, cache_seconds=60, clock=Clock())
    assert await replica.first_seen(release) == {}
    await replica.record(release, [S1, LATENCY], [], T0)
    await replica.record(release, [], [LATENCY], T0 + timedelta(minutes=1))
    assert await replica.first_seen(release) == {S1: T0}


async def test_another_replicas_write_shows_once_the_cache_expires(
    migrated: asyncpg.Pool, release: str
) -> None:
    clock = Clock()
    reader = EscalationRepository(migrated, cache_seconds=1.0, clock=clock)
    writer = EscalationRepository(migrated)
    assert await reader.first_seen(release) == {}
    await writer.record(release, [S1], [], T0)
    assert await reader.first_seen(release) == {}
    clock.now += 1.0
    assert await reader.first_seen(release) == {S1: T0}


async def test_the_earliest_first_seen_wins_across_replicas(
    migrated: asyncpg.Pool, release: str
) -> None:
    first = EscalationRepository(migrated, cache_seconds=60, clock=Clock())
    second = EscalationRepository(migrated, cache_seconds=60, clock=Clock())
    await first.first_seen(release)
    await second.first_seen(release)
    await first.record(release, [S1], [], T0)
    stored = await second.record(release, [S1], [], T0 + timedelta(minutes=5))
    assert stored == {S1: T0}
    assert await second.first_seen(release) == {S1: T0}
