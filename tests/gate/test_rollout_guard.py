"""`gatectl rollout-guard` against the real gate and a stand-in kubectl that numbers revisions
like Kubernetes: on BLOCK the system ends on the gate-approved template with the pilot off.

The history every test starts from: revision 1 of ptf-pipeline is a good release (some tests
record it as gate-approved), revision 2 is a bad release of a new image. The two other
Deployments that read PILOT_ENABLED run revision 1.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.gate.service_support import (
    SignalServers,
    StartGate,
    new_release,
    ready_reply,
    s1_high_summary,
    spec_yaml,
    unreachable_address,
)
from tests.gate.test_gatectl import FACTS, Run, gatectl, target
from tests.support.kubectl_standin import REVISION, Standin, install, new_deployment
from tests.support.services import ServiceHandle

NAMESPACE = "prod"
GUARDED = "ptf-pipeline"
OTHERS = ("ptf-pipeline-worker",)
APPROVED = "ptf-admin.io/gate-approved-revision"
RUNBOOK = "monitoring/runbooks/ptf-admin-runbook.md"


def container(image: str) -> dict[str, Any]:
    env = [{"name": "PILOT_ENABLED", "value": "true"}, {"name": "PTF_LOG_LEVEL", "value": "info"}]
    return {"name": "app", "image": image, "env": env}


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "release.yaml"
    path.write_text(spec_yaml(new_release()), encoding="utf-8")
    return path


@pytest.fixture
def cluster(tmp_path: Path) -> Standin:
    """ptf-pipeline at revision 2 (a bad image) over a good revision 1; nothing recorded yet."""
    standin = install(tmp_path / "cluster")
    for name in (GUARDED, *OTHERS):
        standin.add(new_deployment(name, NAMESPACE, [container("ptf-admin:1.0")]))
    kubectl(standin, "set", "image", f"deployment/{GUARDED}", "app=ptf-admin:1.1-bad")
    return standin


def kubectl(cluster: Standin, *argv: str) -> None:
    code, _, err = cluster.run(*argv, "-n", NAMESPACE)
    assert code == 0, err


def approve_revision_1(cluster: Standin) -> None:
    kubectl(cluster, "annotate", f"deployment/{GUARDED}", f"{APPROVED}=1", "--overwrite")


def deployment(cluster: Standin, name: str = GUARDED) -> dict[str, Any]:
    return cluster.deployment(name, NAMESPACE)


def revision_template(cluster: Standin, revision: int) -> dict[str, Any]:
    replicasets = deployment(cluster)["replicasets"]
    found: dict[str, Any] = next(rs for rs in replicasets if rs["revision"] == revision)
    return copy.deepcopy(found["template"])


def revisions(found: dict[str, Any]) -> list[int]:
    return sorted(rs["revision"] for rs in found["replicasets"])


def with_pilot_off(template: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(template)
    for each in changed["containers"]:
        for variable in each["env"]:
            if variable["name"] == "PILOT_ENABLED":
                variable["value"] = "false"
    return changed


def pilot(cluster: Standin, name: str) -> list[str]:
    return [
        variable["value"]
        for each in deployment(cluster, name)["template"]["containers"]
        for variable in each["env"]
        if variable["name"] == "PILOT_ENABLED"
    ]


async def guard(svc: ServiceHandle, spec_file: Path, cluster: Standin, *extra: str) -> Run:
    return await guard_via(target(svc), spec_file, cluster, *extra)


async def guard_via(gate: Sequence[str], spec_file: Path, cluster: Standin, *extra: str) -> Run:
    """The guard on the test history, asking the gate that `gate`'s flags name."""
    return await gatectl(
        "rollout-guard",
        "--deployment",
        GUARDED,
        "--namespace",
        NAMESPACE,
        "--spec",
        str(spec_file),
        *FACTS,
        "--interval",
        "0.05",
        "--max-checks",
        "2",
        "--rollout-timeout",
        "5",
        "--kubectl",
        str(cluster.binary),
        *gate,
        *extra,
    )


@pytest.fixture
def blocking(signals: SignalServers) -> SignalServers:
    signals.health.reply = ready_reply(ready=False)
    return signals


async def test_block_leaves_the_approved_template_with_the_pilot_off(
    start_gate: StartGate, blocking: SignalServers, spec_file: Path, cluster: Standin
) -> None:
    approve_revision_1(cluster)
    expected = with_pilot_off(revision_template(cluster, 1))
    async with start_gate() as svc:
        run = await guard(svc, spec_file, cluster)
    assert run.code == 2, run.err
    assert deployment(cluster)["template"] == expected


async def test_block_turns_the_pilot_off_on_every_deployment_that_reads_it(
    start_gate: StartGate, blocking: SignalServers, spec_file: Path, cluster: Standin
) -> None:
    approve_revision_1(cluster)
    async with start_gate() as svc:
        await guard(svc, spec_file, cluster)
    assert {name: pilot(cluster, name) for name in OTHERS} == {name: ["false"] for name in OTHERS}


async def test_block_undoes_before_it_sets_the_kill_switch(
    start_gate: StartGate, blocking: SignalServers, spec_file: Path, cluster: Standin
) -> None:
    approve_revision_1(cluster)
    async with start_gate() as svc:
        await guard(svc, spec_file, cluster)
    changes = [
        call[:2] for call in cluster.calls() if call[:2] in (["rollout", "undo"], ["set", "env"])
    ]
    undo = next(call for call in cluster.calls() if call[:2] == ["rollout", "undo"])
    assert changes == [["rollout", "undo"], ["set", "env"]]
    assert "--to-revision=1" in undo


async def test_block_reports_the_restored_revision_and_the_one_now_running(
    start_gate: StartGate, blocking: SignalServers, spec_file: Path, cluster: Standin
) -> None:
    approve_revision_1(cluster)
    async with start_gate() as svc:
        run = await guard(svc, spec_file, cluster)
    running = deployment(cluster)["annotations"][REVISION]
    assert "restored: revision 1, the last revision the gate approved" in run.out
    assert (
        f"running:  revision {running} = revision 1's pod template with PILOT_ENABLED=false"
        in run.out
    )
    assert "pilot:    off (PILOT_ENABLED=false) on ptf-pipeline, ptf-pipeline-worker" in (run.out)


async def test_every_kubectl_command_is_printed_with_its_outcome(
    start_gate: StartGate, blocking: SignalServers, spec_file: Path, cluster: Standin
) -> None:
    approve_revision_1(cluster)
    async with start_gate() as svc:
        run = await guard(svc, spec_file, cluster)
    lines = run.out.splitlines()
    shown = [line for line in lines if line.startswith("$ kubectl ")]
    outcomes = [line for line in lines if line.startswith("  -> ")]
    assert len(shown) == len(cluster.calls()) - 2  # the fixture's set image and annotate
    assert outcomes == ["  -> ok"] * len(shown)


async def test_a_second_block_after_a_rollback_still_returns_to_the_approved_template(
    start_gate: StartGate, blocking: SignalServers, spec_file: Path, cluster: Standin
) -> None:
    """The undo retires revision 1's number; the guard records what now runs instead."""
    approve_revision_1(cluster)
    expected = with_pilot_off(revision_template(cluster, 1))
    async with start_gate() as svc:
        await guard(svc, spec_file, cluster)
        kubectl(cluster, "set", "image", f"deployment/{GUARDED}", "app=ptf-admin:1.2-bad")
        run = await guard(svc, spec_file, cluster)
    assert run.code == 2, run.err
    assert deployment(cluster)["template"] == expected


async def test_block_records_what_now_runs_as_the_approved_return_point(
    start_gate: StartGate, blocking: SignalServers, spec_file: Path, cluster: Standin
) -> None:
    """The undo retired revision 1's number and replaced the Deployment's annotations."""
    approve_revision_1(cluster)
    async with start_gate() as svc:
        await guard(svc, spec_file, cluster)
    annotations = deployment(cluster)["annotations"]
    assert annotations[APPROVED] == annotations[REVISION]


async def test_ok_after_a_complete_rollout_records_the_running_revision_as_approved(
    start_gate: StartGate, spec_file: Path, cluster: Standin
) -> None:
    before = deployment(cluster)
    async with start_gate() as svc:
        run = await guard(svc, spec_file, cluster)
    after = deployment(cluster)
    assert run.code == 0, run.err
    assert after["annotations"][APPROVED] == before["annotations"][REVISION]
    assert (after["template"], revisions(after)) == (before["template"], revisions(before))


async def test_ok_while_the_rollout_is_unfinished_records_nothing_and_exits_1(
    start_gate: StartGate, spec_file: Path, cluster: Standin
) -> None:
    cluster.set_stalled(GUARDED, NAMESPACE, True)
    async with start_gate() as svc:
        run = await guard(svc, spec_file, cluster)
    assert (run.code, APPROVED in deployment(cluster)["annotations"]) == (1, False)
    assert f"deployment/{GUARDED} has not finished rolling out after 2 checks" in run.err


async def test_block_without_a_recorded_approval_returns_to_the_previous_revision(
    start_gate: StartGate, blocking: SignalServers, spec_file: Path, cluster: Standin
) -> None:
    expected = with_pilot_off(revision_template(cluster, 1))
    async with start_gate() as svc:
        run = await guard(svc, spec_file, cluster)
    assert run.code == 2, run.err
    assert deployment(cluster)["template"] == expected
    assert "the gate did NOT approve" in run.out


async def test_block_without_a_recorded_approval_uses_the_good_revision_given(
    start_gate: StartGate, blocking: SignalServers, spec_file: Path, cluster: Standin
) -> None:
    kubectl(cluster, "set", "image", f"deployment/{GUARDED}", "app=ptf-admin:1.2-bad")
    expected = with_pilot_off(revision_template(cluster, 1))
    async with start_gate() as svc:
        run = await guard(svc, spec_file, cluster, "--good-revision", "1")
    assert run.code == 2, run.err
    assert deployment(cluster)["template"] == expected
    assert APPROVED not in deployment(cluster)["annotations"]


async def test_a_failed_undo_still_sets_the_kill_switch_and_exits_70(
    start_gate: StartGate, blocking: SignalServers, spec_file: Path, cluster: Standin
) -> None:
    """The recorded revision has left the history (pruned): the undo fails."""
    kubectl(cluster, "annotate", f"deployment/{GUARDED}", f"{APPROVED}=9", "--overwrite")
    async with start_gate() as svc:
        run = await guard(svc, spec_file, cluster)
    assert run.code == 70
    assert {name: pilot(cluster, name) for name in (GUARDED, *OTHERS)} == {
        name: ["false"] for name in (GUARDED, *OTHERS)
    }
    assert "ROLLBACK INCOMPLETE: the undo to revision 9 failed" in run.err


async def test_a_failed_undo_says_the_release_still_runs_with_the_pilot_off(
    start_gate: StartGate, blocking: SignalServers, spec_file: Path, cluster: Standin
) -> None:
    kubectl(cluster, "annotate", f"deployment/{GUARDED}", f"{APPROVED}=9", "--overwrite")
    async with start_gate() as svc:
        run = await guard(svc, spec_file, cluster)
    running = deployment(cluster)["annotations"][REVISION]
    assert (
        f"left as: deployment/{GUARDED} runs revision {running} (the release being rolled back); "
        f"PILOT_ENABLED=false on {', '.join((GUARDED, *OTHERS))}"
    ) in run.err


async def test_an_incomplete_rollback_says_what_to_run_without_outside_documents(
    start_gate: StartGate, blocking: SignalServers, spec_file: Path, cluster: Standin
) -> None:
    kubectl(cluster, "annotate", f"deployment/{GUARDED}", f"{APPROVED}=9", "--overwrite")
    async with start_gate() as svc:
        run = await guard(svc, spec_file, cluster)
    assert f"kubectl rollout undo deployment/{GUARDED} --to-revision=N -n {NAMESPACE}" in run.err
    assert RUNBOOK in run.err
    assert ("seed" in run.err.lower(), "SPEC" in run.err) == (False, False)


async def test_a_rollback_that_does_not_finish_rolling_out_exits_70(
    start_gate: StartGate, blocking: SignalServers, spec_file: Path, cluster: Standin
) -> None:
    approve_revision_1(cluster)
    cluster.set_stalled(GUARDED, NAMESPACE, True)
    async with start_gate() as svc:
        run = await guard(svc, spec_file, cluster)
    assert (run.code, f"deployment/{GUARDED} did not finish rolling out" in run.err) == (70, True)


async def test_a_missing_kill_switch_deployment_does_not_keep_the_pilot_on_elsewhere(
    start_gate: StartGate, blocking: SignalServers, spec_file: Path, cluster: Standin
) -> None:
    """kubectl patches none of the listed Deployments when one is missing."""
    approve_revision_1(cluster)
    names = [GUARDED, *OTHERS, "ptf-gone"]
    flags = [flag for name in names for flag in ("--kill-switch-deployment", name)]
    async with start_gate() as svc:
        run = await guard(svc, spec_file, cluster, *flags)
    assert run.code == 70
    assert {name: pilot(cluster, name) for name in (GUARDED, *OTHERS)} == {
        name: ["false"] for name in (GUARDED, *OTHERS)
    }


async def test_hold_never_touches_the_deployments(
    start_gate: StartGate, signals: SignalServers, spec_file: Path, cluster: Standin
) -> None:
    approve_revision_1(cluster)
    signals.summary.reply = s1_high_summary()
    before = cluster.deployments()
    async with start_gate() as svc:
        run = await guard(svc, spec_file, cluster)
    assert (run.code, cluster.deployments()) == (1, before)


async def test_an_unreachable_gate_never_rolls_back(spec_file: Path, cluster: Standin) -> None:
    approve_revision_1(cluster)
    before = cluster.deployments()
    run = await guard_via(("--gate", unreachable_address(), "--timeout", "2"), spec_file, cluster)
    assert (run.code, cluster.deployments()) == (69, before)


def test_the_seeds_literal_order_leaves_the_bad_release_running_with_the_pilot_on(
    cluster: Standin,
) -> None:
    """What this guard replaces: kill switch, then a plain undo, on the same history."""
    kubectl(cluster, "set", "env", f"deployment/{GUARDED}", "PILOT_ENABLED=false")
    kubectl(cluster, "rollout", "undo", f"deployment/{GUARDED}")
    image = deployment(cluster)["template"]["containers"][0]["image"]
    assert (image, pilot(cluster, GUARDED)) == ("ptf-admin:1.1-bad", ["true"])
