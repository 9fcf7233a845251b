"""Policies of the rendered Kubernetes manifests, checked in every overlay.

Each test reads `kubectl kustomize` output (see conftest.py), so it checks what
a cluster would be given, after every patch.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from services.pipeline.settings import QueueSettings
from services.runtime.config.settings import default_ports
from services.runtime.server import start_service
from tests.deploy.conftest import Manifest, render_with_thresholds
from tests.deploy.manifests import (
    API_DEPLOYMENTS,
    DEPLOYMENTS,
    SERVICE_OF,
    containers,
    env_of,
    env_value,
    labels_match,
    pod_spec,
    port_of,
    server,
)
from tests.deploy.netpol import Edge, Endpoint, allowed_edges

NAMESPACE = "ptf-admin"
GRPC_SERVERS = ("ptf-gate", "ptf-telemetry", "ptf-pipeline")
# Every process that reads PILOT_ENABLED: the pipeline API (intake refusals) and its
# workers (skipping queued pilot jobs). Health shows the pipeline's own switch, which
# it asks the pipeline for, so it carries neither the switch nor the extractor's key.
PILOT_READERS = ("ptf-pipeline", "ptf-pipeline-worker")
# Every service that calls another presents its service key; telemetry calls no one.
# Admin and tenant keys live in the shared key store, never in a pod's environment.
SECRET_ENV = {
    "ptf-gate": {"DATABASE_URL", "REDIS_URL", "PTF_SERVICE_KEY"},
    "ptf-telemetry": {"DATABASE_URL", "REDIS_URL"},
    "ptf-pipeline": {"DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY", "PTF_SERVICE_KEY"},
    "ptf-pipeline-worker": {"DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY", "PTF_SERVICE_KEY"},
    "ptf-health": {"DATABASE_URL", "REDIS_URL", "PTF_SERVICE_KEY"},
}


def test_each_named_deployment_is_rendered(deployments: dict[str, Manifest]) -> None:
    assert sorted(deployments) == sorted(DEPLOYMENTS)


def test_every_object_lives_in_the_ptf_admin_namespace(objects: list[Manifest]) -> None:
    namespaced = [o for o in objects if o["kind"] != "Namespace"]
    assert {o["metadata"].get("namespace") for o in namespaced} == {NAMESPACE}


def test_rolling_updates_never_take_a_pod_down_first(deployments: dict[str, Manifest]) -> None:
    for name, deployment in deployments.items():
        strategy = deployment["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate", name
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0, name


def test_revision_history_is_kept_for_rollout_undo(deployments: dict[str, Manifest]) -> None:
    for name, deployment in deployments.items():
        assert deployment["spec"]["revisionHistoryLimit"] >= 5, name


def test_grpc_servers_are_ready_by_native_grpc_health_probe(
    deployments: dict[str, Manifest],
) -> None:
    for name in GRPC_SERVERS:
        container = server(deployments[name])
        probe = container["readinessProbe"]["grpc"]
        assert probe == {"port": port_of(container, "grpc"), "service": ""}, name


def test_grpc_ports_are_the_configured_service_ports(deployments: dict[str, Manifest]) -> None:
    for name in ("ptf-gate", "ptf-telemetry", "ptf-pipeline", "ptf-health"):
        container = server(deployments[name])
        grpc_port, http_port = default_ports(SERVICE_OF[name])
        assert (port_of(container, "grpc"), port_of(container, "http")) == (grpc_port, http_port)
        assert env_value(container, "PTF_GRPC_PORT") == str(grpc_port)
        assert env_value(container, "PTF_HTTP_PORT") == str(http_port)


def test_health_readiness_is_its_own_liveness_endpoint(deployments: dict[str, Manifest]) -> None:
    """Health must stay reachable while the system it reports on is not ready."""
    probe = server(deployments["ptf-health"])["readinessProbe"]
    assert probe["httpGet"] == {"path": "/health", "port": "http"}


def test_worker_readiness_is_http_health_of_its_worker_port(
    deployments: dict[str, Manifest],
) -> None:
    """The worker serves no gRPC; its /health turns 503 when the worker loops die."""
    container = server(deployments["ptf-pipeline-worker"])
    args = container["args"]
    assert args[0] == "worker"
    http_port = int(args[args.index("--http-port") + 1])
    assert port_of(container, "http") == http_port
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}


def test_liveness_and_startup_probe_health_over_http(deployments: dict[str, Manifest]) -> None:
    for name, deployment in deployments.items():
        container = server(deployment)
        for probe in ("livenessProbe", "startupProbe"):
            assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}, (name, probe)


def test_pilot_switch_is_set_on_every_process_that_reads_it(
    deployments: dict[str, Manifest],
) -> None:
    for name in PILOT_READERS:
        assert env_value(server(deployments[name]), "PILOT_ENABLED") == "true", name


def test_health_carries_neither_the_pilot_switch_nor_the_extractor_settings(
    deployments: dict[str, Manifest],
) -> None:
    env = env_of(server(deployments["ptf-health"]))
    assert not {"PILOT_ENABLED", "EXTRACTOR", "OPENAI_API_KEY"} & set(env)


def test_keys_and_store_urls_come_from_secret_references(
    objects: list[Manifest], deployments: dict[str, Manifest]
) -> None:
    assert not [o for o in objects if o["kind"] == "Secret"]
    for name, wanted in SECRET_ENV.items():
        env = env_of(server(deployments[name]))
        for variable in wanted:
            reference = env[variable]["valueFrom"]["secretKeyRef"]
            assert reference["name"].startswith("ptf-admin-"), (name, variable)
            assert "value" not in env[variable], (name, variable)


def test_pods_run_non_root_read_only_without_privileges(workloads: list[Manifest]) -> None:
    for workload in workloads:
        pod = pod_spec(workload)["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert pod["runAsUser"] > 0
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in containers(workload):
            context = container["securityContext"]
            where = (workload["metadata"]["name"], container["name"])
            assert context["runAsNonRoot"] is True, where
            assert context["runAsUser"] > 0, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where


def test_service_accounts_mount_no_api_token(
    objects: list[Manifest], workloads: list[Manifest]
) -> None:
    accounts = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceAccount"}
    for workload in workloads:
        spec = pod_spec(workload)
        assert spec["automountServiceAccountToken"] is False
        assert accounts[spec["serviceAccountName"]]["automountServiceAccountToken"] is False


def test_every_container_has_requests_and_limits(workloads: list[Manifest]) -> None:
    for workload in workloads:
        for container in containers(workload):
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert set(resources[kind]) == {"cpu", "memory"}, (container["name"], kind)


def test_tmp_is_a_writable_empty_dir(workloads: list[Manifest]) -> None:
    for workload in workloads:
        volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
        for container in containers(workload):
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], container["name"]


def test_metric_stores_persist_to_a_mounted_empty_dir(deployments: dict[str, Manifest]) -> None:
    """Gate and telemetry write their metric stores under PTF_METRICS_DIR."""
    for name in ("ptf-gate", "ptf-telemetry"):
        container = server(deployments[name])
        volumes = {v["name"]: v for v in pod_spec(deployments[name])["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "emptyDir" in volumes[mounts[env_value(container, "PTF_METRICS_DIR")]], name


def test_termination_grace_outlasts_the_services_shutdown(
    deployments: dict[str, Manifest],
) -> None:
    service_grace = inspect.signature(start_service).parameters["grace_seconds"].default
    worker_grace = QueueSettings().visibility_timeout_seconds / 2
    for name, deployment in deployments.items():
        grace = worker_grace if name == "ptf-pipeline-worker" else service_grace
        assert pod_spec(deployment)["terminationGracePeriodSeconds"] > grace, name


def test_every_deployment_has_a_disruption_budget(
    objects: list[Manifest], deployments: dict[str, Manifest]
) -> None:
    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets if labels_match(b["spec"]["selector"], labels)]
        assert len(covering) == 1, name


def test_the_autoscaler_scales_the_worker(objects: list[Manifest]) -> None:
    (hpa,) = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "ptf-pipeline-worker")
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def test_worker_replicas_are_left_to_the_autoscaler(deployments: dict[str, Manifest]) -> None:
    """A replicas field would fight the HPA on every apply."""
    assert "replicas" not in deployments["ptf-pipeline-worker"]["spec"]


def test_thresholds_config_map_name_carries_a_content_hash(
    objects: list[Manifest], workloads: list[Manifest]
) -> None:
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap"]
    name = config_map["metadata"]["name"]
    assert re.fullmatch(r"ptf-thresholds-[a-z0-9]{10}", name)
    for workload in workloads:
        mounted = {
            v["configMap"]["name"] for v in pod_spec(workload)["volumes"] if "configMap" in v
        }
        assert mounted == {name}, workload["metadata"]["name"]


def test_thresholds_file_env_names_the_mounted_file(
    objects: list[Manifest], workloads: list[Manifest]
) -> None:
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap"]
    (file_name,) = config_map["data"]
    for workload in workloads:
        volume = next(v["name"] for v in pod_spec(workload)["volumes"] if "configMap" in v)
        for container in containers(workload):
            mount = next(m for m in container["volumeMounts"] if m["name"] == volume)
            expected = f"{mount['mountPath']}/{file_name}"
            assert env_value(container, "PTF_THRESHOLDS_FILE") == expected, container["name"]


def test_a_threshold_change_renames_the_config_map_the_pods_mount(
    rendered: dict[str, list[Manifest]], tmp_path: Path
) -> None:
    """The content hash is what rolls the pods: a changed file gives every template a new name."""
    changed = render_with_thresholds(tmp_path, "Mismatch:\n  RATIO: 0.04\n")
    before, after = _config_map_name(rendered["staging"]), _config_map_name(changed)
    assert before != after
    for workload in (o for o in changed if o["kind"] in {"Deployment", "Job"}):
        mounted = {
            v["configMap"]["name"] for v in pod_spec(workload)["volumes"] if "configMap" in v
        }
        assert mounted == {after}, workload["metadata"]["name"]


def _config_map_name(objects: list[Manifest]) -> str:
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap"]
    name: str = config_map["metadata"]["name"]
    return name


def test_prometheus_finds_every_metrics_port_under_its_job(
    deployments: dict[str, Manifest],
) -> None:
    for name, deployment in deployments.items():
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        container = server(deployment)
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        assert annotations["prometheus.io/port"] == str(port_of(container, "http"))
        assert annotations["prometheus.io/job"] == SERVICE_OF[name]


def test_services_expose_the_container_ports(
    objects: list[Manifest], deployments: dict[str, Manifest]
) -> None:
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    for name, deployment in deployments.items():
        service = services[name]
        assert labels_match(
            {"matchLabels": service["spec"]["selector"]},
            deployment["spec"]["template"]["metadata"]["labels"],
        )
        exposed = {(p["name"], p["port"]) for p in service["spec"]["ports"]}
        declared = {(p["name"], p["containerPort"]) for p in server(deployment)["ports"]}
        assert exposed == declared, name


def test_service_addresses_point_at_the_services(deployments: dict[str, Manifest]) -> None:
    for name, deployment in deployments.items():
        for variable, entry in env_of(server(deployment)).items():
            if variable.startswith("PTF_") and variable.endswith("_ADDR"):
                target = variable.removeprefix("PTF_").removesuffix("_ADDR").lower()
                grpc_port, _ = default_ports(target)
                assert entry["value"] == f"ptf-{target}:{grpc_port}", (name, variable)


def test_the_migration_job_migrates_every_service(objects: list[Manifest]) -> None:
    (job,) = [o for o in objects if o["kind"] == "Job"]
    commands = [(c["command"], c["args"]) for c in containers(job)]
    assert sorted(commands) == sorted(
        ([f"ptf-{service}"], ["migrate"]) for service in ("gate", "telemetry", "pipeline", "health")
    )
    assert pod_spec(job)["restartPolicy"] == "Never"


def test_env_names_the_overlay(workloads: list[Manifest], overlay: str) -> None:
    for workload in workloads:
        for container in containers(workload):
            assert env_value(container, "ENV") == overlay, container["name"]


def test_build_id_names_the_image_tag(workloads: list[Manifest]) -> None:
    """`git:<sha>` as the build id, `git-<sha>` as the tag: one release, one name."""
    for workload in workloads:
        for container in containers(workload):
            tag = container["image"].rsplit(":", 1)[1]
            assert env_value(container, "BUILD_ID").replace(":", "-") == tag, container["name"]


def test_staging_runs_one_replica_of_each_api_service(rendered: dict[str, list[Manifest]]) -> None:
    replicas = {
        o["metadata"]["name"]: o["spec"]["replicas"]
        for o in rendered["staging"]
        if o["kind"] == "Deployment" and o["metadata"]["name"] in API_DEPLOYMENTS
    }
    assert replicas == dict.fromkeys(API_DEPLOYMENTS, 1)


def test_production_runs_at_least_two_replicas_of_each_api_service(
    rendered: dict[str, list[Manifest]],
) -> None:
    for o in rendered["production"]:
        if o["kind"] == "Deployment" and o["metadata"]["name"] in API_DEPLOYMENTS:
            assert o["spec"]["replicas"] >= 2, o["metadata"]["name"]


def test_production_pods_get_more_memory_than_staging(
    rendered: dict[str, list[Manifest]],
) -> None:
    def limits(overlay: str) -> dict[str, str]:
        return {
            o["metadata"]["name"]: server(o)["resources"]["limits"]["memory"]
            for o in rendered[overlay]
            if o["kind"] == "Deployment"
        }

    staging, production = limits("staging"), limits("production")
    for name in DEPLOYMENTS:
        assert _mebibytes(production[name]) > _mebibytes(staging[name]), name


def test_production_autoscaler_keeps_more_workers(rendered: dict[str, list[Manifest]]) -> None:
    def hpa(overlay: str) -> Manifest:
        (found,) = [o for o in rendered[overlay] if o["kind"] == "HorizontalPodAutoscaler"]
        return found

    assert hpa("production")["spec"]["minReplicas"] >= 2
    assert hpa("production")["spec"]["maxReplicas"] > hpa("staging")["spec"]["maxReplicas"]


def _mebibytes(quantity: str) -> int:
    units = {"Mi": 1, "Gi": 1024}
    return int(quantity[:-2]) * units[quantity[-2:]]


# ---- network policy ------------------------------------------------------------------

OWN_NAMESPACE = {"kubernetes.io/metadata.name": NAMESPACE}
STORES_IP = "10.20.30.40"  # where PostgreSQL and Redis live in the base's address range


def _endpoints(objects: list[Manifest]) -> list[Endpoint]:
    ours = []
    for workload in (o for o in objects if o["kind"] in {"Deployment", "Job"}):
        ports = tuple(
            (p["containerPort"], p.get("protocol", "TCP"))
            for c in containers(workload)
            for p in c.get("ports", [])
        )
        ours.append(
            Endpoint(
                name=workload["metadata"]["name"],
                namespace_labels=OWN_NAMESPACE,
                labels=workload["spec"]["template"]["metadata"]["labels"],
                ports=ports,
                ours=True,
            )
        )
    outside = [
        Endpoint(
            "prometheus",
            {"kubernetes.io/metadata.name": "monitoring"},
            {"app.kubernetes.io/name": "prometheus"},
            ((9090, "TCP"),),
        ),
        Endpoint(
            "kube-dns",
            {"kubernetes.io/metadata.name": "kube-system"},
            {"k8s-app": "kube-dns"},
            ((53, "UDP"), (53, "TCP")),
        ),
        Endpoint(
            "client",
            {"kubernetes.io/metadata.name": "ingress", "ptf-admin.io/client": "true"},
            {"app": "ingress-controller"},
            ((443, "TCP"),),
        ),
        # Neither a client namespace nor Prometheus: must reach nothing.
        Endpoint("stranger", {"kubernetes.io/metadata.name": "default"}, {}, ((80, "TCP"),)),
        # A pod of our namespace that is not part of ptf-admin.
        Endpoint("neighbour", OWN_NAMESPACE, {"app": "debug"}, ((8080, "TCP"),), ours=True),
        Endpoint("stores", ports=((5432, "TCP"), (6379, "TCP")), ip=STORES_IP),
        Endpoint("internet", ports=((443, "TCP"),), ip="93.184.216.34"),
    ]
    return ours + outside


def _expected_edges() -> set[Edge]:
    app_pods = [*DEPLOYMENTS, "ptf-migrate"]
    edges: set[Edge] = {
        # gate: signals and reports to telemetry, readiness from health, backtest
        # results from the pipeline (GetBacktestResult)
        ("ptf-gate", "ptf-telemetry", 50052, "TCP"),
        ("ptf-gate", "ptf-health", 50054, "TCP"),
        ("ptf-gate", "ptf-pipeline", 50053, "TCP"),
        # health: grpc.health.v1 and status of every service
        ("ptf-health", "ptf-gate", 50051, "TCP"),
        ("ptf-health", "ptf-telemetry", 50052, "TCP"),
        ("ptf-health", "ptf-pipeline", 50053, "TCP"),
        # pipeline events (outbox relay) to telemetry
        ("ptf-pipeline", "ptf-telemetry", 50052, "TCP"),
        ("ptf-pipeline-worker", "ptf-telemetry", 50052, "TCP"),
        # clients: gatectl, invoice submissions, the load balancer's readiness check
        ("client", "ptf-gate", 50051, "TCP"),
        ("client", "ptf-pipeline", 50053, "TCP"),
        ("client", "ptf-pipeline", 8083, "TCP"),
        ("client", "ptf-health", 8084, "TCP"),
        # Prometheus scrapes /metrics on every service pod's HTTP port
        ("prometheus", "ptf-gate", 8081, "TCP"),
        ("prometheus", "ptf-telemetry", 8082, "TCP"),
        ("prometheus", "ptf-pipeline", 8083, "TCP"),
        ("prometheus", "ptf-pipeline-worker", 8083, "TCP"),
        ("prometheus", "ptf-health", 8084, "TCP"),
    }
    for pod in app_pods:
        edges |= {
            (pod, "kube-dns", 53, "UDP"),
            (pod, "kube-dns", 53, "TCP"),
            (pod, "stores", 5432, "TCP"),
            (pod, "stores", 6379, "TCP"),
        }
    return edges


def test_network_policies_allow_exactly_the_service_graph(objects: list[Manifest]) -> None:
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    assert allowed_edges(policies, _endpoints(objects), OWN_NAMESPACE) == _expected_edges()


def test_network_policy_denies_all_traffic_by_default(objects: list[Manifest]) -> None:
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    default_deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert len(default_deny) == 1
