"""Real PostgreSQL and Redis for tests: from TEST_DATABASE_URL/TEST_REDIS_URL or embedded.

Each test run gets a fresh database (created here, dropped at the end) so runs
never see each other's rows, whichever server they use.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from services.runtime.devservers import EmbeddedPostgres, EmbeddedRedis

DATA_ROOT = Path(__file__).resolve().parents[2] / ".data"


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def _create_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextmanager
def postgres_server() -> Iterator[str]:
    """URL of a server the tests may create databases on."""
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        yield given
        return
    DATA_ROOT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=DATA_ROOT, prefix="test-pg-") as folder:
        server = EmbeddedPostgres(Path(folder))
        url = server.start()
        try:
            yield url
        finally:
            server.stop()


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on `server_url` for this run, dropped afterwards."""
    name = f"ptf_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_create_database(server_url, name))
    try:
        yield _with_database(server_url, name)
    finally:
        asyncio.run(_drop_database(server_url, name))


@contextmanager
def redis_server() -> Iterator[str]:
    """URL of a Redis the tests may use; isolation comes from per-test key prefixes."""
    given = os.environ.get("TEST_REDIS_URL")
    if given:
        yield given
        return
    DATA_ROOT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=DATA_ROOT, prefix="test-redis-") as folder:
        server = EmbeddedRedis(Path(folder))
        url = server.start()
        try:
            yield url
        finally:
            server.stop()
