"""The runtime's millisecond histograms are exported as OpenTelemetry's exporter exported them."""

from __future__ import annotations

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.runtime import metric_registry as registry
from services.runtime.metric_registry import MetricFamily, instrument_name
from services.runtime.metrics import MillisecondHistogram, create_metrics, histogram
from tests.support.services import ConfigFactory

VALUES = (0.0, 0.3, 5.0, 7.5, 12.5, 400.0, 9999.9, 20000.0)


Sample = tuple[str, frozenset[tuple[str, str]], float]


def _samples(exposition: bytes, family: MetricFamily) -> set[Sample]:
    """The family's samples as (name, labels, value), whatever their order in the text."""
    found: set[Sample] = set()
    for parsed in text_string_to_metric_families(exposition.decode()):
        if parsed.name == family.name:
            assert parsed.type == "histogram"
            assert parsed.documentation == family.help
            for sample in parsed.samples:
                found.add((sample.name, frozenset(sample.labels.items()), sample.value))
    return found


def _as_opentelemetry_exported(family: MetricFamily, labels: dict[str, str]) -> bytes:
    prometheus = CollectorRegistry(auto_describe=True)
    reader = PrometheusMetricReader(scope_info_enabled=False, registry=prometheus)
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    instrument = meter.create_histogram(instrument_name(family), unit="ms", description=family.help)
    for value in VALUES:
        instrument.record(value, labels)
    return generate_latest(prometheus)


def _as_exported_now(family: MetricFamily, labels: dict[str, str]) -> bytes:
    prometheus = CollectorRegistry(auto_describe=True)
    histogram = MillisecondHistogram(prometheus, family)
    for value in VALUES:
        histogram.record(value, labels)
    return generate_latest(prometheus)


def test_a_labelled_histogram_has_the_names_labels_buckets_and_values_opentelemetry_gave() -> None:
    labels = {"stage": "commit"}
    family = registry.STAGE_DURATION
    expected = _samples(_as_opentelemetry_exported(family, labels), family)
    assert expected
    assert _samples(_as_exported_now(family, labels), family) == expected


def test_an_unlabelled_histogram_has_the_names_buckets_and_values_opentelemetry_gave() -> None:
    family = registry.END_TO_END
    expected = _samples(_as_opentelemetry_exported(family, {}), family)
    assert expected
    assert _samples(_as_exported_now(family, {}), family) == expected


def test_a_histogram_exports_no_created_series() -> None:
    exposition = _as_exported_now(registry.END_TO_END, {}).decode()
    assert "_created" not in exposition


def test_every_builder_of_a_family_gets_the_one_histogram_of_its_registry(
    make_config: ConfigFactory,
) -> None:
    metrics = create_metrics(make_config("pipeline"))
    first = histogram(metrics, registry.STAGE_DURATION)
    assert histogram(metrics, registry.STAGE_DURATION) is first
