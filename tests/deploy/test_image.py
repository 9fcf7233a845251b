"""The one container image: every command the manifests run exists in it, and it is not root.

The image itself cannot be built here (no container engine), so these tests hold
the Dockerfile and the manifests to the package's entry points instead.
"""

from __future__ import annotations

import re
import tomllib

from tests.deploy.conftest import REPO, Manifest
from tests.deploy.manifests import containers, pod_spec

DOCKERFILE = REPO / "deploy" / "Dockerfile"


def _scripts() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return set(project["project"]["scripts"])


def _final_stage() -> list[str]:
    lines = [
        line.strip()
        for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    last_from = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    return lines[last_from:]


def test_every_command_the_manifests_run_is_an_entry_point(workloads: list[Manifest]) -> None:
    scripts = _scripts()
    for workload in workloads:
        for container in containers(workload):
            assert container["command"][0] in scripts, container["name"]


def test_the_image_runs_as_a_non_root_user() -> None:
    (user,) = [line.split()[1] for line in _final_stage() if line.startswith("USER ")]
    uid = user.split(":")[0]
    assert uid.isdigit(), "USER must be numeric for runAsNonRoot to verify it"
    assert int(uid) > 0


def test_the_image_user_is_the_pods_run_as_user(workloads: list[Manifest]) -> None:
    (user,) = [line.split()[1] for line in _final_stage() if line.startswith("USER ")]
    for workload in workloads:
        assert pod_spec(workload)["securityContext"]["runAsUser"] == int(user.split(":")[0])


def test_the_image_is_python_3_11_slim() -> None:
    assert _final_stage()[0].split()[1] == "python:3.11-slim"


def test_the_image_generates_the_grpc_code_it_imports() -> None:
    """gen/ is never in git: the build must run protoc over every proto."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"grpc_tools\.protoc .*--python_out=gen .*--grpc_python_out=gen", text)
