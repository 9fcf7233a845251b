"""Token consume throughput vs raw GETDEL on the same Redis (SPEC §12: ≥ 0.7×)."""

from __future__ import annotations

import redis.asyncio as aioredis

from bench.load import Operation, run_closed_loop
from bench.report import BenchRow
from services.runtime.redis_client import RedisKeys
from services.runtime.tokens.errors import params_hash
from services.runtime.tokens.redis_store import RedisTokenStore

CONCURRENCY = 32
COUNT = 5000


async def bench_tokens(redis_url: str) -> list[BenchRow]:
    client = aioredis.Redis.from_url(redis_url, max_connections=CONCURRENCY)
    keys = RedisKeys("bench")
    store = RedisTokenStore(client, keys, retention_seconds=60)
    bound = params_hash({"bench": True})
    try:
        raws = [(await store.issue("bench", bound, 600)).raw for _ in range(COUNT)]
        plain_keys = [keys.key("plain", str(i)) for i in range(COUNT)]
        async with client.pipeline(transaction=False) as pipe:
            for key in plain_keys:
                pipe.set(key, b"x" * 200)
            await pipe.execute()

        def consume(raw: str) -> Operation:
            return lambda: store.consume(raw, "bench", bound)

        def getdel(key: str) -> Operation:
            return lambda: client.getdel(key)

        baseline = await run_closed_loop([getdel(k) for k in plain_keys], CONCURRENCY)
        measured = await run_closed_loop([consume(r) for r in raws], CONCURRENCY)
    finally:
        await client.aclose()
    rate, base = measured.ops_per_second, baseline.ops_per_second
    return [
        BenchRow(
            "token consume (Redis Lua) vs GETDEL", rate, "/s", base, "≥ 0.7×", rate >= 0.7 * base
        )
    ]
