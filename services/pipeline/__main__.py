"""`ptf-pipeline` / `python -m services.pipeline`: the pipeline's command line.

    ptf-pipeline                              serve the API (gRPC + HTTP) until SIGTERM
    ptf-pipeline migrate                      apply the pipeline's migrations and exit
    ptf-pipeline worker [--concurrency N] [--relay] [--http-port P]
                                              run worker loops only (scale as wanted)
    ptf-pipeline load-market-prices FILE      upsert PTF/YEKDEM prices from CSV
    ptf-pipeline load-tariffs FILE            upsert distribution tariffs from CSV
    ptf-pipeline keys create --tenant T [--tenant U] [--role tenant|admin] [--label L]
                                              store a new API key; prints it once
    ptf-pipeline keys revoke KEY_ID           revoke a key by its id (>= 8 hex chars)
    ptf-pipeline keys list                    every key's id, role, tenants and status

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
from datetime import datetime
from pathlib import Path
from typing import NoReturn, TypeVar

import asyncpg

from services.pipeline.auth import (
    KeyInfo,
    KeyStore,
    Role,
    key_id_of,
    validate_key_id,
    validate_tenant_id,
)
from services.pipeline.domain import TableError, parse_market_prices_csv, parse_tariffs_csv
from services.pipeline.market import MarketStore
from services.pipeline.service import DEFINITION, MIGRATIONS, migrate, run_worker_process
from services.runtime.config import AppConfig
from services.runtime.db import create_pool
from services.runtime.errors import InvalidInput, PtfError
from services.runtime.logs import configure_logging
from services.runtime.migrate import run_migrations
from services.runtime.server import EXIT_CONFIG, load_validated_config, run_service
from services.runtime.timestamps import utc_timestamp

log = logging.getLogger(__name__)

EXIT_FAILURE = 1  # the command was fine but what it names does not exist
EXIT_USAGE = 64  # sysexits.h: the command was used incorrectly
EXIT_DATAERR = 65  # sysexits.h: the input data was incorrect
EXIT_NOINPUT = 66  # sysexits.h: the input file did not exist or was not readable

_R = TypeVar("_R")


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors exiting 64; subcommand parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _argument(validate: Callable[[str], str]) -> Callable[[str], str]:
    """An argparse type from a domain validator: a bad value is a usage error before any I/O."""

    def parse(raw: str) -> str:
        try:
            return validate(raw)
        except PtfError as exc:
            raise argparse.ArgumentTypeError(f"{raw!r}: {exc.message}") from None

    return parse


def _add_key_commands(commands: argparse._SubParsersAction[_Parser]) -> None:
    keys = commands.add_parser("keys", help="create, revoke and list API keys")
    key_commands = keys.add_subparsers(
        dest="keys_command", required=True, metavar="{create,revoke,list}"
    )
    create = key_commands.add_parser("create", help="store a new API key and print it once")
    create.add_argument(
        "--role", type=Role, choices=list(Role), default=Role.TENANT, help="default: tenant"
    )
    create.add_argument(
        "--tenant",
        action="append",
        default=[],
        type=_argument(validate_tenant_id),
        help="granted tenant (repeat); a tenant key needs one, an admin key grants all",
    )
    create.add_argument("--label", default="", help="shown by `keys list`, e.g. the key's holder")
    revoke = key_commands.add_parser("revoke", help="revoke a key by its key id")
    revoke.add_argument(
        "key_id",
        type=_argument(validate_key_id),
        help="the id printed by `keys create` / `keys list`, or its first 8+ characters",
    )
    key_commands.add_parser("list", help="every key's id, role, tenants and status")


def _grant_problem(role: Role, tenants: Sequence[str]) -> str | None:
    if role is Role.TENANT and not tenants:
        return "a tenant key needs at least one --tenant"
    if role is Role.ADMIN and tenants:
        return "an admin key grants every tenant and takes no --tenant"
    return None


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments, with a role/tenant mismatch refused here: before config or database."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "keys" and args.keys_command == "create":
        problem = _grant_problem(args.role, args.tenant)
        if problem:
            parser.exit(EXIT_USAGE, f"{parser.prog} keys create: error: {problem}\n")
    return args


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
    _add_key_commands(commands)
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


def _create_key(config: AppConfig, role: Role, tenants: Sequence[str], label: str) -> int:
    raw = asyncio.run(_with_pool(config, lambda pool: KeyStore(pool).create(role, tenants, label)))
    granted = ", ".join(sorted(set(tenants))) if role is Role.TENANT else "every tenant"
    print(raw)
    print(
        f"created {role} key {key_id_of(raw)} for {granted};"
        " the key above is shown once and cannot be recovered",
        file=sys.stderr,
    )
    return 0


def _revoke_key(config: AppConfig, key_id: str, cache_seconds: float) -> int:
    try:
        info = asyncio.run(_with_pool(config, lambda pool: KeyStore(pool).revoke(key_id)))
    except InvalidInput as exc:  # a prefix of several keys
        print(f"ptf-pipeline keys revoke: error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    if info is None:
        print(f"ptf-pipeline keys revoke: no API key has the id {key_id}", file=sys.stderr)
        return EXIT_FAILURE
    revoked_at = _timestamp(info.revoked_at)
    print(f"revoked {info.role} key {info.key_id} ({info.label or 'no label'}) at {revoked_at}")
    print(
        f"running services may accept it from their cache for up to {cache_seconds:g}s more",
        file=sys.stderr,
    )
    return 0


def _timestamp(moment: datetime | None) -> str:
    return utc_timestamp(moment) if moment else "-"


def _key_table(keys: Sequence[KeyInfo]) -> list[str]:
    """Aligned columns; an admin key's tenants show as `*` (no tenant id can be `*`)."""
    rows = [("KEY ID", "ROLE", "STATUS", "CREATED", "REVOKED", "TENANTS", "LABEL")]
    rows += [
        (
            k.key_id,
            k.role.value,
            "revoked" if k.revoked_at else "active",
            _timestamp(k.created_at),
            _timestamp(k.revoked_at),
            ",".join(k.tenants) if k.role is Role.TENANT else "*",
            k.label,
        )
        for k in keys
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join(
            [*(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]]
        ).rstrip()
        for row in rows
    ]


def _keys(config: AppConfig, args: argparse.Namespace) -> int:
    if args.keys_command == "create":
        return _create_key(config, args.role, args.tenant, args.label)
    if args.keys_command == "revoke":
        return _revoke_key(config, args.key_id, config.pipeline.key_cache_seconds)
    keys = asyncio.run(_with_pool(config, lambda pool: KeyStore(pool).list_keys()))
    print("\n".join(_key_table(keys)))
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
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
    if command == "keys":
        raise SystemExit(_keys(config, args))
    raise SystemExit(_load_table(config, command, args.file))


if __name__ == "__main__":
    main()
