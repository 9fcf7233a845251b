"""asyncpg pool creation, versioned SQL migrations, and what "the database is down" raises.

Every service applies its own migration folder at start; the advisory lock
makes concurrent replicas wait for each other instead of racing, and the
checksum column catches a migration file edited after it was applied.

`DATABASE_DOWN` is the one list of exceptions that mean Postgres is
unreachable, restarting or dropping our connections; every store that answers
503 / "unavailable" for an outage catches exactly this tuple, so a fix to it
reaches every service at once.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from services.runtime.traffic import StoreTraffic

log = logging.getLogger(__name__)

# Postgres unreachable (OSError, TimeoutError), refusing or dropping connections
# (PostgresConnectionError, OperatorInterventionError: admin shutdown, "cannot
# connect now" while it starts), or a connection broken under us (InterfaceError).
# During a restart a pooled connection can also fail with InternalClientError
# ("another operation is in progress"); inside a transaction block its release
# then fails the rollback and the pool drops it, so the next attempt gets a new one.
DATABASE_DOWN: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


def advisory_lock_key(name: str) -> int:
    """A stable signed 64-bit Postgres advisory-lock key derived from a name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


# One lock for all of ptf-admin's migrations, whichever service applies them.
MIGRATION_LOCK_KEY = advisory_lock_key("ptf-migrations")
_FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """A migration folder is malformed or an applied migration was edited."""


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class MigrationSet:
    """A versioned migration folder, tracked under its own component name."""

    component: str
    folder: Path


def discover_migrations(component: str, folder: Path) -> list[Migration]:
    """Read `NNNN_name.sql` files in version order; reject gaps and stray files."""
    migrations = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILE_PATTERN.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNNN_name.sql")
        migrations.append(
            Migration(component, int(match[1]), match[2], path.read_text(encoding="utf-8"))
        )
    expected = list(range(1, len(migrations) + 1))
    if [m.version for m in migrations] != expected:
        raise MigrationError(f"{folder}: versions must be 1..N without gaps")
    return migrations


_LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS ptf_schema_migrations (
    component  text        NOT NULL,
    version    integer     NOT NULL,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
)
"""


async def apply_migrations(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy, migrations: list[Migration]
) -> list[int]:
    """Apply the pending migrations, each in its own transaction; return the versions applied."""
    applied_now: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(_LEDGER_DDL)
        for migration in migrations:
            row = await conn.fetchrow(
                "SELECT checksum FROM ptf_schema_migrations WHERE component = $1 AND version = $2",
                migration.component,
                migration.version,
            )
            if row is not None:
                if row["checksum"] != migration.checksum:
                    raise MigrationError(
                        f"{migration.component} migration {migration.version:04d}_{migration.name}"
                        " changed after it was applied"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO ptf_schema_migrations (component, version, name, checksum)"
                    " VALUES ($1, $2, $3, $4)",
                    migration.component,
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            applied_now.append(migration.version)
            log.info(
                "applied migration",
                extra={"component": migration.component, "version": migration.version},
            )
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied_now


async def apply_migration_sets(pool: asyncpg.Pool, migration_sets: Iterable[MigrationSet]) -> None:
    """Apply every set's pending migrations, in order (services, CLI commands, tests)."""
    async with pool.acquire() as conn:
        for migration_set in migration_sets:
            await apply_migrations(
                conn, discover_migrations(migration_set.component, migration_set.folder)
            )


# The Connection methods that send a statement; each one counts once (asyncpg's
# transaction blocks issue BEGIN / COMMIT / ROLLBACK through `execute`).
_STATEMENT_METHODS = (
    "execute",
    "executemany",
    "fetch",
    "fetchrow",
    "fetchval",
    "fetchmany",
    "copy_from_table",
    "copy_from_query",
    "copy_to_table",
    "copy_records_to_table",
)


def _counted(method: Callable[..., Awaitable[Any]], traffic: StoreTraffic) -> Any:
    @functools.wraps(method)
    async def call(self: asyncpg.Connection, *args: Any, **kwargs: Any) -> Any:
        # Read before the statement is sent: outside a block, it opens a transaction.
        traffic.db_statement(self.is_in_transaction())
        return await method(self, *args, **kwargs)

    return call


def counting_connection_class(traffic: StoreTraffic) -> type[asyncpg.Connection]:
    """An asyncpg Connection class whose statements are counted in `traffic`.

    A subclass rather than asyncpg's query logger: the logger times every query
    and schedules a loop callback per statement, and it never sees COPY.
    """

    class CountingConnection(asyncpg.Connection):
        """A connection that adds each statement it sends to its pool's traffic."""

    for name in _STATEMENT_METHODS:
        setattr(CountingConnection, name, _counted(getattr(asyncpg.Connection, name), traffic))
    return CountingConnection


async def create_pool(
    database_url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    traffic: StoreTraffic | None = None,
    generic_plans: bool = False,
) -> asyncpg.Pool:
    """A pool whose connections report the service in `pg_stat_activity`.

    With `traffic`, every statement a pooled connection sends (and every
    transaction it starts) is counted there: the service's `/metrics` shows the
    database load per request (readiness under a probe storm, statements per invoice).

    With `generic_plans`, every statement on these connections is planned once and
    then runs its cached generic plan. Only for statements whose best plan does not
    depend on their parameters' values: left to choose, PostgreSQL keeps re-planning
    a statement whose first executions were cheap with a custom plan, on every
    execution for the connection's lifetime (docs/performance.md).
    """
    settings = {"application_name": "ptf-admin"}
    if generic_plans:
        settings["plan_cache_mode"] = "force_generic_plan"

    async def keep_session(conn: asyncpg.Connection) -> None:
        """Release without asyncpg's default `RESET ALL; UNLISTEN *; ...` round trip.

        Our statements leave no session state behind (no SET, LISTEN or held
        advisory lock outlives its block; asyncpg still rolls back an open
        transaction itself), so the reset only cost one query per acquire.
        """
        del conn

    pool = await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        command_timeout=30,
        server_settings=settings,
        connection_class=(
            asyncpg.Connection if traffic is None else counting_connection_class(traffic)
        ),
        reset=keep_session,
    )
    return pool
