"""System health rules: histogram edges, top offenders, drift and digest alerts (pure)."""

from __future__ import annotations

import dataclasses
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from services.runtime.config import (
    AlertThresholds,
    DriftThresholds,
    MismatchThresholds,
    Thresholds,
    ValidationThresholds,
)
from services.telemetry.domain.health import (
    DigestInputs,
    ProviderStats,
    digest_alerts,
    drift_alerts,
    histogram,
    is_drift,
    mismatch_bucket_edges,
    top_offenders,
)

DRIFT = DriftThresholds()
ALERT = AlertThresholds()


def test_bucket_edges_come_from_the_configured_thresholds() -> None:
    thresholds = Thresholds(
        Mismatch=MismatchThresholds(RATIO=0.04, SEVERE_RATIO=0.3),
        Validation=ValidationThresholds(HARD_STOP_DELTA=50.0),
    )
    assert mismatch_bucket_edges(thresholds) == (0.04, 0.3, 0.5, 1.0)


def test_default_edges_merge_equal_thresholds() -> None:
    assert mismatch_bucket_edges(Thresholds()) == (0.05, 0.2, 1.0)


def test_histogram_has_one_bucket_more_than_edges_and_open_top() -> None:
    buckets = histogram((0.05, 0.2, 1.0), {0: 1, 3: 2})
    assert [(b.label, b.count) for b in buckets] == [
        ("[0, 0.05)", 1),
        ("[0.05, 0.2)", 0),
        ("[0.2, 1)", 0),
        ("[1, inf)", 2),
    ]
    assert math.isinf(buckets[-1].upper)


def test_top_offenders_exclude_small_providers_and_rank_by_rate() -> None:
    providers = {
        "a": ProviderStats(invoices=20, incidents=2),
        "b": ProviderStats(invoices=40, incidents=8),
        "c": ProviderStats(invoices=19, incidents=19),
        "d": ProviderStats(invoices=20, incidents=4),
    }
    assert [(o.provider, o.incident_rate) for o in top_offenders(providers, DRIFT)] == [
        ("b", 0.2),
        ("d", 0.2),
        ("a", 0.1),
    ]


def test_drift_needs_the_minimum_sample_in_both_windows() -> None:
    assert not is_drift(19, 19, 0, 100, DRIFT)
    assert not is_drift(20, 20, 0, 19, DRIFT)
    assert is_drift(20, 20, 0, 20, DRIFT)


def test_drift_needs_the_minimum_absolute_excess() -> None:
    # baseline 10 %: 40 invoices predict 4; 9 is 5 more (fires), 8 is only 4 more.
    assert is_drift(9, 40, 10, 100, DRIFT)
    assert not is_drift(8, 40, 10, 100, DRIFT)


def test_drift_needs_the_rate_multiplier() -> None:
    # baseline 25 %: 100 invoices predict 25; 45 is 20 more but only 1.8x.
    assert not is_drift(45, 100, 25, 100, DRIFT)
    assert is_drift(50, 100, 25, 100, DRIFT)


@settings(max_examples=300)
@given(
    current=st.integers(0, 200),
    sample=st.integers(1, 200),
    baseline=st.integers(0, 500),
    baseline_sample=st.integers(1, 500),
)
def test_drift_is_monotonic_in_the_current_count(
    current: int, sample: int, baseline: int, baseline_sample: int
) -> None:
    current = min(current, sample - 1)
    baseline = min(baseline, baseline_sample)
    if is_drift(current, sample, baseline, baseline_sample, DRIFT):
        assert is_drift(current + 1, sample, baseline, baseline_sample, DRIFT)


def test_drift_alerts_cover_all_providers_and_each_provider() -> None:
    now = {"x": ProviderStats(invoices=40, incidents=10), "y": ProviderStats(invoices=40)}
    before = {"x": ProviderStats(invoices=100, incidents=5), "y": ProviderStats(invoices=100)}
    alerts = drift_alerts(now, before, DRIFT)
    assert {(a.provider, a.metric) for a in alerts} == {
        ("*", "incident_rate"),
        ("x", "incident_rate"),
    }


def test_drift_alert_thresholds_come_from_config() -> None:
    strict = dataclasses.replace(DRIFT, MIN_ABSOLUTE_DELTA=50)
    assert not is_drift(50, 100, 25, 100, strict)


def test_digest_alerts_fire_only_above_their_thresholds() -> None:
    quiet = DigestInputs(incidents=10, bug_reports=1, invoices_processed=8, jobs_exhausted=2)
    assert digest_alerts(quiet, ALERT) == ()
    loud = DigestInputs(
        incidents=10,
        bug_reports=2,
        invoices_processed=7,
        jobs_exhausted=3,
        stuck_samples=1,
        invoices_over_recompute_limit=2,
    )
    assert [a.code for a in digest_alerts(loud, ALERT)] == [
        "BUG_REPORT_RATE_HIGH",
        "EXHAUSTED_RATE_HIGH",
        "QUEUE_STUCK",
        "RECOMPUTE_LIMIT_EXCEEDED",
    ]


def test_digest_rates_without_denominators_raise_nothing() -> None:
    assert digest_alerts(DigestInputs(), ALERT) == ()
