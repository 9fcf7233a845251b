"""`ptf-telemetry summary`: print one `run_summary` JSON line (docs/seeds/003.txt §5.1) on demand.

Reads the event store directly (DATABASE_URL), so it works in the telemetry pod
even when the service is not serving. Exit codes: 0 printed, 64 usage error,
69 database unavailable, 78 invalid configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from services.runtime.config import AppConfig
from services.runtime.db import apply_migration_sets, create_pool
from services.runtime.errors import Unavailable
from services.runtime.metric_stores import GateMetricStore, MetricStore
from services.telemetry.app import Telemetry, utc_now
from services.telemetry.domain.errors import TelemetryError
from services.telemetry.domain.events import parse_tenant_filter
from services.telemetry.domain.window import parse_instant, resolve_window
from services.telemetry.repository import EventRepository
from services.telemetry.service import MIGRATIONS
from services.telemetry.stores import TelemetryMetricStores

EXIT_USAGE = 64
EXIT_UNAVAILABLE = 69


def add_summary_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", default="24h", help="start: 24h, 7d or an RFC 3339 time")
    parser.add_argument("--until", default="", help="end: RFC 3339 time or 1h (default: now)")
    parser.add_argument("--tenant-id", default="", help="one tenant (default: all tenants)")


async def _summary(config: AppConfig, args: argparse.Namespace) -> dict[str, object]:
    now = utc_now()
    since = parse_instant(args.since, now=now, field="since")
    until = parse_instant(args.until, now=now, field="until") if args.until else None
    window = resolve_window(since, until, now=now)
    tenant = parse_tenant_filter(args.tenant_id)
    try:
        pool = await create_pool(config.database_url, min_size=1, max_size=2)
    except (OSError, TimeoutError) as exc:
        raise Unavailable("STORE_UNAVAILABLE", f"cannot reach the database: {exc}") from exc
    try:
        await apply_migration_sets(pool, MIGRATIONS)
        # The CLI only reads events; the metric stores are not touched.
        stores = TelemetryMetricStores(Path(config.metrics_dir), MetricStore(), GateMetricStore())
        telemetry = Telemetry(EventRepository(pool), stores, config)
        summary = await telemetry.run_summary(window, tenant)
        return summary.to_log_record(build_id=config.build_id, config_hash=config.config_hash)
    finally:
        await pool.close()


def run_summary_command(config: AppConfig, args: argparse.Namespace) -> int:
    """Print the summary line to stdout; problems go to stderr with an exit code."""
    if not config.database_url:
        print("error: DATABASE_URL must be set", file=sys.stderr)
        return EXIT_USAGE
    try:
        record = asyncio.run(_summary(config, args))
    except TelemetryError as exc:
        print(f"error: {exc.error_code}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except Unavailable as exc:
        print(f"error: {exc.error_code}: {exc.message}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(json.dumps(record), flush=True)
    return 0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """`[serve [--summary-period 24h]] | summary [--since 24h] [--until T] [--tenant-id T]`.

    `migrate` applies the telemetry migrations and exits.
    """
    parser = _Parser(prog="ptf-telemetry", description="ptf-admin telemetry service")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the service (default)")
    serve.add_argument(
        "--summary-period", default="1d", help="run_summary log period: 1h, 1d ... (default 1d)"
    )
    add_summary_arguments(commands.add_parser("summary", help="print a run_summary JSON line"))
    commands.add_parser("migrate", help="apply the telemetry migrations and exit")
    arguments = list(argv)
    if not arguments or arguments[0] not in {"serve", "summary", "migrate", "-h", "--help"}:
        arguments = ["serve", *arguments]
    return parser.parse_args(arguments)


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 64 (EX_USAGE) like gatectl, not argparse's 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
