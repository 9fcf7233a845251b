"""OpenTelemetry meters exported in Prometheus format, one registry per process.

The MeterProvider is passed by constructor, never installed globally, so tests
can run several services in one process without sharing state. Every
instrument is created from an entry of `metric_registry` (name, help, kind), so
a family is spelled in one place only.

Histograms are the exception to OpenTelemetry: a record costs about 5.6 µs there
(a copy and a recursive hash of the attributes, a measurement object, a lock,
the bucket search) against about 1 µs for a `prometheus_client` histogram in
the same registry, and the worker records four per invoice, which made
OpenTelemetry 15 % of the worker's CPU (docs/performance.md). They are exported
with the same names, labels and bucket bounds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Middleware
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Counter, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, disable_created_metrics
from prometheus_client import Histogram as PrometheusHistogram
from prometheus_client.aiohttp import make_aiohttp_handler

from services.runtime import metric_registry as registry
from services.runtime.config import AppConfig
from services.runtime.metric_registry import MetricFamily, instrument_name
from services.runtime.traffic import StoreTraffic

Callback = Callable[[CallbackOptions], Iterable[Observation]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

UNMATCHED_ROUTE = "unmatched"
"""`route` label of requests no route matched, so probing random paths adds one series only."""
OTHER_METHOD = "OTHER"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# OpenTelemetry's default explicit bucket bounds, which the histograms were exported with.
HISTOGRAM_BUCKETS_MS = (0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000)

# No `<name>_created` series beside each histogram: the OpenTelemetry exporter has none.
disable_created_metrics()  # type: ignore[no-untyped-call]


def _expect(family: MetricFamily, kind: registry.Kind) -> None:
    if family.kind != kind:
        raise ValueError(f"{family.name} is a {family.kind}, not a {kind}")


def counter(meter: Meter, family: MetricFamily) -> Counter:
    """The counter exported as `family.name`."""
    _expect(family, "counter")
    return meter.create_counter(instrument_name(family), description=family.help)


class MillisecondHistogram:
    """A histogram of milliseconds exported as `family.name` from the service's registry."""

    def __init__(self, registry: CollectorRegistry, family: MetricFamily) -> None:
        _expect(family, "histogram")
        self._labels = family.labels
        self._histogram = PrometheusHistogram(
            family.name,
            family.help,
            labelnames=family.labels,
            buckets=HISTOGRAM_BUCKETS_MS,
            registry=registry,
        )
        self._children: dict[tuple[str, ...], PrometheusHistogram] = {}

    def record(self, milliseconds: float, attributes: Mapping[str, str] | None = None) -> None:
        """One value; `attributes` names a value for each of the family's labels."""
        if not self._labels:
            self._histogram.observe(milliseconds)
            return
        assert attributes is not None, "a labelled histogram needs its label values"
        values = tuple(attributes[name] for name in self._labels)
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._histogram.labels(*values)
        child.observe(milliseconds)


def histogram(metrics: Metrics, family: MetricFamily) -> MillisecondHistogram:
    """The millisecond histogram exported as `family.name`: one per family and registry,
    however many builders ask (as an OpenTelemetry meter hands out one instrument)."""
    if family.name not in metrics.histograms:
        metrics.histograms[family.name] = MillisecondHistogram(metrics.registry, family)
    return metrics.histograms[family.name]


def observable_gauge(meter: Meter, family: MetricFamily, callback: Callback) -> None:
    """A gauge read at scrape time, exported as `family.name`."""
    _expect(family, "gauge")
    meter.create_observable_gauge(
        instrument_name(family), callbacks=[callback], description=family.help
    )


def observable_counter(meter: Meter, family: MetricFamily, callback: Callback) -> None:
    """A cumulative total read at scrape time, exported as `family.name`."""
    _expect(family, "counter")
    meter.create_observable_counter(
        instrument_name(family), callbacks=[callback], description=family.help
    )


@dataclass
class Metrics:
    """A service's meter provider, its Prometheus registry and the `/metrics` handler.

    `shared_counter` hands out one counter per family, so runtime pieces that
    several builders use (the token store, say) never create an instrument twice.
    """

    provider: MeterProvider
    registry: CollectorRegistry
    meter: Meter
    _counters: dict[str, Counter] = field(default_factory=dict)
    histograms: dict[str, MillisecondHistogram] = field(default_factory=dict)

    def shared_counter(self, family: MetricFamily) -> Counter:
        if family.name not in self._counters:
            self._counters[family.name] = counter(self.meter, family)
        return self._counters[family.name]

    def shutdown(self) -> None:
        self.provider.shutdown()


def create_metrics(config: AppConfig) -> Metrics:
    """Build the provider and register `ptf_build_info{build_id, config_hash, service, env}`."""
    prometheus_registry = CollectorRegistry(auto_describe=True)
    reader = PrometheusMetricReader(scope_info_enabled=False, registry=prometheus_registry)
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

    observable_gauge(meter, registry.BUILD_INFO, build_info)
    return Metrics(provider=provider, registry=prometheus_registry, meter=meter)


def metrics_route(metrics: Metrics) -> web.RouteDef:
    """`GET /metrics` serving the service's registry with content negotiation."""
    return web.get("/metrics", make_aiohttp_handler(metrics.registry))


def route_template(request: web.Request) -> str:
    """The matched route's template (`/admin/incidents/{incident_id}`), never the raw path."""
    if request.match_info.http_exception is not None:
        return UNMATCHED_ROUTE
    route = request.match_info.route
    resource = route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


def store_traffic(metrics: Metrics) -> StoreTraffic:
    """The process's store traffic, exported as four counters read at scrape time.

    Pass it to `create_pool` and `create_redis`: `ptf_db_statements_total`,
    `ptf_db_transactions_total`, `ptf_redis_commands_total` and
    `ptf_redis_round_trips_total` then count what they send.
    """
    traffic = StoreTraffic()
    counts: dict[MetricFamily, Callable[[], int]] = {
        registry.DB_STATEMENTS: lambda: traffic.db_statements,
        registry.DB_TRANSACTIONS: lambda: traffic.db_transactions,
        registry.REDIS_COMMANDS: lambda: traffic.redis_commands,
        registry.REDIS_ROUND_TRIPS: lambda: traffic.redis_round_trips,
    }
    for family, count in counts.items():
        observable_counter(metrics.meter, family, _reading(count))
    return traffic


def _reading(count: Callable[[], int]) -> Callback:
    return lambda _options: [Observation(count())]


def http_requests_middleware(metrics: Metrics) -> Middleware:
    """Count every request as `ptf_http_requests_total{route, method, code}`.

    It sits outside the error middleware, so `code` is the status the client got;
    methods outside the standard set count as `OTHER` (label values stay bounded).
    """
    requests = counter(metrics.meter, registry.HTTP_REQUESTS)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            method = request.method if request.method in _METHODS else OTHER_METHOD
            labels = {"route": route_template(request), "method": method, "code": str(status)}
            requests.add(1, labels)

    return middleware
