"""The four services wired to each other on loopback, and the traffic the live test drives.

Every service gets every other's real gRPC address (ports chosen up front, so
the gate reaches telemetry and health, and health reaches all three).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from ptf.gate.v1 import gate_pb2

from services.gate.service import DEFINITION as GATE
from services.health.service import DEFINITION as HEALTH
from services.pipeline.service import make_definition
from services.runtime.devservers import free_port
from services.runtime.smoke_fixtures import load_smoke_fixtures
from services.telemetry.service import DEFINITION as TELEMETRY
from tests.gate.service_support import gate_stub, preflight_request, spec_yaml
from tests.pipeline.service_support import fast_settings, load_sample_tables, new_tenant
from tests.support.services import (
    ConfigFactory,
    ServiceHandle,
    make_config_factory,
    running_service,
)

ADMIN = {"X-Admin-Key": "dev-admin-key"}


@dataclass
class LiveStack:
    services: dict[str, ServiceHandle]

    def metrics_targets(self) -> dict[str, str]:
        """Prometheus job → host:port of that service's HTTP /metrics."""
        return {
            name: svc.running.http_base.removeprefix("http://").rstrip("/")
            for name, svc in self.services.items()
        }


def isolated_config(database_url: str, redis_url: str) -> ConfigFactory:
    """Configs on the suite's stores, in a Redis keyspace of their own (one per stack)."""
    return make_config_factory(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "PTF_REDIS_PREFIX": f"test-{uuid.uuid4().hex[:10]}",
        }
    )


@asynccontextmanager
async def live_stack(
    make_config: ConfigFactory, metrics_root: Path, **env: str
) -> AsyncIterator[LiveStack]:
    """The four services on loopback; `env` is added to every service's environment."""
    definitions = {
        "telemetry": TELEMETRY,
        "pipeline": make_definition(fast_settings()),
        "health": HEALTH,
        "gate": GATE,
    }
    ports = {name: free_port() for name in definitions}
    addresses = {f"PTF_{name.upper()}_ADDR": f"127.0.0.1:{port}" for name, port in ports.items()}
    async with AsyncExitStack() as stack:
        services: dict[str, ServiceHandle] = {}
        for name, definition in definitions.items():
            config = make_config(
                name,
                PTF_GRPC_PORT=str(ports[name]),
                PTF_METRICS_DIR=str(metrics_root / name),
                **addresses,
                **env,
            )
            services[name] = await stack.enter_async_context(running_service(definition, config))
        yield LiveStack(services)


async def contract_breach(stack: LiveStack) -> gate_pb2.CheckResponse:
    """A Check whose spec makes a failed-tests reason non-overridable, with no override."""
    release = f"2026.01.17-{uuid.uuid4().hex[:10]}"
    request = gate_pb2.CheckRequest(
        preflight=gate_pb2.PreflightRequest(
            spec_yaml=spec_yaml(release, "non_overridable: [TESTS_FAILED]"),
            facts={"tests_passed": "false", "smoke_passed": "true"},
        ),
        operator="ops@example",
    )
    return await gate_stub(stack.services["gate"]).Check(request)


async def preflight(stack: LiveStack) -> gate_pb2.PreflightResult:
    release = f"2026.01.17-{uuid.uuid4().hex[:10]}"
    return await gate_stub(stack.services["gate"]).Preflight(preflight_request(release))


async def invoices_with_an_incident(stack: LiveStack, pg: asyncpg.Pool) -> list[dict[str, Any]]:
    """The three smoke invoices (the S1 / OCR-suspect one opens an incident), then that
    incident resolved with feedback, and one unauthenticated submission (401)."""
    pipeline = stack.services["pipeline"]
    await load_sample_tables(pg)
    tenant = await new_tenant(pg, "observe")
    results: list[dict[str, Any]] = []
    for fixture in load_smoke_fixtures():
        async with pipeline.http.post(
            f"/full-process?tenant_id={tenant.tenant_id}",
            json=fixture.extraction,
            headers=tenant.headers,
        ) as response:
            body: dict[str, Any] = await response.json()
            assert response.status == 200, body
            results.append(body)
    for incident_id in [r["incident_id"] for r in results if r["incident_id"]]:
        await _admin_post(
            pipeline,
            f"/admin/incidents/{incident_id}/resolve",
            {"resolution_reason": "rescanned the invoice", "operator": "observe"},
        )
        await _admin_post(
            pipeline,
            f"/admin/incidents/{incident_id}/feedback",
            {"hint_correct": True, "actual_root_cause": "OCR", "operator": "observe"},
        )
    async with pipeline.http.post(
        f"/full-process?tenant_id={tenant.tenant_id}", json={}
    ) as response:
        assert response.status == 401
    return results


async def ready_evaluation(stack: LiveStack) -> int:
    async with stack.services["health"].http.get("/health/ready") as response:
        return response.status


async def _admin_post(svc: ServiceHandle, path: str, body: dict[str, Any]) -> None:
    async with svc.http.post(path, json=body, headers=ADMIN) as response:
        assert response.status == 200, await response.text()
