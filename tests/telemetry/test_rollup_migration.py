"""Events stored before the rollup migrations are summarized exactly after them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from bench.telemetry import PLANT_SQL
from services.runtime.db import apply_migrations, discover_migrations
from services.telemetry.domain.summary import RunSummary
from services.telemetry.domain.window import TimeWindow
from services.telemetry.repository import EventRepository
from tests.support.stores import fresh_database
from tests.telemetry.raw_summary import recomputed_summary, summary_shape

MIGRATIONS = Path(__file__).resolve().parents[2] / "services/telemetry/migrations"
START = datetime(2003, 3, 1, tzinfo=UTC)
SPAN = timedelta(hours=3)
EVENTS = 4000
TENANTS = 4


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    with fresh_database(database_url) as url:
        yield url


async def _summary(repository: EventRepository, window: TimeWindow, tenant: str | None) -> dict:
    aggregates = await repository.summary(window, tenant)
    document = RunSummary(
        generated_at=window.end,
        window=window,
        tenant_id=tenant,
        counts=aggregates.counts,
        pipeline_total_ms=aggregates.pipeline_total_ms,
        extraction_ms=aggregates.extraction_ms,
        errors=aggregates.errors,
        queue=aggregates.queue,
    ).to_json()
    return summary_shape(document)


async def test_events_stored_before_the_rollups_are_rolled_up_by_the_migration(
    empty_database: str,
) -> None:
    migrations = discover_migrations("telemetry", MIGRATIONS)
    pool = await asyncpg.create_pool(empty_database, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await apply_migrations(conn, migrations[:1])
            await conn.execute(PLANT_SQL, START, SPAN, EVENTS, TENANTS)
            await apply_migrations(conn, migrations)
        repository = EventRepository(pool)
        windows = [
            TimeWindow(START, START + SPAN),
            TimeWindow(START + timedelta(minutes=20, seconds=7), START + timedelta(minutes=150)),
        ]
        for window in windows:
            for tenant in (None, "bench-t02"):
                scope = [f"bench-t{i:02d}" for i in range(TENANTS)] + [""]
                expected = await recomputed_summary(
                    pool, window.start, window.end, scope if tenant is None else [tenant, ""]
                )
                assert await _summary(repository, window, tenant) == expected
    finally:
        await pool.close()
