"""Versioned migrations under an advisory lock: concurrent runs apply each version once."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import pytest

from services.runtime.db import (
    MigrationError,
    apply_migrations,
    discover_migrations,
)


def _write(folder: Path, name: str, sql: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(sql)


async def test_migrations_run_twice_concurrently_apply_once(
    tmp_path: Path, database_url: str, pg: asyncpg.Pool
) -> None:
    component = f"t{uuid.uuid4().hex[:8]}"
    table = f"{component}_counter"
    _write(tmp_path, "0001_create.sql", f"CREATE TABLE {table} (n int);")
    _write(tmp_path, "0002_insert.sql", f"SELECT pg_sleep(0.2); INSERT INTO {table} VALUES (1);")
    migrations = discover_migrations(component, tmp_path)

    async def run() -> list[int]:
        conn = await asyncpg.connect(database_url)
        try:
            return await apply_migrations(conn, migrations)
        finally:
            await conn.close()

    first, second = await asyncio.gather(run(), run())
    assert sorted([first, second]) == [[], [1, 2]]
    assert await pg.fetchval(f"SELECT count(*) FROM {table}") == 1
    ledger = await pg.fetch(
        "SELECT version FROM ptf_schema_migrations WHERE component = $1 ORDER BY version",
        component,
    )
    assert [r["version"] for r in ledger] == [1, 2]


async def test_failed_migration_leaves_nothing_half_applied(
    tmp_path: Path, pg: asyncpg.Pool
) -> None:
    component = f"t{uuid.uuid4().hex[:8]}"
    _write(tmp_path, "0001_broken.sql", f"CREATE TABLE {component}_x (n int); SELECT 1/0;")
    migrations = discover_migrations(component, tmp_path)
    async with pg.acquire() as conn:
        with pytest.raises(asyncpg.DivisionByZeroError):
            await apply_migrations(conn, migrations)
    assert await pg.fetchval("SELECT to_regclass($1)", f"{component}_x") is None
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM ptf_schema_migrations WHERE component = $1", component
        )
        == 0
    )


async def test_edited_applied_migration_is_detected(tmp_path: Path, pg: asyncpg.Pool) -> None:
    component = f"t{uuid.uuid4().hex[:8]}"
    _write(tmp_path, "0001_create.sql", f"CREATE TABLE {component}_y (n int);")
    async with pg.acquire() as conn:
        await apply_migrations(conn, discover_migrations(component, tmp_path))
        _write(tmp_path, "0001_create.sql", f"CREATE TABLE {component}_y (n bigint);")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await apply_migrations(conn, discover_migrations(component, tmp_path))


def test_migration_versions_must_not_have_gaps(tmp_path: Path) -> None:
    _write(tmp_path, "0001_a.sql", "SELECT 1;")
    _write(tmp_path, "0003_c.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match="without gaps"):
        discover_migrations("x", tmp_path)


def test_misnamed_migration_file_is_rejected(tmp_path: Path) -> None:
    _write(tmp_path, "1_create.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNNN_name\.sql"):
        discover_migrations("x", tmp_path)
