"""Market prices and distribution tariffs in Postgres: CSV loading (upsert) and per-invoice lookup.

Files are parsed by the domain (`parse_market_prices_csv`, `parse_tariffs_csv`,
which report every problem with its line number); this module only stores the
records and reads back the one period and tariff group an invoice needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from decimal import Decimal

import asyncpg

from services.pipeline.domain import DistributionTariff, MarketPrice

_MAX_CACHED = 1024
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

    Lookups are cached per process for `cache_seconds` (0 disables): the tables
    change only when an operator loads a file, and a worker prices thousands
    of invoices of the same few periods in between.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        cache_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[tuple[str | None, str | None], tuple[Lookup, float]] = {}

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

    async def lookup(self, period: str | None, tariff_group: str | None) -> Lookup:
        """The market price of `period` and the tariff of `tariff_group`, as domain lookups."""
        key = (period, tariff_group)
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        found = await self._load(period, tariff_group)
        if self._cache_seconds > 0:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[key] = (found, now + self._cache_seconds)
        return found

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
