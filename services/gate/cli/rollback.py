"""The rollback `gatectl rollout-guard` runs on RELEASE_BLOCK, and the approval it records.

Why this order: `kubectl set env` changes the pod template, so it creates a revision.
Setting the kill switch first and then `kubectl rollout undo` would return to the
revision before the kill switch — the bad release, pilot on again. So the guard
records, when a rollout completes with the gate's approval, that revision in the
Deployment's metadata (`ptf-admin.io/gate-approved-revision`; annotations do not
create revisions) and on BLOCK:

1. `kubectl rollout undo deployment/D --to-revision=<approved>`: the approved pod
   template comes back (Kubernetes gives it the next revision number);
2. the kill switch, `kubectl set env deployment/... PILOT_ENABLED=false`, on every
   Deployment that reads it — after the undo, so nothing can switch it back;
3. `kubectl rollout status deployment/D --timeout=...`, then a read-back of what runs.

What now runs (approved template + kill switch) is recorded as the revision to return
to, so a later BLOCK does not aim at a revision number the undo has retired.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from services.gate.cli.exits import BLOCK, SOFTWARE, warn
from services.gate.cli.kubectl import Kubectl, annotations_of, as_revision, env_values, revision

APPROVED_ANNOTATION = "ptf-admin.io/gate-approved-revision"
KILL_SWITCH = "PILOT_ENABLED"
KILL_SWITCH_DEPLOYMENTS = ("ptf-pipeline", "ptf-pipeline-worker")
RUNBOOK = 'the "Rollback" section of monitoring/runbooks/ptf-admin-runbook.md'


@dataclass(frozen=True)
class Target:
    """The revision to roll back to, whether the gate approved it, and why it was chosen."""

    revision: int | None
    approved: bool
    why: str


async def choose_target(kubectl: Kubectl, name: str, good_revision: int | None) -> Target:
    """The recorded approved revision, else `--good-revision`, else the one before current."""
    deployment = await kubectl.deployment(name)
    if deployment is None:
        return Target(None, False, f"cannot read deployment/{name}")
    recorded = annotations_of(deployment).get(APPROVED_ANNOTATION)
    approved = as_revision(recorded)
    if approved is not None:
        return Target(
            approved,
            True,
            f"revision {approved} is the last revision the gate approved "
            f"({APPROVED_ANNOTATION}={approved})",
        )
    missing = (
        f"{APPROVED_ANNOTATION} holds {recorded!r}, not a revision number"
        if recorded is not None
        else f"no gate-approved revision is recorded ({APPROVED_ANNOTATION} is not set)"
    )
    if good_revision is not None:
        return Target(
            good_revision,
            False,
            f"{missing}; using revision {good_revision} from --good-revision, "
            "which the gate did NOT approve",
        )
    current = revision(deployment)
    history = await kubectl.history(name) or []
    earlier = [number for number in history if current is None or number < current]
    if not earlier:
        return Target(None, False, f"{missing}, and no revision precedes the current one")
    return Target(
        earlier[-1],
        False,
        f"{missing}; using revision {earlier[-1]}, the one before the current revision "
        f"{current} in the rollout history, which the gate did NOT approve",
    )


async def kill_switch(kubectl: Kubectl, names: Sequence[str]) -> bool:
    """`set env ... PILOT_ENABLED=false` on all at once; one by one if that fails.

    kubectl patches none of the listed Deployments when one of them is missing, so a
    failed combined command is retried per Deployment: the pilot goes off wherever it can.
    """
    setting = f"{KILL_SWITCH}=false"
    together = await kubectl.run("set", "env", *(f"deployment/{n}" for n in names), setting)
    if together.ok or len(names) == 1:
        return together.ok
    results = [(await kubectl.run("set", "env", f"deployment/{n}", setting)).ok for n in names]
    return all(results)


async def pilot_off_on(kubectl: Kubectl, names: Sequence[str]) -> list[str]:
    """The Deployments among `names` whose every container now has PILOT_ENABLED=false."""
    found = await kubectl.deployments(*names) or []
    return [
        str(d["metadata"]["name"])
        for d in found
        if (values := env_values(d, KILL_SWITCH)) and all(v == "false" for v in values)
    ]


def _left_as(name: str, now: int | None, undone: bool, target: Target, off: Sequence[str]) -> str:
    """Where an incomplete rollback left things, so the operator knows where to start."""
    running = "an unknown revision" if now is None else f"revision {now}"
    template = (
        f"revision {target.revision}'s pod template" if undone else "the release being rolled back"
    )
    pilot = f"{KILL_SWITCH}=false on {', '.join(off)}" if off else f"{KILL_SWITCH}=false nowhere"
    return f"left as: deployment/{name} runs {running} ({template}); {pilot}"


def _finish_by_hand(kubectl: Kubectl, name: str, switched: Sequence[str]) -> str:
    deployment = f"deployment/{name}"
    targets = [f"deployment/{n}" for n in switched]
    steps = (
        kubectl.shown("rollout", "history", deployment) + "   # pick the last good revision N",
        kubectl.shown("rollout", "undo", deployment, "--to-revision=N"),
        kubectl.shown("set", "env", *targets, f"{KILL_SWITCH}=false"),
        kubectl.shown("rollout", "status", deployment),
    )
    lines = "\n".join(f"  {step}" for step in steps)
    return f"finish the rollback by hand, in this order:\n{lines}\n(see {RUNBOOK})"


async def roll_back(args: argparse.Namespace) -> int:
    """Undo to the target revision, set the kill switch, wait, report; exit 2 or 70."""
    kubectl = Kubectl(args.kubectl, args.namespace)
    name = args.deployment
    switched = list(dict.fromkeys(args.kill_switch_deployment or KILL_SWITCH_DEPLOYMENTS))
    target = await choose_target(kubectl, name, args.good_revision)
    print(f"rollback target: {target.why}", flush=True)
    problems: list[str] = []
    undone = False
    if target.revision is None:
        problems.append("no revision to roll back to")
    else:
        undo = await kubectl.run(
            "rollout", "undo", f"deployment/{name}", f"--to-revision={target.revision}"
        )
        undone = undo.ok
        if not undone:
            problems.append(f"the undo to revision {target.revision} failed")
    if not await kill_switch(kubectl, switched):
        problems.append(f"the kill switch could not be set on every one of {', '.join(switched)}")
    if undone:
        timeout = f"--timeout={max(1, round(args.rollout_timeout))}s"
        if not (await kubectl.run("rollout", "status", f"deployment/{name}", timeout)).ok:
            problems.append(f"deployment/{name} did not finish rolling out")
    off = await pilot_off_on(kubectl, switched)
    if missing := [n for n in switched if n not in off]:
        problems.append(f"{KILL_SWITCH}=false is not confirmed on {', '.join(missing)}")
    running = await kubectl.deployment(name)
    now = revision(running) if running is not None else None
    if problems or now is None:
        warn(f"ROLLBACK INCOMPLETE: {'; '.join(problems) or 'cannot read what runs now'}.")
        warn(_left_as(name, now, undone, target, off))
        warn(_finish_by_hand(kubectl, name, switched))
        return SOFTWARE
    recorded = await _record_return_point(kubectl, name, now, target.approved)
    _report(name, target, now, off, recorded)
    if target.approved and not recorded:
        command = kubectl.shown(
            "annotate", f"deployment/{name}", f"{APPROVED_ANNOTATION}={now}", "--overwrite"
        )
        warn(
            f"could not record revision {now} as the return point; before the next rollout run: "
            f"{command}"
        )
    return BLOCK


async def _record_return_point(kubectl: Kubectl, name: str, now: int, approved: bool) -> bool:
    """After a rollback to an approved revision, record what now runs as the return point."""
    if not approved:
        return False
    return (
        await kubectl.run(
            "annotate", f"deployment/{name}", f"{APPROVED_ANNOTATION}={now}", "--overwrite"
        )
    ).ok


def _report(name: str, target: Target, now: int, off: Sequence[str], recorded: bool) -> None:
    restored = f"revision {target.revision}" + (
        ", the last revision the gate approved" if target.approved else " (NOT gate-approved)"
    )
    template = f"revision {target.revision}'s pod template"
    if name in off:
        template += f" with {KILL_SWITCH}=false"
    lines = [
        f"rollback of deployment/{name} done:",
        f"  restored: {restored}",
        f"  running:  revision {now} = {template}",
        f"  pilot:    off ({KILL_SWITCH}=false) on {', '.join(off)}",
    ]
    if recorded:
        lines.append(f"  return point: revision {now} ({APPROVED_ANNOTATION}) for a later rollback")
    elif not target.approved:
        lines.append(
            f"  not gate-approved: check revision {now} before a release relies on it; "
            f"{APPROVED_ANNOTATION} stays unset"
        )
    print("\n".join(lines), flush=True)


async def record_approval(args: argparse.Namespace) -> bool:
    """On RELEASE_OK after a complete rollout: record the running revision as approved."""
    kubectl = Kubectl(args.kubectl, args.namespace)
    name = args.deployment
    deployment = await kubectl.deployment(name)
    now = revision(deployment) if deployment is not None else None
    if now is not None:
        setting = f"{APPROVED_ANNOTATION}={now}"
        if (await kubectl.run("annotate", f"deployment/{name}", setting, "--overwrite")).ok:
            print(
                f"recorded revision {now} of deployment/{name} as gate-approved ({setting}): "
                "a rollback on a later BLOCK returns here",
                flush=True,
            )
            return True
    command = kubectl.shown(
        "annotate", f"deployment/{name}", f"{APPROVED_ANNOTATION}=<revision>", "--overwrite"
    )
    warn(
        f"the approved revision of deployment/{name} was not recorded, so a later rollback "
        f"cannot return to it; read the revision with "
        f"{kubectl.shown('get', f'deployment/{name}', '-o', 'yaml')} "
        f"(annotation deployment.kubernetes.io/revision) and record it with {command}"
    )
    return False
