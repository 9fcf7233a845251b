"""A separate process that races to consume one token: `python -m tests.support.token_consumer`.

Arguments: store (redis|postgres), url, redis prefix, raw token, params hash, tasks.
Prints "ready", waits for "go" on stdin, then consumes with `tasks` concurrent
tasks and prints a JSON object counting outcomes.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys

import asyncpg
import redis.asyncio as aioredis

from services.runtime.redis_client import RedisKeys
from services.runtime.tokens.postgres_store import PostgresTokenStore
from services.runtime.tokens.redis_store import RedisTokenStore
from services.runtime.tokens.store import TokenStore

PURPOSE = "test.race"


async def main(kind: str, url: str, prefix: str, token: str, params: str, tasks: int) -> None:
    store: TokenStore
    pool: asyncpg.Pool | None = None
    client: aioredis.Redis | None = None
    if kind == "redis":
        client = aioredis.Redis.from_url(url, max_connections=tasks)
        store = RedisTokenStore(client, RedisKeys(prefix), retention_seconds=600)
        await client.ping()
    else:
        pool = await asyncpg.create_pool(url, min_size=tasks // 2, max_size=tasks // 2)
        store = PostgresTokenStore(pool, retention_seconds=600)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    results = await asyncio.gather(*(store.consume(token, PURPOSE, params) for _ in range(tasks)))
    counts = collections.Counter("ok" if r.ok else str(r.error) for r in results)
    print(json.dumps(counts), flush=True)
    if client is not None:
        await client.aclose()
    if pool is not None:
        await pool.close()


if __name__ == "__main__":
    kind, url, prefix, token, params, tasks = sys.argv[1:7]
    asyncio.run(main(kind, url, prefix, token, params, int(tasks)))
