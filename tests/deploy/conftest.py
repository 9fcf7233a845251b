"""Rendered Kubernetes manifests: every overlay through `kubectl kustomize`, once per session.

The tests read what a cluster would receive, not the base files, so a patch that
drops a field fails here. A missing kubectl fails the suite: skipping would let
the manifests go unchecked.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("staging", "production")

Manifest = dict[str, Any]


def render(overlay_dir: Path) -> list[Manifest]:
    """The objects `kubectl kustomize` renders for one overlay directory."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not on PATH: the Kubernetes manifests cannot be rendered")
    result = subprocess.run(
        [kubectl, "kustomize", str(overlay_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize {overlay_dir} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Manifest]]:
    return {overlay: render(K8S / "overlays" / overlay) for overlay in OVERLAYS}


def render_with_thresholds(workdir: Path, thresholds: str) -> list[Manifest]:
    """The staging overlay rendered from a copy of deploy/k8s with another thresholds file."""
    copy = workdir / "k8s"
    shutil.copytree(K8S, copy)
    (copy / "base" / "thresholds.yaml").write_text(thresholds, encoding="utf-8")
    return render(copy / "overlays" / "staging")


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def objects(rendered: dict[str, list[Manifest]], overlay: str) -> list[Manifest]:
    return rendered[overlay]


@pytest.fixture
def deployments(objects: list[Manifest]) -> dict[str, Manifest]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}


@pytest.fixture
def workloads(objects: list[Manifest]) -> list[Manifest]:
    """Every object with a pod template (Deployments and the migration Job)."""
    return [o for o in objects if o["kind"] in {"Deployment", "Job"}]
