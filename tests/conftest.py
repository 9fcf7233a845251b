"""Suite-wide fixtures: real PostgreSQL and Redis, and in-process services on free ports.

Stores come from TEST_DATABASE_URL / TEST_REDIS_URL when given, else embedded
servers started for this run (see tests/support/stores.py).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager

import asyncpg
import pytest
import redis.asyncio as aioredis
from hypothesis import settings

from services.runtime.config import AppConfig
from services.runtime.redis_client import create_redis
from services.runtime.server import ServiceDefinition
from tests.support.services import (
    ConfigFactory,
    ServiceHandle,
    make_config_factory,
    running_service,
)
from tests.support.stores import fresh_database, postgres_server, redis_server

# CI runs the same examples every time (no flaky discoveries, no timing deadlines
# on a shared 2-core machine); local runs keep exploring new examples.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh, empty database for this test run (migrations are applied by services)."""
    with postgres_server() as server_url, fresh_database(server_url) as url:
        yield url


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    """Another new database on the same server, with no migrations applied: a first start."""
    with fresh_database(database_url) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture
def redis_prefix() -> str:
    """An isolated keyspace per test: every key a service builds starts with it."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_config(database_url: str, redis_url: str, redis_prefix: str) -> ConfigFactory:
    """`make_config("gate", PTF_THRESHOLD__GATE__S1_RATE_MAX="0.2")` → AppConfig on ports 0."""
    return make_config_factory(
        {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "PTF_REDIS_PREFIX": redis_prefix}
    )


StartService = Callable[..., AbstractAsyncContextManager[ServiceHandle]]


@pytest.fixture
def start_service(make_config: ConfigFactory) -> StartService:
    """`async with start_service(DEFINITION) as svc:` → svc.channel, svc.http, svc.running."""

    def start(
        definition: ServiceDefinition, config: AppConfig | None = None, **env: str
    ) -> AbstractAsyncContextManager[ServiceHandle]:
        return running_service(definition, config or make_config(definition.name, **env))

    return start


@pytest.fixture
async def pg(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A direct pool to the test database, for arranging and asserting rows."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = create_redis(redis_url)
    yield client
    await client.aclose()
