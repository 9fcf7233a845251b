"""Market prices and distribution tariffs in Postgres: CSV loading (upsert) and per-invoice lookup.

Files are parsed by the domain (`parse_market_prices_csv`, `parse_tariffs_csv`,
which report every problem with its line number); this module only stores the
records and reads back the one period and tariff group an invoice needs.

In development the pipeline fills empty tables from the sample files shipped in
`sample_data/` (`load_sample_tables`), so a fresh `make run` can price the
smoke fixtures; rows loaded that way carry a `sample:` source.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from services.pipeline.domain import (
    DistributionTariff,
    MarketPrice,
    parse_market_prices_csv,
    parse_tariffs_csv,
)
from services.runtime.cache import TtlCache

log = logging.getLogger(__name__)

SAMPLE_DATA_DIR = Path(__file__).parent / "sample_data"
SAMPLE_MARKET_PRICES = "market_prices.sample.csv"
SAMPLE_TARIFFS = "tariffs.sample.csv"
SAMPLE_SOURCE_PREFIX = "sample:"

_INSERT_PRICE = (
    "INSERT INTO pipeline_market_prices"
    " (period, ptf_tl_per_mwh, yekdem_tl_per_mwh, source, loaded_at)"
    " VALUES ($1, $2, $3, $4, now())"
)
_INSERT_TARIFF = (
    "INSERT INTO pipeline_tariffs (tariff_group, distribution_tl_per_mwh, source, loaded_at)"
    " VALUES ($1, $2, $3, now())"
)
_LOOKUP = """
SELECT 'price' AS kind, period AS key, ptf_tl_per_mwh AS a, yekdem_tl_per_mwh AS b
FROM pipeline_market_prices WHERE period = $1
UNION ALL
SELECT 'tariff', tariff_group, distribution_tl_per_mwh, NULL
FROM pipeline_tariffs WHERE tariff_group = $2
"""


Lookup = tuple[dict[str, MarketPrice], dict[str, DistributionTariff]]


class MarketStore:
    """Reference tables shared by every tenant.

    Lookups are cached per process for `cache_seconds` (0 disables), and
    concurrent lookups of one period share one query (the runtime's `TtlCache`):
    the tables change only when an operator loads a file, and a worker prices
    thousands of invoices of the same few periods in between.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        cache_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._cache: TtlCache[tuple[str | None, str | None], Lookup] = TtlCache(
            cache_seconds, clock=clock
        )

    async def upsert_prices(self, prices: Mapping[str, MarketPrice], source: str) -> int:
        """Insert or replace every period of `prices` in one transaction; returns the count."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO pipeline_market_prices"
                " (period, ptf_tl_per_mwh, yekdem_tl_per_mwh, source, loaded_at)"
                " VALUES ($1, $2, $3, $4, now())"
                " ON CONFLICT (period) DO UPDATE SET ptf_tl_per_mwh = EXCLUDED.ptf_tl_per_mwh,"
                " yekdem_tl_per_mwh = EXCLUDED.yekdem_tl_per_mwh, source = EXCLUDED.source,"
                " loaded_at = EXCLUDED.loaded_at",
                [
                    (p.period, p.ptf_tl_per_mwh, p.yekdem_tl_per_mwh, source)
                    for p in prices.values()
                ],
            )
        return len(prices)

    async def upsert_tariffs(self, tariffs: Mapping[str, DistributionTariff], source: str) -> int:
        """Insert or replace every tariff group of `tariffs` in one transaction."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO pipeline_tariffs"
                " (tariff_group, distribution_tl_per_mwh, source, loaded_at)"
                " VALUES ($1, $2, $3, now())"
                " ON CONFLICT (tariff_group) DO UPDATE"
                " SET distribution_tl_per_mwh = EXCLUDED.distribution_tl_per_mwh,"
                " source = EXCLUDED.source, loaded_at = EXCLUDED.loaded_at",
                [(t.tariff_group, t.distribution_tl_per_mwh, source) for t in tariffs.values()],
            )
        return len(tariffs)

    async def insert_prices_if_empty(self, prices: Mapping[str, MarketPrice], source: str) -> int:
        """Insert `prices` only if the table has no row at all; returns the count inserted."""
        rows = [(p.period, p.ptf_tl_per_mwh, p.yekdem_tl_per_mwh, source) for p in prices.values()]
        return await self._insert_if_empty("pipeline_market_prices", _INSERT_PRICE, rows)

    async def insert_tariffs_if_empty(
        self, tariffs: Mapping[str, DistributionTariff], source: str
    ) -> int:
        """Insert `tariffs` only if the table has no row at all; returns the count inserted."""
        rows = [(t.tariff_group, t.distribution_tl_per_mwh, source) for t in tariffs.values()]
        return await self._insert_if_empty("pipeline_tariffs", _INSERT_TARIFF, rows)

    async def _insert_if_empty(
        self, table: str, insert: str, rows: Sequence[tuple[Any, ...]]
    ) -> int:
        # SHARE ROW EXCLUSIVE conflicts with itself and with every insert or update:
        # two pipelines starting together, or an operator's load running meanwhile,
        # wait for this transaction instead of interleaving with it.
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
            if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
                return 0
            await conn.executemany(insert, rows)
        return len(rows)

    async def lookup(self, period: str | None, tariff_group: str | None) -> Lookup:
        """The market price of `period` and the tariff of `tariff_group`, as domain lookups."""
        return await self._cache.get(
            (period, tariff_group), lambda: self._load(period, tariff_group)
        )

    async def _load(self, period: str | None, tariff_group: str | None) -> Lookup:
        prices: dict[str, MarketPrice] = {}
        tariffs: dict[str, DistributionTariff] = {}
        if period is None and tariff_group is None:
            return prices, tariffs
        for row in await self._pool.fetch(_LOOKUP, period, tariff_group):
            a: Decimal = row["a"]
            if row["kind"] == "price":
                prices[row["key"]] = MarketPrice(row["key"], a, row["b"])
            else:
                tariffs[row["key"]] = DistributionTariff(row["key"], a)
        return prices, tariffs


@dataclass(frozen=True)
class SampleLoad:
    """How many sample rows `load_sample_tables` inserted into each table."""

    market_prices: int
    tariffs: int


async def load_sample_tables(store: MarketStore, directory: Path = SAMPLE_DATA_DIR) -> SampleLoad:
    """Fill each empty reference table from the shipped sample file (development only).

    A table that already has rows is left alone, so data an operator loaded is
    never overwritten and a restart loads nothing twice. What was loaded is
    logged as a warning: the values are invented and must never price a real offer.
    """
    prices_file, tariffs_file = directory / SAMPLE_MARKET_PRICES, directory / SAMPLE_TARIFFS
    try:
        prices_text = prices_file.read_text(encoding="utf-8")
        tariffs_text = tariffs_file.read_text(encoding="utf-8")
    except OSError as exc:
        log.warning("sample reference data not loaded: %s", exc)
        return SampleLoad(0, 0)
    loaded = SampleLoad(
        market_prices=await store.insert_prices_if_empty(
            parse_market_prices_csv(prices_text, str(prices_file)),
            SAMPLE_SOURCE_PREFIX + prices_file.name,
        ),
        tariffs=await store.insert_tariffs_if_empty(
            parse_tariffs_csv(tariffs_text, str(tariffs_file)),
            SAMPLE_SOURCE_PREFIX + tariffs_file.name,
        ),
    )
    if loaded.market_prices or loaded.tariffs:
        log.warning(
            "loaded SAMPLE reference data (invented values, development only): %d market"
            " price(s) from %s, %d tariff(s) from %s; load real tables with ptf-pipeline"
            " load-market-prices / load-tariffs",
            loaded.market_prices,
            prices_file.name,
            loaded.tariffs,
            tariffs_file.name,
            extra={"sample_market_prices": loaded.market_prices, "sample_tariffs": loaded.tariffs},
        )
    return loaded
