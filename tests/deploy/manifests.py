"""Small accessors over rendered manifests, so the tests read like the policy they check."""

from __future__ import annotations

from typing import Any

Manifest = dict[str, Any]

# The Deployment names the runbook and the rollback guard use.
DEPLOYMENTS = (
    "ptf-gate",
    "ptf-telemetry",
    "ptf-pipeline",
    "ptf-pipeline-worker",
    "ptf-health",
)
# The service each Deployment runs (the worker is the pipeline's second process).
SERVICE_OF = {
    "ptf-gate": "gate",
    "ptf-telemetry": "telemetry",
    "ptf-pipeline": "pipeline",
    "ptf-pipeline-worker": "pipeline",
    "ptf-health": "health",
}
API_DEPLOYMENTS = ("ptf-gate", "ptf-telemetry", "ptf-pipeline", "ptf-health")


def pod_spec(workload: Manifest) -> Manifest:
    spec: Manifest = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Manifest) -> list[Manifest]:
    """Init containers and containers of a workload's pod template."""
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def server(deployment: Manifest) -> Manifest:
    """The one container of a service Deployment."""
    (container,) = pod_spec(deployment)["containers"]
    assert container["name"] == "server"
    return container


def env_of(container: Manifest) -> dict[str, Manifest]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def env_value(container: Manifest, name: str) -> str:
    value: str = env_of(container)[name]["value"]
    return value


def port_of(container: Manifest, name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    port: int = ports[name]
    return port


def labels_match(selector: Manifest, labels: dict[str, str]) -> bool:
    """`matchLabels` semantics; `matchExpressions` is refused rather than guessed at."""
    if selector.get("matchExpressions"):
        raise NotImplementedError("matchExpressions are not evaluated by these tests")
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())
