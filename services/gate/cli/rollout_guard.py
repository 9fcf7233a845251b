"""`gatectl rollout-guard`: watch a rollout through the gate and roll back on BLOCK.

Every `--interval` seconds the gate is asked for a preflight of the release
spec. On RELEASE_BLOCK the rollback procedure of seed 003 §7 runs at once:

1. kill switch: `kubectl set env deployment/<D> PILOT_ENABLED=false`
2. rollback:    `kubectl rollout undo deployment/<D>`

(with `-n <namespace>` when given), each command printed with its outcome;
the undo runs even if the kill switch failed, because rolling back matters
most. On RELEASE_OK once `kubectl rollout status --watch=false` reports the
rollout complete, the guard exits 0. HOLD keeps waiting (investigate first,
seed 003 §6.3), as does an unreachable gate: missing data never triggers a
rollback. Exit codes: 0 rolled out and OK; 2 BLOCK and rolled back; 70 BLOCK
but a rollback command failed; 1 still HOLD after `--max-checks`; 69 gate
unreachable at the last check.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from ptf.gate.v1 import gate_pb2

from services.gate.cli import render
from services.gate.cli.commands import gate, preflight_request, rpc
from services.gate.cli.exits import BLOCK, HOLD, OK, SOFTWARE, UNAVAILABLE, CliExit, warn

_ROLLED_OUT = "successfully rolled out"


async def _kubectl(kubectl: str, *args: str) -> tuple[int, str]:
    """Run kubectl; (exit code, combined output). A missing binary is exit 127."""
    try:
        process = await asyncio.create_subprocess_exec(
            kubectl,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as exc:
        return 127, f"{kubectl}: {exc.strerror}"
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode("utf-8", "replace").strip()


def _namespaced(args: argparse.Namespace, *command: str) -> list[str]:
    extra = ["-n", args.namespace] if args.namespace else []
    return [*command, *extra]


async def rollback(args: argparse.Namespace) -> bool:
    """Kill switch, then rollout undo; True when both commands succeeded."""
    target = f"deployment/{args.deployment}"
    commands: Sequence[list[str]] = (
        _namespaced(args, "set", "env", target, "PILOT_ENABLED=false"),
        _namespaced(args, "rollout", "undo", target),
    )
    ok = True
    for command in commands:
        print(f"running: {args.kubectl} {' '.join(command)}", flush=True)
        code, output = await _kubectl(args.kubectl, *command)
        if output:
            print(f"  {output}", flush=True)
        if code != 0:
            ok = False
            warn(f"`kubectl {' '.join(command)}` failed with exit code {code}")
    return ok


async def _rolled_out(args: argparse.Namespace) -> bool:
    command = _namespaced(
        args, "rollout", "status", f"deployment/{args.deployment}", "--watch=false"
    )
    code, output = await _kubectl(args.kubectl, *command)
    return code == 0 and _ROLLED_OUT in output


async def _ask(args: argparse.Namespace, request: gate_pb2.PreflightRequest) -> int | None:
    """The verdict's exit code, or None when the gate could not be asked."""
    try:
        async with gate(args.gate) as stub:
            result = await rpc(stub.Preflight(request, timeout=args.timeout))
    except CliExit as exc:
        if exc.code != UNAVAILABLE:
            raise
        warn(exc.message)
        return None
    document = render.preflight_dict(result)
    print(render.preflight_text(document), flush=True)
    return int(result.exit_code)


async def rollout_guard(args: argparse.Namespace) -> int:
    """`gatectl rollout-guard`: ask, roll back on BLOCK, stop on OK once rolled out."""
    checks = 0
    while True:
        request = preflight_request(args)  # re-read: the spec file may be fixed mid-rollout
        verdict = await _ask(args, request)
        checks += 1
        if verdict == BLOCK:
            print(f"RELEASE_BLOCK: rolling back deployment/{args.deployment}", flush=True)
            if await rollback(args):
                print("rollback done: kill switch set, previous revision restored", flush=True)
                return BLOCK
            warn("ROLLBACK INCOMPLETE: finish it by hand (seed 003 §7)")
            return SOFTWARE
        if verdict == OK and await _rolled_out(args):
            print(f"deployment/{args.deployment} rolled out and the gate says OK", flush=True)
            return OK
        if args.max_checks and checks >= args.max_checks:
            if verdict is None:
                return UNAVAILABLE
            return HOLD
        await asyncio.sleep(args.interval)
