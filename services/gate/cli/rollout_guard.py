"""`gatectl rollout-guard`: watch a rollout through the gate and roll back on BLOCK.

Every `--interval` seconds the gate is asked for a preflight of the release spec.

- RELEASE_OK once `kubectl rollout status --watch=false` reports the rollout complete:
  the running revision is recorded on the Deployment as gate-approved
  (`ptf-admin.io/gate-approved-revision`, metadata only, so no new revision) and the
  guard exits 0.
- RELEASE_BLOCK: the rollback of services/gate/cli/rollback.py runs at once — undo to
  the recorded approved revision, then the kill switch on every Deployment that reads
  PILOT_ENABLED, then `rollout status` — and says what it restored and what now runs.
- HOLD keeps waiting (investigate before rolling back), as does an unreachable gate:
  missing data never triggers a rollback, and neither touches the Deployment.

Exit codes: 0 rolled out and OK; 2 BLOCK and rolled back; 70 rollback incomplete (or
the approval could not be recorded) — the message says what to run by hand; 1 still
HOLD (or OK with the rollout still unfinished) after `--max-checks`; 69 gate unreachable
at the last check.
"""

from __future__ import annotations

import argparse
import asyncio

from ptf.gate.v1 import gate_pb2

from services.gate.cli import render
from services.gate.cli.commands import gate, preflight_request, rpc
from services.gate.cli.exits import BLOCK, HOLD, OK, SOFTWARE, UNAVAILABLE, CliExit, warn
from services.gate.cli.kubectl import Kubectl
from services.gate.cli.rollback import record_approval, roll_back

_ROLLED_OUT = "successfully rolled out"


async def _rolled_out(args: argparse.Namespace) -> bool:
    kubectl = Kubectl(args.kubectl, args.namespace)
    outcome = await kubectl.run(
        "rollout", "status", f"deployment/{args.deployment}", "--watch=false"
    )
    return outcome.ok and _ROLLED_OUT in outcome.output


async def _ask(args: argparse.Namespace, request: gate_pb2.PreflightRequest) -> int | None:
    """The verdict's exit code, or None when the gate could not be asked."""
    try:
        async with gate(args) as stub:
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
    """`gatectl rollout-guard`: ask, roll back on BLOCK, record approval on OK once rolled out."""
    checks = 0
    while True:
        request = preflight_request(args)  # re-read: the spec file may be fixed mid-rollout
        verdict = await _ask(args, request)
        checks += 1
        if verdict == BLOCK:
            print(f"RELEASE_BLOCK: rolling back deployment/{args.deployment}", flush=True)
            return await roll_back(args)
        if verdict == OK and await _rolled_out(args):
            print(f"deployment/{args.deployment} rolled out and the gate says OK", flush=True)
            return OK if await record_approval(args) else SOFTWARE
        if args.max_checks and checks >= args.max_checks:
            if verdict is None:
                return UNAVAILABLE
            if verdict == OK:
                warn(
                    f"the gate says OK but deployment/{args.deployment} has not finished rolling "
                    f"out after {checks} checks: no approval recorded, nothing rolled back; run "
                    "the guard again once the rollout completes"
                )
            return HOLD
        await asyncio.sleep(args.interval)
