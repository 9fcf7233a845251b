"""Errors of the pipeline's adapters.

`STORE_ERRORS` lists what Postgres and Redis raise when they are down or
going away; background loops survive these (log, back off, retry). Request
handlers turn the Postgres outages (`services.runtime.db.DATABASE_DOWN`, shared
by every service) into 503 DATABASE_UNAVAILABLE.
"""

from __future__ import annotations

import asyncpg
from redis.exceptions import RedisError

from services.runtime.db import DATABASE_DOWN
from services.runtime.errors import InvalidInput

# Anything a store outage raises, for loops that must outlive one.
STORE_ERRORS: tuple[type[BaseException], ...] = (
    *DATABASE_DOWN,
    asyncpg.PostgresError,
    RedisError,
)


class PipelineError(Exception):
    """Root of the pipeline adapters' internal failures (lost lease, extractor, relay).

    Client-facing refusals are `PtfError`s (runtime) and the domain's
    `PipelineDomainError`; these never reach a client as such.
    """


class UnsupportedMediaType(InvalidInput):
    """A file that is neither an extraction JSON document nor a PDF or image."""

    http_status = 415
