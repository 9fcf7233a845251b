"""The token store a service uses, chosen by `PTF_TOKEN_STORE` (redis by default, or postgres)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from opentelemetry.metrics import Counter

from services.runtime.metric_registry import TOKEN_CONSUME_FAILURES
from services.runtime.server import Runtime
from services.runtime.tokens.errors import TokenError
from services.runtime.tokens.postgres_store import PostgresTokenStore
from services.runtime.tokens.redis_store import RedisTokenStore
from services.runtime.tokens.store import (
    Clock,
    ConsumeResult,
    IssuedToken,
    TokenInfo,
    TokenStore,
    system_clock,
)


class CountedTokenStore:
    """A token store whose failed consumes are counted by reason.

    `ptf_token_consume_failures_total{reason}` starts at 0 for every token
    error code, so a replayed or forged token shows as a rate, not as a new series.
    """

    def __init__(self, store: TokenStore, failures: Counter) -> None:
        self._store = store
        self._failures = failures
        for reason in TokenError:
            failures.add(0, {"reason": reason.value})

    async def issue(self, purpose: str, params_hash: str, ttl_seconds: float) -> IssuedToken:
        return await self._store.issue(purpose, params_hash, ttl_seconds)

    async def consume(self, raw_token: str, purpose: str, params_hash: str) -> ConsumeResult:
        result = await self._store.consume(raw_token, purpose, params_hash)
        if result.error is not None:
            self._failures.add(1, {"reason": result.error.value})
        return result

    async def describe(self, token_hash: str) -> TokenInfo | None:
        return await self._store.describe(token_hash)


def create_token_store(
    runtime: Runtime, *, retention_seconds: float, clock: Clock = system_clock
) -> TokenStore:
    """Every token user (gate overrides, tenant purge) builds its store the same way.

    The Postgres store needs `TOKEN_MIGRATIONS` among the service's migrations.
    """
    store: TokenStore
    if runtime.config.token_store == "postgres":
        store = PostgresTokenStore(runtime.pool, retention_seconds=retention_seconds, clock=clock)
    else:
        store = RedisTokenStore(
            runtime.redis, runtime.keys, retention_seconds=retention_seconds, clock=clock
        )
    return CountedTokenStore(store, runtime.metrics.shared_counter(TOKEN_CONSUME_FAILURES))


def expired_token_purge(
    runtime: Runtime, clock: Clock = system_clock
) -> Callable[[], Awaitable[int]]:
    """The housekeeping chore deleting `confirmation_tokens` rows past their retention.

    It runs whichever store is chosen: every token user applies `TOKEN_MIGRATIONS`,
    and rows written while the Postgres store was chosen must not outlive a switch
    to Redis (whose records expire by their own TTL).
    """
    return PostgresTokenStore(runtime.pool, retention_seconds=0.0, clock=clock).purge_expired
