"""OpenTelemetry meters exported in Prometheus format, one registry per process.

The MeterProvider is passed by constructor, never installed globally, so tests
can run several services in one process without sharing state.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from services.runtime.config import AppConfig


@dataclass
class Metrics:
    """A service's meter provider, its Prometheus registry and the `/metrics` handler."""

    provider: MeterProvider
    registry: CollectorRegistry
    meter: Meter

    def shutdown(self) -> None:
        self.provider.shutdown()


def create_metrics(config: AppConfig) -> Metrics:
    """Build the provider and register `ptf_build_info{build_id, config_hash, service, env}`."""
    registry = CollectorRegistry(auto_describe=True)
    reader = PrometheusMetricReader(scope_info_enabled=False, registry=registry)
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create({"service.name": f"ptf-{config.service}"}),
    )
    meter = provider.get_meter(f"ptf.{config.service}")
    labels = {
        "build_id": config.build_id,
        "config_hash": config.config_hash,
        "service": config.service,
        "env": config.env,
    }

    def build_info(_: CallbackOptions) -> list[Observation]:
        return [Observation(1, labels)]

    meter.create_observable_gauge(
        "ptf_build_info",
        callbacks=[build_info],
        description="Build and configuration identity of the running process (always 1).",
    )
    return Metrics(provider=provider, registry=registry, meter=meter)


def metrics_route(metrics: Metrics) -> web.RouteDef:
    """`GET /metrics` serving the service's registry with content negotiation."""
    return web.get("/metrics", make_aiohttp_handler(metrics.registry))
