"""Preflight and gate metric stores: counters, fixed labels, persistence and exports."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from ptf.gate.v1 import gate_pb2

from services.runtime.metric_stores import (
    BREACH_KINDS,
    OVERRIDE_RESULTS,
    REASON_LABELS,
    VERDICT_LABELS,
    GateMetricExporter,
    GateMetricStore,
    LoadStatus,
    MetricExporter,
    MetricStore,
    PreflightMetric,
    derive_override_result,
)
from services.runtime.metric_stores.atomic import FileOps

T0 = datetime(2026, 1, 17, 16, 0, tzinfo=UTC)


def _metric(verdict: str = "release_hold", **changes: object) -> PreflightMetric:
    fields: dict[str, object] = {
        "timestamp": T0,
        "verdict": verdict,
        "exit_code": VERDICT_LABELS.index(verdict) if verdict in VERDICT_LABELS else 2,
        "reasons": ("S1_RATE_HIGH",),
        "override_applied": False,
        "contract_breach": False,
        "override_result": "none",
        "duration_ms": 12.5,
        "spec_hash": "sha256:abc",
    }
    fields.update(changes)
    return PreflightMetric(**fields)  # type: ignore[arg-type]


def _failing_replace() -> FileOps:
    def replace(_: str, __: Path) -> None:
        raise OSError(28, "No space left on device")

    return FileOps(replace=replace)


def test_reason_labels_are_the_gate_proto_enum_without_prefix_or_unspecified() -> None:
    expected = [
        value.name.removeprefix("BLOCK_REASON_CODE_")
        for value in gate_pb2.BlockReasonCode.DESCRIPTOR.values
        if value.number != 0
    ]
    assert list(REASON_LABELS) == expected
    assert "S1_RATE_HIGH" in REASON_LABELS
    assert len(REASON_LABELS) == 17


def test_breach_kinds_are_no_override_and_non_overridable() -> None:
    assert BREACH_KINDS == ("NO_OVERRIDE", "NON_OVERRIDABLE")


def test_preflight_metric_is_frozen() -> None:
    metric = _metric()
    with pytest.raises(AttributeError):
        metric.verdict = "release_ok"  # type: ignore[misc]


def test_preflight_metric_rejects_applied_result_without_override_applied() -> None:
    with pytest.raises(ValueError, match="override_applied"):
        _metric(override_result="applied")


def test_preflight_metric_rejects_unknown_verdict() -> None:
    with pytest.raises(ValueError, match="verdict"):
        _metric(verdict="maybe")


@pytest.mark.parametrize(
    ("attempted", "applied", "breach", "verdict", "expected"),
    [
        (True, True, False, "RELEASE_HOLD", "applied"),
        (True, False, False, "RELEASE_HOLD", "rejected"),
        (True, False, True, "RELEASE_BLOCK", "breach"),
        (False, False, True, "RELEASE_BLOCK", "breach"),
        (True, False, False, "RELEASE_OK", "ignored"),
        (False, False, False, "RELEASE_BLOCK", "none"),
    ],
)
def test_override_result_derivation(
    attempted: bool, applied: bool, breach: bool, verdict: str, expected: str
) -> None:
    result = derive_override_result(
        override_attempted=attempted,
        override_applied=applied,
        contract_breach=breach,
        verdict_before_override=verdict,
    )
    assert result == expected


def test_from_preflight_output_reads_gatectl_json() -> None:
    output = {
        "verdict": "RELEASE_BLOCK",
        "exit_code": 2,
        "reasons": [{"code": "BLOCK_REASON_CODE_QUEUE_STUCK"}, {"code": "NOT_A_REASON"}],
        "override_applied": False,
        "contract_breach": True,
        "override_result": "OVERRIDE_RESULT_BREACH",
        "duration_ms": 41.0,
        "spec_hash": "sha256:1",
        "evaluated_at": "2026-01-17T16:00:00+00:00",
    }
    metric = MetricExporter.from_preflight_output(output)
    assert metric == PreflightMetric(
        timestamp=T0,
        verdict="release_block",
        exit_code=2,
        reasons=("QUEUE_STUCK",),
        override_applied=False,
        contract_breach=True,
        override_result="breach",
        duration_ms=41.0,
        spec_hash="sha256:1",
    )


def test_from_preflight_output_without_verdict_is_rejected() -> None:
    with pytest.raises(ValueError, match="verdict"):
        MetricExporter.from_preflight_output({"exit_code": 0})


def test_fresh_store_reports_every_label_at_zero() -> None:
    store = MetricStore()
    assert store.verdict_counts() == dict.fromkeys(VERDICT_LABELS, 0)
    assert store.reason_counts() == dict.fromkeys(REASON_LABELS, 0)
    assert store.override_counts() == dict.fromkeys(OVERRIDE_RESULTS, 0)
    assert len(store) == 0


def test_add_counts_verdict_each_distinct_known_reason_and_override_result() -> None:
    store = MetricStore()
    store.add(_metric(reasons=("S1_RATE_HIGH", "S1_RATE_HIGH", "UNKNOWN_THING")))
    assert store.verdict_counts()["release_hold"] == 1
    assert store.reason_counts()["S1_RATE_HIGH"] == 1
    assert "UNKNOWN_THING" not in store.reason_counts()
    assert store.override_counts()["none"] == 1


def test_query_filters_by_verdict_and_since() -> None:
    store = MetricStore()
    early = _metric("release_ok", timestamp=T0 - timedelta(hours=2), reasons=())
    late = _metric("release_block", timestamp=T0, exit_code=2)
    store.add(early)
    store.add(late)
    assert store.query(verdict="RELEASE_OK") == [early]
    assert store.query(since=T0 - timedelta(hours=1)) == [late]


def test_recent_runs_are_bounded_but_counters_keep_counting() -> None:
    store = MetricStore(max_recent=3)
    for _ in range(5):
        store.add(_metric())
    assert len(store) == 3
    assert store.verdict_counts()["release_hold"] == 5


def test_concurrent_adds_from_threads_lose_no_count() -> None:
    store = MetricStore()
    threads = [
        threading.Thread(target=lambda: [store.add(_metric()) for _ in range(250)])
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.verdict_counts()["release_hold"] == 2000


def test_gate_store_counts_allow_and_deny_decisions() -> None:
    store = GateMetricStore()
    store.record_decision(True, [])
    store.record_decision(False, ["S1_RATE_HIGH", "QUEUE_STUCK"])
    assert store.decision_counts() == {"ALLOW": 1, "DENY": 1}
    assert store.reason_counts()["QUEUE_STUCK"] == 1


def test_gate_store_skips_unknown_reasons_without_new_labels() -> None:
    store = GateMetricStore()
    store.record_decision(False, ["S1_RATE_HIGH", "s1_rate_high", "DROP TABLE", ""])
    assert set(store.reason_counts()) == set(REASON_LABELS)
    assert sum(store.reason_counts().values()) == 1


def test_gate_store_record_breach_defaults_to_no_override() -> None:
    store = GateMetricStore()
    store.record_breach()
    store.record_breach("NON_OVERRIDABLE")
    store.record_breach("SOMETHING_ELSE")
    assert store.breach_counts() == {"NO_OVERRIDE": 1, "NON_OVERRIDABLE": 1}


def test_gate_store_counts_audit_and_metric_write_failures() -> None:
    store = GateMetricStore()
    store.record_audit_write_failure()
    store.record_metric_write_failure()
    store.record_metric_write_failure()
    assert (store.audit_write_failures(), store.metric_write_failures()) == (1, 2)


def test_save_then_load_restores_the_gate_store(tmp_path: Path) -> None:
    store = GateMetricStore()
    store.record_decision(False, ["TESTS_FAILED"])
    assert store.save_to_dir(tmp_path)
    loaded = GateMetricStore.load_from_dir(tmp_path)
    assert loaded.load_status is LoadStatus.LOADED
    assert loaded.to_dict() == store.to_dict()


def test_save_then_load_restores_the_preflight_store_with_recent_runs(tmp_path: Path) -> None:
    store = MetricStore()
    store.add(_metric())
    store.save_to_dir(tmp_path)
    loaded = MetricStore.load_from_dir(tmp_path)
    assert loaded.query() == store.query()
    assert loaded.to_dict() == store.to_dict()


def test_each_save_increments_store_generation(tmp_path: Path) -> None:
    store = GateMetricStore()
    store.save_to_dir(tmp_path)
    store.save_to_dir(tmp_path)
    assert store.store_generation() == 2
    assert GateMetricStore.load_from_dir(tmp_path).store_generation() == 2


def test_failed_save_keeps_previous_file_and_counts_a_write_failure(tmp_path: Path) -> None:
    """Fault: the rename of the new file fails (disk full). The previous file must stay intact,
    the generation must not advance and metric_write_failures must count the failure."""
    store = GateMetricStore()
    store.record_decision(True)
    store.save_to_dir(tmp_path)
    before = (tmp_path / GateMetricStore.FILE_NAME).read_bytes()
    store.record_decision(False)
    assert store.save_to_dir(tmp_path, ops=_failing_replace()) is False
    assert (tmp_path / GateMetricStore.FILE_NAME).read_bytes() == before
    assert store.store_generation() == 1
    assert store.metric_write_failures() == 1
    assert [p.name for p in tmp_path.iterdir()] == [GateMetricStore.FILE_NAME]


def test_load_of_missing_file_gives_fresh_store(tmp_path: Path) -> None:
    store = MetricStore.load_from_dir(tmp_path / "nowhere")
    assert store.load_status is LoadStatus.MISSING
    assert store.load_failures() == 0
    assert len(store) == 0


def test_load_of_corrupt_file_gives_fresh_store_counts_and_keeps_it_aside(tmp_path: Path) -> None:
    """Fault: the store file holds garbage. Loading must not raise: a fresh store with
    load_failures=1, and the bad file moved aside for inspection."""
    (tmp_path / GateMetricStore.FILE_NAME).write_text('{"decision_counts": {"ALLOW": 3')
    store = GateMetricStore.load_from_dir(tmp_path)
    assert store.load_status is LoadStatus.CORRUPT
    assert store.load_failures() == 1
    assert store.decision_counts() == {"ALLOW": 0, "DENY": 0}
    assert (tmp_path / f"{GateMetricStore.FILE_NAME}.corrupt").exists()


def test_load_of_negative_counter_is_treated_as_corrupt(tmp_path: Path) -> None:
    """Fault: a counter in the file is negative (hand-edited or damaged). The document must be
    treated as corrupt (fresh store), never loaded with an impossible count."""
    (tmp_path / GateMetricStore.FILE_NAME).write_text('{"decision_counts": {"ALLOW": -1}}')
    assert GateMetricStore.load_from_dir(tmp_path).load_status is LoadStatus.CORRUPT


def test_legacy_file_without_start_timestamp_is_backfilled_from_mtime(tmp_path: Path) -> None:
    path = tmp_path / GateMetricStore.FILE_NAME
    path.write_text(json.dumps({"decision_counts": {"ALLOW": 2, "DENY": 1}, "store_generation": 4}))
    store = GateMetricStore.load_from_dir(tmp_path)
    assert store.load_status is LoadStatus.LEGACY
    assert store.store_start_timestamp() == path.stat().st_mtime
    assert store.decision_counts() == {"ALLOW": 2, "DENY": 1}
    assert store.store_generation() == 4


def test_unknown_fields_and_labels_in_file_are_ignored(tmp_path: Path) -> None:
    document = GateMetricStore().to_dict()
    document["future_field"] = {"x": 1}
    document["reason_counts"]["REMOVED_REASON"] = 7
    (tmp_path / GateMetricStore.FILE_NAME).write_text(json.dumps(document))
    store = GateMetricStore.load_from_dir(tmp_path)
    assert store.load_status is LoadStatus.LOADED
    assert set(store.reason_counts()) == set(REASON_LABELS)


def test_export_json_sorts_keys() -> None:
    text = GateMetricExporter.export_json(GateMetricStore())
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2)


def test_gate_prometheus_export_has_seed_names_with_help_and_type() -> None:
    store = GateMetricStore()
    store.record_decision(False, ["QUEUE_STUCK"])
    text = GateMetricExporter.export_prometheus(store)
    for name in (
        "release_gate_decision_total",
        "release_gate_reason_total",
        "release_gate_contract_breach_total",
        "release_gate_audit_write_failures_total",
        "release_gate_metric_write_failures_total",
    ):
        assert f"# HELP {name} " in text
        assert f"# TYPE {name} counter" in text
    assert 'release_gate_decision_total{decision="DENY"} 1' in text
    assert 'release_gate_reason_total{reason="QUEUE_STUCK"} 1' in text


def test_preflight_prometheus_export_parses_with_every_label() -> None:
    store = MetricStore()
    store.add(_metric())
    families = {
        f.name: f for f in text_string_to_metric_families(MetricExporter.export_prometheus(store))
    }
    verdicts = {s.labels["verdict"]: s.value for s in families["release_preflight_verdict"].samples}
    assert verdicts == {"release_ok": 0, "release_hold": 1, "release_block": 0}
    assert len(families["release_preflight_reason"].samples) == len(REASON_LABELS)
