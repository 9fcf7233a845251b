"""`ptf-telemetry` / `python -m services.telemetry`: serve (default), summary or migrate."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import timedelta

from services.runtime.logs import configure_logging
from services.runtime.migrate import run_migrations
from services.runtime.server import load_validated_config, run_service
from services.telemetry.cli import EXIT_USAGE, parse_args, run_summary_command
from services.telemetry.domain.errors import TelemetryError
from services.telemetry.domain.window import parse_duration
from services.telemetry.service import MIGRATIONS, create_definition


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "migrate":
        raise SystemExit(run_migrations("telemetry", MIGRATIONS))
    if args.command == "summary":
        configure_logging("telemetry")
        raise SystemExit(run_summary_command(load_validated_config("telemetry"), args))
    try:
        period = parse_duration(args.summary_period, field="--summary-period")
    except TelemetryError as exc:
        print(f"ptf-telemetry: error: {exc.message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from exc
    if period <= timedelta(0):
        print("ptf-telemetry: error: --summary-period must be positive", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    run_service(create_definition(summary_period=period))


if __name__ == "__main__":
    main()
