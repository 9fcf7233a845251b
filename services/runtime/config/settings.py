"""The effective configuration of one service process and its identity (build_id, config_hash)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from services.runtime.config.operations import (
    HousekeepingSettings,
    HttpServerSettings,
    LiveSettings,
    PipelineSettings,
)
from services.runtime.config.thresholds import Thresholds

VALID_ENVIRONMENTS = frozenset({"development", "staging", "production"})

_DEFAULT_PORTS: dict[str, tuple[int, int]] = {
    "gate": (50051, 8081),
    "telemetry": (50052, 8082),
    "pipeline": (50053, 8083),
    "health": (50054, 8084),
}


def default_ports(service: str) -> tuple[int, int]:
    """(gRPC, HTTP) default ports of docs/SPEC.md §1; unknown services get ephemeral ports."""
    return _DEFAULT_PORTS.get(service, (0, 0))


@dataclass(frozen=True)
class ServiceAddresses:
    """gRPC addresses (host:port) of the other services, for service-to-service calls."""

    gate: str
    telemetry: str
    pipeline: str
    health: str


@dataclass(frozen=True)
class AppConfig:
    """Everything a service needs to know at start; frozen and passed by constructor."""

    service: str
    env: str
    build_id: str
    thresholds: Thresholds
    thresholds_file: str
    threshold_environment: tuple[tuple[str, str], ...]
    bind_host: str
    grpc_port: int
    http_port: int
    database_url: str = field(repr=False)
    redis_url: str = field(repr=False)
    redis_prefix: str
    pilot_enabled: bool
    pilot_tenant_id: str
    extractor: str
    openai_base_url: str
    openai_model: str
    openai_api_key: str = field(repr=False)
    gate_audit_required: bool
    token_store: str
    metrics_dir: str
    dev_tenant_key: str = field(repr=False)
    dev_admin_key: str = field(repr=False)
    dev_service_key: str = field(repr=False)
    service_key: str = field(repr=False)
    addresses: ServiceAddresses
    # The pipeline's queue, relay, intake and extractor timings (operations.py).
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    # Every service's housekeeping loop (operations.py).
    housekeeping: HousekeepingSettings = field(default_factory=HousekeepingSettings)
    # Every service's HTTP server timeouts (operations.py).
    http: HttpServerSettings = field(default_factory=HttpServerSettings)
    # The live layer's buffers, heartbeats and staleness thresholds (operations.py).
    live: LiveSettings = field(default_factory=LiveSettings)
    config_hash: str = ""


def config_hash(config: AppConfig) -> str:
    """`sha256:` + 16 hex of the canonical JSON of what changes decisions.

    Only the environment and the thresholds are hashed: ports, URLs and secrets
    differ between replicas and must not make identical behaviour look different.
    """
    canonical = json.dumps(
        {"env": config.env, "thresholds": asdict(config.thresholds)},
        sort_keys=True,
        separators=(",", ":"),
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:16]


def build_id_from_env(environ: Mapping[str, str]) -> str:
    """`BUILD_ID` env, else `git:<short sha>` of the working tree, else `unknown`."""
    explicit = environ.get("BUILD_ID", "").strip()
    if explicit:
        return explicit
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=2,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"git:{sha}" if sha else "unknown"
