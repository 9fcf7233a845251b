"""The stand-in kubectl keeps revisions the way the Kubernetes deployment controller does.

The rollout-guard tests are only as good as this stand-in, so its revision rules are
pinned here: a pod-template change is a new revision, a no-op is none, `rollout undo`
makes the restored template the newest revision, metadata never counts.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.kubectl_standin import REVISION, Standin, install, new_deployment


@pytest.fixture
def cluster(tmp_path: Path) -> Standin:
    standin = install(tmp_path / "cluster")
    standin.add(
        new_deployment(
            "api",
            "prod",
            [
                {
                    "name": "api",
                    "image": "ptf:1.0",
                    "env": [{"name": "PILOT_ENABLED", "value": "true"}],
                }
            ],
        )
    )
    return standin


def ok(cluster: Standin, *argv: str) -> str:
    code, out, err = cluster.run(*argv, "-n", "prod")
    assert code == 0, err
    return out


def revisions(cluster: Standin) -> list[int]:
    return sorted(rs["revision"] for rs in cluster.deployment("api", "prod")["replicasets"])


def template(cluster: Standin) -> dict[str, Any]:
    found: dict[str, Any] = cluster.deployment("api", "prod")["template"]
    return found


def pilot(cluster: Standin) -> str:
    env = template(cluster)["containers"][0]["env"]
    return str(next(e["value"] for e in env if e["name"] == "PILOT_ENABLED"))


def test_set_env_with_a_new_value_is_the_next_revision(cluster: Standin) -> None:
    out = ok(cluster, "set", "env", "deployment/api", "PILOT_ENABLED=false")
    assert out == "deployment.apps/api env updated\n"
    assert (revisions(cluster), pilot(cluster)) == ([1, 2], "false")


def test_set_env_that_changes_nothing_is_no_revision_and_prints_nothing(cluster: Standin) -> None:
    out = ok(cluster, "set", "env", "deployment/api", "PILOT_ENABLED=true")
    assert (out, revisions(cluster)) == ("", [1])


def test_set_image_is_the_next_revision(cluster: Standin) -> None:
    ok(cluster, "set", "image", "deployment/api", "api=ptf:1.1")
    assert (revisions(cluster), template(cluster)["containers"][0]["image"]) == ([1, 2], "ptf:1.1")


def test_undo_restores_the_previous_template_as_the_newest_revision(cluster: Standin) -> None:
    first = template(cluster)
    ok(cluster, "set", "image", "deployment/api", "api=ptf:1.1")
    out = ok(cluster, "rollout", "undo", "deployment/api")
    assert out == "deployment.apps/api rolled back\n"
    assert (template(cluster), revisions(cluster)) == (first, [2, 3])


def test_undo_to_a_revision_renumbers_it_and_it_leaves_the_history(cluster: Standin) -> None:
    first = template(cluster)
    ok(cluster, "set", "image", "deployment/api", "api=ptf:1.1")
    ok(cluster, "set", "image", "deployment/api", "api=ptf:1.2")
    ok(cluster, "rollout", "undo", "deployment/api", "--to-revision=1")
    deployment = cluster.deployment("api", "prod")
    assert (template(cluster), revisions(cluster)) == (first, [2, 3, 4])
    assert deployment["annotations"][REVISION] == "4"


def test_undo_to_a_revision_not_in_history_fails_and_changes_nothing(cluster: Standin) -> None:
    before = cluster.deployment("api", "prod")
    code, _, err = cluster.run("rollout", "undo", "deployment/api", "--to-revision=7", "-n", "prod")
    assert (code, err) == (1, "error: unable to find specified revision 7 in history\n")
    assert cluster.deployment("api", "prod") == before


def test_undo_without_an_earlier_revision_fails(cluster: Standin) -> None:
    code, _, err = cluster.run("rollout", "undo", "deployment/api", "-n", "prod")
    assert (code, err) == (1, 'error: no rollout history found for deployment "api"\n')


def test_annotate_changes_metadata_only(cluster: Standin) -> None:
    ok(
        cluster,
        "annotate",
        "deployment/api",
        "ptf-admin.io/gate-approved-revision=1",
        "--overwrite",
    )
    deployment = cluster.deployment("api", "prod")
    assert deployment["annotations"]["ptf-admin.io/gate-approved-revision"] == "1"
    assert revisions(cluster) == [1]


def test_annotate_is_copied_to_the_current_replicaset_only(cluster: Standin) -> None:
    ok(cluster, "set", "image", "deployment/api", "api=ptf:1.1")
    ok(cluster, "annotate", "deployment/api", "note=a")
    carried = {
        rs["revision"]: rs["annotations"] for rs in cluster.deployment("api", "prod")["replicasets"]
    }
    assert carried == {1: {}, 2: {"note": "a"}}


def test_undo_brings_back_the_restored_replicasets_annotations(cluster: Standin) -> None:
    ok(cluster, "annotate", "deployment/api", "note=first")
    ok(cluster, "set", "image", "deployment/api", "api=ptf:1.1")
    ok(cluster, "annotate", "deployment/api", "note=second", "later=x", "--overwrite")
    ok(cluster, "rollout", "undo", "deployment/api", "--to-revision=1")
    annotations = cluster.deployment("api", "prod")["annotations"]
    assert annotations == {"note": "first", REVISION: "3"}


def test_annotate_without_overwrite_refuses_to_change_a_value(cluster: Standin) -> None:
    ok(cluster, "annotate", "deployment/api", "note=a")
    code, _, err = cluster.run("annotate", "deployment/api", "note=b", "-n", "prod")
    assert (code, "--overwrite is false" in err) == (1, True)


def test_get_jsonpath_reads_the_revision_annotation(cluster: Standin) -> None:
    ok(cluster, "set", "image", "deployment/api", "api=ptf:1.1")
    out = ok(
        cluster,
        "get",
        "deployment",
        "api",
        "-o",
        "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
    )
    assert out == "2\n"


def test_get_json_shows_the_pod_template(cluster: Standin) -> None:
    document = json.loads(ok(cluster, "get", "deployment/api", "-o", "json"))
    containers = document["spec"]["template"]["spec"]["containers"]
    assert (document["kind"], containers[0]["image"]) == ("Deployment", "ptf:1.0")


def test_rollout_history_lists_the_revisions(cluster: Standin) -> None:
    ok(cluster, "set", "image", "deployment/api", "api=ptf:1.1")
    out = ok(cluster, "rollout", "history", "deployment/api")
    rows = [line.split()[0] for line in out.splitlines()[2:] if line.strip()]
    assert rows == ["1", "2"]


def test_rollout_status_of_a_finished_rollout(cluster: Standin) -> None:
    out = ok(cluster, "rollout", "status", "deployment/api", "--watch=false")
    assert out == 'deployment "api" successfully rolled out\n'


def test_rollout_status_of_a_stalled_rollout_without_watch_still_exits_0(
    cluster: Standin,
) -> None:
    cluster.set_stalled("api", "prod", True)
    out = ok(cluster, "rollout", "status", "deployment/api", "--watch=false")
    assert out.startswith('Waiting for deployment "api" rollout to finish')


def test_rollout_status_of_a_stalled_rollout_times_out(cluster: Standin) -> None:
    cluster.set_stalled("api", "prod", True)
    code, _, err = cluster.run("rollout", "status", "deployment/api", "--timeout=5s", "-n", "prod")
    assert (code, err.splitlines()[-1]) == (1, "error: timed out waiting for the condition")


def test_set_env_on_several_deployments_with_one_missing_changes_none(cluster: Standin) -> None:
    code, _, err = cluster.run(
        "set", "env", "deployment/api", "deployment/gone", "PILOT_ENABLED=false", "-n", "prod"
    )
    assert (code, err) == (1, 'Error from server (NotFound): deployments.apps "gone" not found\n')
    assert pilot(cluster) == "true"


def test_namespaces_are_separate(cluster: Standin) -> None:
    code, _, err = cluster.run("get", "deployment/api")
    assert (code, "not found" in err) == (1, True)


def test_old_revisions_beyond_the_history_limit_are_pruned(tmp_path: Path) -> None:
    standin = install(tmp_path / "small")
    standin.add(new_deployment("api", "default", [{"name": "api", "image": "v0"}], 2))
    for version in ("v1", "v2", "v3"):
        assert standin.run("set", "image", "deployment/api", f"api={version}")[0] == 0
    kept = sorted(rs["revision"] for rs in standin.deployment("api")["replicasets"])
    assert kept == [2, 3, 4]


def test_unknown_command_exits_non_zero_like_kubectl(cluster: Standin) -> None:
    code, _, err = cluster.run("scale", "deployment/api", "--replicas=0")
    assert (code, err) == (1, 'error: unknown command "scale" for "kubectl"\n')


def test_unknown_flag_exits_non_zero_like_kubectl(cluster: Standin) -> None:
    code, _, err = cluster.run("rollout", "undo", "deployment/api", "--dry-run=client")
    assert (code, err.splitlines()[0]) == (1, "error: unknown flag: --dry-run")


def test_the_installed_binary_runs_the_stand_in(cluster: Standin) -> None:
    result = subprocess.run(
        [str(cluster.binary), "rollout", "history", "deployment/api", "-n", "prod"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout.splitlines()[0]) == (0, "deployment.apps/api ")
    assert cluster.calls()[-1] == ["rollout", "history", "deployment/api", "-n", "prod"]
