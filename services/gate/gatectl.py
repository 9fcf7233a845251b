"""`gatectl`: the release gate's command-line client (docs/SPEC.md §5.5).

Exit codes: 0 OK, 1 HOLD, 2 BLOCK (and `audit verify`: tampering found),
64 usage or spec error, 69 gate unreachable; 66 not found, 77 missing or
wrong admin key, 70 unexpected, 141 stdout closed by its reader.
`post-deploy` and `rollout-guard` document their own codes
(services/gate/cli/post_deploy.py, rollout_guard.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from services.gate.cli import commands
from services.gate.cli.args import build_parser
from services.gate.cli.exits import INTERRUPTED, CliExit, warn
from services.gate.cli.post_deploy import post_deploy
from services.gate.cli.rollout_guard import rollout_guard

PIPE_CLOSED = 141  # 128 + SIGPIPE: what the shell reports for a tool killed by a closed pipe

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
    """Console-script entry point (`gatectl`).

    A reader that stops early (`gatectl preflight ... | head -2`) closes the pipe;
    the next write, or the final flush, raises BrokenPipeError. gatectl then ends
    quietly, as a C tool killed by SIGPIPE would, with 141 (128 + SIGPIPE): not 0,
    because 0 means RELEASE_OK here and a script with `set -o pipefail` must never
    read an undelivered BLOCK as a pass. stdout is pointed at /dev/null so that
    the interpreter's own flush at exit finds nothing to complain about.
    """
    try:
        try:
            code = run()
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = PIPE_CLOSED
    sys.exit(code)


if __name__ == "__main__":
    main()
