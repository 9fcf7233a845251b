"""Expose the preflight and gate stores through OpenTelemetry observable instruments.

The callbacks read the stores' cumulative totals at scrape time, so a service
that loads its stores from disk at start shows the persisted totals on
`/metrics` right after a restart. Families, labels and HELP are the registry
entries the stores' own exporters use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from services.runtime.metric_registry import BY_NAME
from services.runtime.metric_stores.exposition import Family
from services.runtime.metric_stores.gate import GateMetricExporter, GateMetricStore
from services.runtime.metric_stores.preflight import MetricExporter, MetricStore
from services.runtime.metrics import observable_counter, observable_gauge


def _register_families(meter: Meter, families: Callable[[], list[Family]]) -> None:
    """One observable instrument per family; each callback re-reads its family at scrape."""
    for template in families():

        def callback(_: CallbackOptions, name: str = template.name) -> Iterable[Observation]:
            family = next(f for f in families() if f.name == name)
            return [Observation(s.value, dict(s.labels)) for s in family.samples]

        entry = BY_NAME[template.name]
        if entry.kind == "counter":
            observable_counter(meter, entry, callback)
        else:
            observable_gauge(meter, entry, callback)


def register_preflight_store(meter: Meter, store: MetricStore) -> None:
    """Observable `release_preflight_*` instruments reading `store`."""
    _register_families(meter, lambda: MetricExporter.families(store))


def register_gate_store(meter: Meter, store: GateMetricStore) -> None:
    """Observable `release_gate_*` instruments reading `store`."""
    _register_families(meter, lambda: GateMetricExporter.families(store))
