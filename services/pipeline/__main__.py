"""`ptf-pipeline` / `python -m services.pipeline`: the pipeline's command line.

    ptf-pipeline                              serve the API (gRPC + HTTP) until SIGTERM
    ptf-pipeline migrate                      apply the pipeline's migrations and exit
    ptf-pipeline worker [--concurrency N] [--relay] [--http-port P]
                                              run worker loops only (scale as wanted)
    ptf-pipeline load-market-prices FILE      upsert PTF/YEKDEM prices from CSV
    ptf-pipeline load-tariffs FILE            upsert distribution tariffs from CSV

API keys are managed for every service at once with `ptf-admin keys`.

Usage errors exit 64 (sysexits EX_USAGE), like the command's other sysexits
codes (65, 66, 78), rather than argparse's default 2.

The pipeline's operational settings (queue, relay, intake and extractor
timings) are read with the rest of the configuration (`config.pipeline`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

import asyncpg

from services.pipeline.domain import TableError, parse_market_prices_csv, parse_tariffs_csv
from services.pipeline.market import MarketStore
from services.pipeline.service import DEFINITION, MIGRATIONS, migrate, run_worker_process
from services.runtime.config import AppConfig
from services.runtime.db import create_pool
from services.runtime.logs import configure_logging
from services.runtime.migrate import run_migrations
from services.runtime.server import EXIT_CONFIG, load_validated_config, run_service

log = logging.getLogger(__name__)

EXIT_USAGE = 64  # sysexits.h: the command was used incorrectly
EXIT_DATAERR = 65  # sysexits.h: the input data was incorrect
EXIT_NOINPUT = 66  # sysexits.h: the input file did not exist or was not readable

_R = TypeVar("_R")


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors exiting 64; subcommand parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> _Parser:
    parser = _Parser(prog="ptf-pipeline", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the API (default)")
    commands.add_parser("migrate", help="apply the pipeline's migrations and exit")
    worker = commands.add_parser("worker", help="run worker loops only")
    worker.add_argument("--concurrency", type=int, default=2, help="worker loops (default 2)")
    worker.add_argument("--relay", action="store_true", help="also relay the outbox to telemetry")
    worker.add_argument(
        "--http-port", type=int, default=None, help="serve /health and /metrics on this port"
    )
    for name, what in (("load-market-prices", "market prices"), ("load-tariffs", "tariffs")):
        loader = commands.add_parser(name, help=f"upsert {what} from a CSV file")
        loader.add_argument("file", type=Path)
    return parser


async def _with_pool(config: AppConfig, work: Callable[[asyncpg.Pool], Awaitable[_R]]) -> _R:
    """Run `work` on a short-lived pool after applying migrations."""
    pool = await create_pool(config.database_url, max_size=2)
    try:
        await migrate(pool)
        return await work(pool)
    finally:
        await pool.close()


def _load_table(config: AppConfig, command: str, file: Path) -> int:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{file}: cannot read ({exc})", file=sys.stderr)
        return EXIT_NOINPUT
    try:
        if command == "load-market-prices":
            prices = parse_market_prices_csv(text, str(file))
            count = asyncio.run(
                _with_pool(config, lambda pool: MarketStore(pool).upsert_prices(prices, file.name))
            )
        else:
            tariffs = parse_tariffs_csv(text, str(file))
            count = asyncio.run(
                _with_pool(
                    config, lambda pool: MarketStore(pool).upsert_tariffs(tariffs, file.name)
                )
            )
    except TableError as exc:
        for problem in exc.problems:
            print(f"{file}: {problem}", file=sys.stderr)
        print(f"{file}: not loaded ({len(exc.problems)} problem(s))", file=sys.stderr)
        return EXIT_DATAERR
    print(f"loaded {count} row(s) from {file}")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    command = args.command or "serve"
    if command == "serve":
        run_service(DEFINITION)
        return
    if command == "migrate":
        raise SystemExit(run_migrations("pipeline", MIGRATIONS))
    configure_logging("pipeline")
    config = load_validated_config("pipeline")
    if not config.database_url:
        print("DATABASE_URL must be set", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG)
    if command == "worker":
        if not config.redis_url or args.concurrency < 1:
            print("REDIS_URL must be set and --concurrency >= 1", file=sys.stderr)
            raise SystemExit(EXIT_CONFIG)
        code = 0
        with contextlib.suppress(KeyboardInterrupt):
            code = asyncio.run(
                run_worker_process(
                    config,
                    config.pipeline,
                    args.concurrency,
                    relay=args.relay,
                    http_port=args.http_port,
                )
            )
        raise SystemExit(code)
    raise SystemExit(_load_table(config, command, args.file))


if __name__ == "__main__":
    main()
