"""Run summary assembly: SPEC §4.1 rate formulas, null rates, seed documents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.telemetry.domain.summary import (
    ErrorCounts,
    Percentiles,
    QueueStats,
    RunSummary,
    SummaryCounts,
    SummaryRates,
    rate,
)
from services.telemetry.domain.window import TimeWindow

END = datetime(2026, 1, 17, 16, 0, tzinfo=UTC)
SEED_COUNTS = SummaryCounts(
    total_invoices=150,
    incident_count=23,
    s1_count=3,
    s2_count=20,
    ocr_suspect_count=5,
    resolved_count=18,
    feedback_count=12,
    hint_correct_count=9,
    accept_rounding_count=12,
)


def _summary(counts: SummaryCounts) -> RunSummary:
    return RunSummary(
        generated_at=END,
        window=TimeWindow(END - timedelta(hours=16), END),
        tenant_id="pilot",
        counts=counts,
        pipeline_total_ms=Percentiles(2100.0, 4500.0, 6200.0, 150),
        extraction_ms=Percentiles(),
        errors=ErrorCounts({400: 5, 404: 2, 500: 0}, total_requests=100),
        queue=QueueStats(0, 3, False),
    )


def test_rates_reproduce_the_seed_002_example() -> None:
    rates = SummaryRates.from_counts(SEED_COUNTS)
    assert {k: round(v, 4) for k, v in rates.as_dict().items() if v is not None} == {
        "mismatch_rate": 0.1533,
        "s1_rate": 0.1304,
        "ocr_suspect_rate": 0.2174,
        "feedback_coverage": 0.6667,
        "hint_accuracy_rate": 0.75,
    }


def test_every_rate_is_none_when_nothing_happened() -> None:
    assert set(SummaryRates.from_counts(SummaryCounts()).as_dict().values()) == {None}


def test_feedback_coverage_is_none_without_resolved_incidents() -> None:
    counts = SummaryCounts(total_invoices=10, incident_count=2, feedback_count=1)
    assert SummaryRates.from_counts(counts).feedback_coverage is None


@settings(max_examples=300)
@given(numerator=st.integers(0, 10**9), denominator=st.integers(-5, 10**9))
def test_rate_never_divides_by_zero(numerator: int, denominator: int) -> None:
    value = rate(numerator, denominator)
    assert (value is None) == (denominator <= 0)


def test_json_document_has_the_seed_sections_and_string_error_codes() -> None:
    document = _summary(SEED_COUNTS).to_json()
    assert list(document) == [
        "generated_at",
        "period",
        "counts",
        "rates",
        "latency",
        "errors",
        "queue",
    ]
    assert document["period"] == {"start": "2026-01-17T00:00:00Z", "end": "2026-01-17T16:00:00Z"}
    assert document["errors"] == {
        "by_code": {"400": 5, "404": 2, "500": 0},
        "total_4xx": 7,
        "total_5xx": 0,
    }
    assert document["latency"]["extraction_ms"] == {"p50": None, "p95": None, "p99": None}


def test_log_record_has_the_seed_003_shape() -> None:
    record = _summary(SEED_COUNTS).to_log_record(build_id="git:abc1234", config_hash="sha256:7f3a")
    assert record["event"] == "run_summary"
    assert record["counts"]["accept_rounding_count"] == 12
    assert record["rates"] == {
        "mismatch_rate": 0.1533,
        "s1_rate": 0.1304,
        "ocr_suspect_rate": 0.2174,
        "feedback_coverage": 0.6667,
    }
    assert record["latency"] == {"p95_pipeline_total_ms": 4500.0}
    assert record["queue"] == {"depth": 0, "max_depth": 3}
    assert record["errors"] == {"4xx": 7, "5xx": 0}
    assert (record["build_id"], record["config_hash"], record["tenant_id"]) == (
        "git:abc1234",
        "sha256:7f3a",
        "pilot",
    )
