"""Confirmation tokens (SPEC §7) on both stores: codes, binding, retention, races, outages."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from services.runtime.db import apply_migration_sets
from services.runtime.devservers import free_port
from services.runtime.redis_client import RedisKeys
from services.runtime.tokens.errors import TokenError, params_hash, token_hash
from services.runtime.tokens.postgres_store import TOKEN_MIGRATIONS, PostgresTokenStore
from services.runtime.tokens.redis_store import RedisTokenStore
from services.runtime.tokens.store import TokenStore
from tests.support.race import race_processes

PURPOSE = "test.race"
TTL = 900.0
RETENTION = 3600.0


class FakeClock:
    """Injected time: tests move it instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def migrated_pg(pg: asyncpg.Pool) -> asyncpg.Pool:
    await apply_migration_sets(pg, [TOKEN_MIGRATIONS])
    return pg


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["redis", "postgres"])
async def store(
    request: pytest.FixtureRequest,
    redis_client: aioredis.Redis,
    redis_prefix: str,
    migrated_pg: asyncpg.Pool,
    clock: FakeClock,
) -> TokenStore:
    if request.param == "redis":
        return RedisTokenStore(
            redis_client, RedisKeys(redis_prefix), retention_seconds=RETENTION, clock=clock
        )
    return PostgresTokenStore(migrated_pg, retention_seconds=RETENTION, clock=clock)


BOUND = params_hash({"release": "r1", "spec_hash": "sha256:abc", "reasons": ["S1_RATE_HIGH"]})


async def test_issued_token_is_consumed_once(store: TokenStore) -> None:
    token = await store.issue(PURPOSE, BOUND, TTL)
    assert (await store.consume(token.raw, PURPOSE, BOUND)).ok


async def test_issued_token_is_hex_so_a_cli_never_reads_it_as_an_option(
    store: TokenStore,
) -> None:
    token = await store.issue(PURPOSE, BOUND, TTL)
    assert re.fullmatch(r"[0-9a-f]{64}", token.raw)


async def test_replayed_token_is_token_used(store: TokenStore) -> None:
    token = await store.issue(PURPOSE, BOUND, TTL)
    await store.consume(token.raw, PURPOSE, BOUND)
    assert (await store.consume(token.raw, PURPOSE, BOUND)).error is TokenError.TOKEN_USED


async def test_unknown_token_is_token_invalid(store: TokenStore) -> None:
    assert (await store.consume("nope", PURPOSE, BOUND)).error is TokenError.TOKEN_INVALID


async def test_token_for_another_purpose_is_token_invalid(store: TokenStore) -> None:
    token = await store.issue("pilot.purge", BOUND, TTL)
    assert (await store.consume(token.raw, PURPOSE, BOUND)).error is TokenError.TOKEN_INVALID


async def test_token_after_ttl_is_token_expired(store: TokenStore, clock: FakeClock) -> None:
    token = await store.issue(PURPOSE, BOUND, 10)
    clock.now += 10
    assert (await store.consume(token.raw, PURPOSE, BOUND)).error is TokenError.TOKEN_EXPIRED


async def test_token_just_before_ttl_is_accepted(store: TokenStore, clock: FakeClock) -> None:
    token = await store.issue(PURPOSE, BOUND, 10)
    clock.now += 9.9
    assert (await store.consume(token.raw, PURPOSE, BOUND)).ok


async def test_token_bound_to_other_params_is_mismatch_and_stays_usable(
    store: TokenStore,
) -> None:
    token = await store.issue(PURPOSE, BOUND, TTL)
    other = params_hash({"release": "r2", "spec_hash": "sha256:abc", "reasons": []})
    assert (
        await store.consume(token.raw, PURPOSE, other)
    ).error is TokenError.TOKEN_PARAMS_MISMATCH
    assert (await store.consume(token.raw, PURPOSE, BOUND)).ok


async def test_used_token_stays_distinguishable_until_retention_ends(
    store: TokenStore, clock: FakeClock
) -> None:
    token = await store.issue(PURPOSE, BOUND, 10)
    await store.consume(token.raw, PURPOSE, BOUND)
    clock.now += 10 + RETENTION - 1
    assert (await store.consume(token.raw, PURPOSE, BOUND)).error is TokenError.TOKEN_USED


async def test_describe_shows_the_hash_and_use_but_never_the_token(store: TokenStore) -> None:
    token = await store.issue(PURPOSE, BOUND, TTL)
    await store.consume(token.raw, PURPOSE, BOUND)
    info = await store.describe(token.hash)
    assert info is not None
    assert info.hash == token_hash(token.raw)
    assert info.used_at is not None
    assert token.raw not in repr(info)


async def test_raw_token_is_never_stored(
    redis_client: aioredis.Redis, redis_prefix: str, migrated_pg: asyncpg.Pool
) -> None:
    stores: list[TokenStore] = [
        RedisTokenStore(redis_client, RedisKeys(redis_prefix), retention_seconds=RETENTION),
        PostgresTokenStore(migrated_pg, retention_seconds=RETENTION),
    ]
    raws = [(await s.issue(PURPOSE, BOUND, TTL)).raw for s in stores]
    stored = []
    async for key in redis_client.scan_iter(f"{redis_prefix}:*"):
        stored.append(key.decode() + (await redis_client.get(key) or b"").decode())
    rows = await migrated_pg.fetch("SELECT * FROM confirmation_tokens")
    stored.extend(json.dumps([dict(r) for r in rows], default=str))
    dump = "".join(stored)
    assert all(raw not in dump for raw in raws)


async def test_token_survives_a_new_store_instance(
    redis_url: str, redis_prefix: str, database_url: str, migrated_pg: asyncpg.Pool
) -> None:
    """Restart: a token issued by one client is consumed by a freshly connected one."""
    client = aioredis.Redis.from_url(redis_url)
    redis_token = await RedisTokenStore(
        client, RedisKeys(redis_prefix), retention_seconds=RETENTION
    ).issue(PURPOSE, BOUND, TTL)
    await client.aclose()
    pg_token = await PostgresTokenStore(migrated_pg, retention_seconds=RETENTION).issue(
        PURPOSE, BOUND, TTL
    )
    fresh_client = aioredis.Redis.from_url(redis_url)
    fresh_pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        redis_store = RedisTokenStore(
            fresh_client, RedisKeys(redis_prefix), retention_seconds=RETENTION
        )
        pg_store = PostgresTokenStore(fresh_pool, retention_seconds=RETENTION)
        assert (await redis_store.consume(redis_token.raw, PURPOSE, BOUND)).ok
        assert (await pg_store.consume(pg_token.raw, PURPOSE, BOUND)).ok
    finally:
        await fresh_client.aclose()
        await fresh_pool.close()


async def test_unreachable_redis_store_fails_closed() -> None:
    """Fault: Redis is down. Consume must return TOKEN_STORE_UNAVAILABLE, never succeed."""
    client = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    store = RedisTokenStore(client, RedisKeys("x"), retention_seconds=RETENTION)
    try:
        result = await store.consume("t", PURPOSE, BOUND)
    finally:
        await client.aclose()
    assert result.error is TokenError.TOKEN_STORE_UNAVAILABLE


async def test_unreachable_postgres_store_fails_closed() -> None:
    """Fault: Postgres is down. Consume must return TOKEN_STORE_UNAVAILABLE, never succeed."""
    pool = await asyncpg.create_pool(
        f"postgresql://postgres@127.0.0.1:{free_port()}/x", min_size=0, max_size=1, timeout=1
    )
    try:
        result = await PostgresTokenStore(pool, retention_seconds=RETENTION).consume(
            "t", PURPOSE, BOUND
        )
    finally:
        await pool.close()
    assert result.error is TokenError.TOKEN_STORE_UNAVAILABLE


@pytest.fixture(params=["redis", "postgres"])
async def race_target(
    request: pytest.FixtureRequest,
    redis_client: aioredis.Redis,
    redis_url: str,
    redis_prefix: str,
    database_url: str,
    migrated_pg: asyncpg.Pool,
) -> AsyncIterator[tuple[str, str, TokenStore]]:
    if request.param == "redis":
        yield (
            "redis",
            redis_url,
            RedisTokenStore(redis_client, RedisKeys(redis_prefix), retention_seconds=RETENTION),
        )
    else:
        yield "postgres", database_url, PostgresTokenStore(migrated_pg, retention_seconds=RETENTION)


async def test_200_concurrent_consumers_in_4_processes_yield_exactly_one_success(
    race_target: tuple[str, str, TokenStore], redis_prefix: str
) -> None:
    kind, url, store = race_target
    token = await store.issue(PURPOSE, BOUND, TTL)
    totals = await race_processes(
        "tests.support.token_consumer", kind, url, redis_prefix, token.raw, BOUND, "50"
    )
    assert totals == {"ok": 1, "TOKEN_USED": 199}
