"""`gatectl`: the release gate's command-line client (SPEC §5.5).

Exit codes: 0 OK, 1 HOLD, 2 BLOCK (and `audit verify`: tampering found),
64 usage or spec error, 69 gate unreachable; 66 not found, 77 missing or
wrong admin key, 70 unexpected. `post-deploy` and `rollout-guard` document
their own codes (services/gate/cli/post_deploy.py, rollout_guard.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from services.gate.cli import commands
from services.gate.cli.args import build_parser
from services.gate.cli.exits import INTERRUPTED, CliExit, warn
from services.gate.cli.post_deploy import post_deploy
from services.gate.cli.rollout_guard import rollout_guard

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def _command(args: argparse.Namespace) -> Command:
    if args.command == "override":
        return (
            commands.override_request
            if args.override_command == "request"
            else commands.override_show
        )
    if args.command == "audit":
        return commands.audit_tail if args.audit_command == "tail" else commands.audit_verify
    table: dict[str, Command] = {
        "preflight": commands.preflight,
        "check": commands.check,
        "watch": commands.watch,
        "post-deploy": post_deploy,
        "rollout-guard": rollout_guard,
    }
    return table[args.command]


def run(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` and run the command; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
        return asyncio.run(_command(args)(args))
    except CliExit as exc:
        if exc.message:
            warn(exc.message)
        return exc.code
    except KeyboardInterrupt:
        return INTERRUPTED


def main() -> None:
    """Console-script entry point (`gatectl`)."""
    sys.exit(run())


if __name__ == "__main__":
    main()
