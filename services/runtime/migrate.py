"""`ptf-<service> migrate`: apply one service's migration sets, then exit.

Services migrate at start as well, under the same advisory lock; this command is
what the Kubernetes migration Job runs, so a release applies its schema changes
once, before new pods start, and a migration that does not apply fails the Job
instead of crash-looping every new pod.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterable

from services.runtime.db import MigrationSet, apply_migration_sets, create_pool
from services.runtime.logs import configure_logging
from services.runtime.server import EXIT_CONFIG, load_validated_config

log = logging.getLogger(__name__)


async def _apply(database_url: str, migration_sets: Iterable[MigrationSet]) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        await apply_migration_sets(pool, migration_sets)
    finally:
        await pool.close()


def run_migrations(service: str, migration_sets: Iterable[MigrationSet]) -> int:
    """Validate the service's config, apply its migrations; 0 when applied, 78 without a DSN."""
    configure_logging(service)
    config = load_validated_config(service)
    if not config.database_url:
        print("DATABASE_URL must be set", file=sys.stderr)
        return EXIT_CONFIG
    sets = tuple(migration_sets)
    asyncio.run(_apply(config.database_url, sets))
    log.info("migrations applied", extra={"components": [s.component for s in sets]})
    return 0
