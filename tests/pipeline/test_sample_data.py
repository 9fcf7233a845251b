"""Sample reference tables: loaded at a development start into empty tables, never elsewhere.

Each test gets its own empty database, since the suite's shared database already
holds the sample tables other tests load.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import pytest

from services.pipeline.domain import MarketPrice, parse_market_prices_csv, parse_tariffs_csv
from services.pipeline.market import MarketStore, SampleLoad, load_sample_tables
from services.pipeline.service import make_definition, migrate
from tests.conftest import StartService
from tests.pipeline.service_support import NO_TELEMETRY, SAMPLE_DATA, fast_settings

SAMPLE_PRICES = parse_market_prices_csv((SAMPLE_DATA / "market_prices.sample.csv").read_text())
SAMPLE_TARIFFS = parse_tariffs_csv((SAMPLE_DATA / "tariffs.sample.csv").read_text())


@pytest.fixture
async def empty_pg(empty_database: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on `empty_database` with the pipeline's migrations applied."""
    pool = await asyncpg.create_pool(empty_database, min_size=1, max_size=2)
    await migrate(pool)
    yield pool
    await pool.close()


async def _sources(pool: asyncpg.Pool, table: str) -> dict[str, str]:
    key = "period" if table == "pipeline_market_prices" else "tariff_group"
    rows = await pool.fetch(f"SELECT {key} AS key, source FROM {table}")
    return {row["key"]: row["source"] for row in rows}


async def _start_pipeline(start_service: StartService, database_url: str, **env: str) -> None:
    """Start the pipeline API on `database_url` until it serves, then stop it."""
    definition = make_definition(fast_settings(inprocess_workers=0))
    async with start_service(
        definition, DATABASE_URL=database_url, PTF_TELEMETRY_ADDR=NO_TELEMETRY, **env
    ):
        pass


async def test_development_start_loads_the_sample_tables_into_empty_tables(
    start_service: StartService, empty_database: str, empty_pg: asyncpg.Pool
) -> None:
    await _start_pipeline(start_service, empty_database)
    prices = await _sources(empty_pg, "pipeline_market_prices")
    tariffs = await _sources(empty_pg, "pipeline_tariffs")
    assert (set(prices), set(tariffs)) == (set(SAMPLE_PRICES), set(SAMPLE_TARIFFS))
    assert set(prices.values()) == {"sample:market_prices.sample.csv"}
    assert set(tariffs.values()) == {"sample:tariffs.sample.csv"}


@pytest.mark.parametrize("env", ["staging", "production"])
async def test_staging_and_production_starts_load_no_sample_tables(
    start_service: StartService, empty_database: str, empty_pg: asyncpg.Pool, env: str
) -> None:
    await _start_pipeline(start_service, empty_database, ENV=env)
    assert await _sources(empty_pg, "pipeline_market_prices") == {}
    assert await _sources(empty_pg, "pipeline_tariffs") == {}


async def test_development_start_keeps_the_market_prices_an_operator_loaded(
    start_service: StartService, empty_database: str, empty_pg: asyncpg.Pool
) -> None:
    """An operator loaded one real period before the first start: the sample periods stay out."""
    real = {"2026-01": MarketPrice("2026-01", Decimal("1234.5"), Decimal("99"))}
    await MarketStore(empty_pg).upsert_prices(real, "epias-2026-01.csv")
    await _start_pipeline(start_service, empty_database)
    assert await _sources(empty_pg, "pipeline_market_prices") == {"2026-01": "epias-2026-01.csv"}
    row = await empty_pg.fetchrow("SELECT ptf_tl_per_mwh FROM pipeline_market_prices")
    assert row is not None
    assert row["ptf_tl_per_mwh"] == Decimal("1234.5")


async def test_a_second_load_inserts_nothing(empty_pg: asyncpg.Pool) -> None:
    store = MarketStore(empty_pg)
    first = await load_sample_tables(store)
    assert first == SampleLoad(len(SAMPLE_PRICES), len(SAMPLE_TARIFFS))
    assert await load_sample_tables(store) == SampleLoad(0, 0)


async def test_loading_sample_tables_is_logged_as_sample_data(
    empty_pg: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="services.pipeline.market"):
        await load_sample_tables(MarketStore(empty_pg))
    (record,) = [r for r in caplog.records if r.name == "services.pipeline.market"]
    assert "SAMPLE reference data" in record.getMessage()
    assert f"{len(SAMPLE_PRICES)} market price(s)" in record.getMessage()


async def test_nothing_is_logged_when_the_tables_already_hold_data(
    empty_pg: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    await load_sample_tables(MarketStore(empty_pg))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="services.pipeline.market"):
        await load_sample_tables(MarketStore(empty_pg))
    assert [r for r in caplog.records if r.name == "services.pipeline.market"] == []
