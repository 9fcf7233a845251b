"""Run every benchmark against embedded stores and print one table."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from bench.report import BenchRow, render
from bench.tokens import bench_tokens
from services.runtime.devservers import EmbeddedRedis


async def _all(redis_url: str) -> list[BenchRow]:
    return [*await bench_tokens(redis_url)]


def main() -> None:
    Path(".data").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=".data", prefix="bench-") as folder:
        redis_server = EmbeddedRedis(Path(folder) / "redis")
        redis_url = redis_server.start()
        try:
            rows = asyncio.run(_all(redis_url))
        finally:
            redis_server.stop()
    print(render(rows))


if __name__ == "__main__":
    main()
