"""Errors of the pipeline's adapters.

`STORE_ERRORS` lists what Postgres and Redis raise when they are down or
going away; background loops survive these (log, back off, retry) and request
handlers turn the Postgres ones into 503 DATABASE_UNAVAILABLE.
"""

from __future__ import annotations

import asyncpg
from redis.exceptions import RedisError

from services.runtime.errors import InvalidInput

# Postgres unreachable, restarting or terminating our connections. During an
# outage a pooled connection can also fail with InternalClientError ("another
# operation is in progress"); inside a transaction block its release then fails
# the rollback and the pool drops it, so the loop's next attempt gets a new one.
DATABASE_DOWN: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)
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
