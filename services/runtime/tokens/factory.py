"""The token store a service uses, chosen by `PTF_TOKEN_STORE` (redis by default, or postgres)."""

from __future__ import annotations

from services.runtime.server import Runtime
from services.runtime.tokens.postgres_store import PostgresTokenStore
from services.runtime.tokens.redis_store import RedisTokenStore
from services.runtime.tokens.store import Clock, TokenStore, system_clock


def create_token_store(
    runtime: Runtime, *, retention_seconds: float, clock: Clock = system_clock
) -> TokenStore:
    """Every token user (gate overrides, tenant purge) builds its store the same way.

    The Postgres store needs `TOKEN_MIGRATIONS` among the service's migrations.
    """
    if runtime.config.token_store == "postgres":
        return PostgresTokenStore(runtime.pool, retention_seconds=retention_seconds, clock=clock)
    return RedisTokenStore(
        runtime.redis, runtime.keys, retention_seconds=retention_seconds, clock=clock
    )
