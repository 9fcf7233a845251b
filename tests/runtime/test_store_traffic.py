"""Store traffic counters: each moves by exactly what a known operation sends.

Counted on a pool and a Redis client of the test's own, so no background task
of a running service adds to the figures; the last test reads them back
through a service's `/metrics` exposition.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.runtime.db import create_pool
from services.runtime.metrics import create_metrics, store_traffic
from services.runtime.redis_client import create_redis
from services.runtime.traffic import StoreTraffic
from tests.support.services import ConfigFactory


@pytest.fixture
def traffic() -> StoreTraffic:
    return StoreTraffic()


@pytest.fixture
async def counted_pool(database_url: str, traffic: StoreTraffic) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, max_size=1, traffic=traffic)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def counted_redis(redis_url: str, traffic: StoreTraffic) -> AsyncIterator[aioredis.Redis]:
    client = create_redis(redis_url, traffic=traffic)
    try:
        yield client
    finally:
        await client.aclose()


def _db(traffic: StoreTraffic) -> tuple[int, int]:
    return traffic.db_statements, traffic.db_transactions


def _redis(traffic: StoreTraffic) -> tuple[int, int]:
    return traffic.redis_commands, traffic.redis_round_trips


async def test_a_lone_statement_is_one_statement_and_one_transaction(
    counted_pool: asyncpg.Pool, traffic: StoreTraffic
) -> None:
    before = _db(traffic)
    await counted_pool.fetchval("SELECT 1")
    await counted_pool.fetchrow("SELECT 1")
    await counted_pool.fetch("SELECT 1")
    await counted_pool.execute("SELECT $1::int", 1)
    assert _db(traffic) == (before[0] + 4, before[1] + 4)


async def test_a_transaction_block_counts_begin_and_commit_and_one_transaction(
    counted_pool: asyncpg.Pool, traffic: StoreTraffic
) -> None:
    async with counted_pool.acquire() as conn:
        before = _db(traffic)
        async with conn.transaction():
            await conn.fetchval("SELECT 1")
            await conn.execute("SELECT 2")
    assert _db(traffic) == (before[0] + 4, before[1] + 1)


async def test_executemany_and_copy_are_one_statement_each(
    counted_pool: asyncpg.Pool, traffic: StoreTraffic
) -> None:
    table = f"traffic_{uuid.uuid4().hex[:10]}"
    await counted_pool.execute(f"CREATE TEMP TABLE {table} (n int)")
    async with counted_pool.acquire() as conn:
        # One connection (max_size=1): the temporary table is visible to all three.
        before = _db(traffic)
        await conn.executemany(f"INSERT INTO {table} VALUES ($1)", [(1,), (2,), (3,)])
        await conn.copy_records_to_table(table, records=[(4,), (5,)])
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 5
    assert _db(traffic) == (before[0] + 3, before[1] + 3)


async def test_a_redis_command_is_one_round_trip(
    counted_redis: aioredis.Redis, traffic: StoreTraffic
) -> None:
    key = f"traffic:{uuid.uuid4().hex}"
    before = _redis(traffic)
    await counted_redis.set(key, b"1")
    await counted_redis.get(key)
    await counted_redis.delete(key)
    assert _redis(traffic) == (before[0] + 3, before[1] + 3)


async def test_a_pipeline_is_one_round_trip_carrying_its_commands(
    counted_redis: aioredis.Redis, traffic: StoreTraffic
) -> None:
    key = f"traffic:{uuid.uuid4().hex}"
    before = _redis(traffic)
    async with counted_redis.pipeline(transaction=False) as pipe:
        pipe.set(key, b"1")
        pipe.incr(key)
        pipe.delete(key)
        await pipe.execute()
    assert _redis(traffic) == (before[0] + 3, before[1] + 1)


async def test_an_empty_pipeline_sends_nothing(
    counted_redis: aioredis.Redis, traffic: StoreTraffic
) -> None:
    before = _redis(traffic)
    async with counted_redis.pipeline(transaction=False) as pipe:
        await pipe.execute()
    assert _redis(traffic) == before


def test_metrics_export_the_counts(make_config: ConfigFactory) -> None:
    metrics = create_metrics(make_config("pipeline"))
    try:
        traffic = store_traffic(metrics)
        traffic.db_statement(in_transaction=False)
        traffic.db_statement(in_transaction=True)
        traffic.redis_round_trip(3)
        text = generate_latest(metrics.registry).decode()
    finally:
        metrics.shutdown()
    totals = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert totals["ptf_db_statements_total"] == 2
    assert totals["ptf_db_transactions_total"] == 1
    assert totals["ptf_redis_commands_total"] == 3
    assert totals["ptf_redis_round_trips_total"] == 1
