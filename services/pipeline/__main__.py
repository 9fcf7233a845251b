"""`ptf-pipeline` / `python -m services.pipeline`: the pipeline's command line.

    ptf-pipeline                              serve the API (gRPC + HTTP) until SIGTERM
    ptf-pipeline worker [--concurrency N] [--relay] [--http-port P]
                                              run worker loops only (scale as wanted)
    ptf-pipeline load-market-prices FILE      upsert PTF/YEKDEM prices from CSV
    ptf-pipeline load-tariffs FILE            upsert distribution tariffs from CSV
    ptf-pipeline create-key --role tenant --tenant T [--tenant U] [--label L]
                                              store a new API key; prints it once

This module is the one place where the pipeline's operational settings
(`services.pipeline.settings`) are read from the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import asyncpg

from services.pipeline.auth import KeyStore, Role
from services.pipeline.domain import TableError, parse_market_prices_csv, parse_tariffs_csv
from services.pipeline.market import MarketStore
from services.pipeline.service import make_definition, migrate, run_worker_process
from services.pipeline.settings import PipelineSettings
from services.runtime.config import AppConfig
from services.runtime.db import create_pool
from services.runtime.errors import PtfError
from services.runtime.logs import configure_logging
from services.runtime.server import EXIT_CONFIG, load_validated_config, run_service

log = logging.getLogger(__name__)

EXIT_DATAERR = 65  # sysexits.h: the input data was incorrect
EXIT_NOINPUT = 66  # sysexits.h: the input file did not exist or was not readable

_T = TypeVar("_T", int, float, bool)
_R = TypeVar("_R")


def _read(
    environ: Mapping[str, str],
    name: str,
    default: _T,
    parse: Callable[[str], _T],
    problems: list[str],
) -> _T:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse(raw)
    except ValueError:
        problems.append(f"{name}: {raw!r} is not a valid {type(default).__name__}")
        return default


def _boolean(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(raw)


def settings_from_env(environ: Mapping[str, str]) -> tuple[PipelineSettings, list[str]]:
    """Operational settings from `PTF_PIPELINE_*` / `PTF_QUEUE_*` env vars, plus problems."""
    problems: list[str] = []
    base = PipelineSettings()
    q = base.queue
    queue = replace(
        q,
        max_attempts=_read(environ, "PTF_QUEUE_MAX_ATTEMPTS", q.max_attempts, int, problems),
        visibility_timeout_seconds=_read(
            environ,
            "PTF_QUEUE_VISIBILITY_TIMEOUT_SECONDS",
            q.visibility_timeout_seconds,
            float,
            problems,
        ),
        backoff_base_seconds=_read(
            environ, "PTF_QUEUE_BACKOFF_BASE_SECONDS", q.backoff_base_seconds, float, problems
        ),
        backoff_max_seconds=_read(
            environ, "PTF_QUEUE_BACKOFF_MAX_SECONDS", q.backoff_max_seconds, float, problems
        ),
    )
    intake = replace(
        base.intake,
        sync_timeout_seconds=_read(
            environ,
            "PTF_PIPELINE_SYNC_TIMEOUT_SECONDS",
            base.intake.sync_timeout_seconds,
            float,
            problems,
        ),
    )
    extractor = replace(
        base.extractor,
        request_timeout_seconds=_read(
            environ,
            "PTF_PIPELINE_EXTRACTOR_TIMEOUT_SECONDS",
            base.extractor.request_timeout_seconds,
            float,
            problems,
        ),
    )
    settings = replace(
        base,
        queue=queue,
        intake=intake,
        extractor=extractor,
        inprocess_workers=_read(
            environ, "PTF_PIPELINE_INPROCESS_WORKERS", base.inprocess_workers, int, problems
        ),
        run_relay=_read(environ, "PTF_PIPELINE_RELAY", base.run_relay, _boolean, problems),
    )
    problems.extend(settings.problems())
    return settings, problems


def _settings_or_exit() -> PipelineSettings:
    settings, problems = settings_from_env(os.environ)
    if problems:
        log.error("Config validation failed with %d error(s)", len(problems))
        for problem in problems:
            print(f"config error: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG)
    return settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ptf-pipeline", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the API (default)")
    worker = commands.add_parser("worker", help="run worker loops only")
    worker.add_argument("--concurrency", type=int, default=2, help="worker loops (default 2)")
    worker.add_argument("--relay", action="store_true", help="also relay the outbox to telemetry")
    worker.add_argument(
        "--http-port", type=int, default=None, help="serve /health and /metrics on this port"
    )
    for name, what in (("load-market-prices", "market prices"), ("load-tariffs", "tariffs")):
        loader = commands.add_parser(name, help=f"upsert {what} from a CSV file")
        loader.add_argument("file", type=Path)
    key = commands.add_parser("create-key", help="store a new API key and print it once")
    key.add_argument("--role", choices=[r.value for r in Role], required=True)
    key.add_argument("--tenant", action="append", default=[], help="granted tenant (repeat)")
    key.add_argument("--label", default="")
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


def _create_key(config: AppConfig, role: str, tenants: Sequence[str], label: str) -> int:
    if role == Role.TENANT.value and not tenants:
        print("a tenant key needs at least one --tenant", file=sys.stderr)
        return EXIT_DATAERR
    try:
        raw = asyncio.run(
            _with_pool(config, lambda pool: KeyStore(pool).create(Role(role), tenants, label))
        )
    except PtfError as exc:
        print(f"{exc.field or 'key'}: {exc.message}", file=sys.stderr)
        return EXIT_DATAERR
    print(raw)
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    command = args.command or "serve"
    if command == "serve":
        run_service(make_definition(_settings_or_exit()))
        return
    configure_logging("pipeline")
    settings = _settings_or_exit()
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
                    settings,
                    args.concurrency,
                    relay=args.relay,
                    http_port=args.http_port,
                )
            )
        raise SystemExit(code)
    if command == "create-key":
        raise SystemExit(_create_key(config, args.role, args.tenant, args.label))
    raise SystemExit(_load_table(config, command, args.file))


if __name__ == "__main__":
    main()
