"""Config module (SPEC §2): invariants I1–I8, overrides, hash, build id, ENV whitelist."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from services.runtime.config import (
    ConfigError,
    ConfigValidationError,
    PipelineSettings,
    Thresholds,
    build_id_from_env,
    load_config,
    load_thresholds,
    parse_boolean,
    validate_config,
)
from services.runtime.config.operations import LiveSettings
from services.runtime.config.validation import find_violations


def _with(group: str, **values: float) -> Thresholds:
    defaults = Thresholds()
    return replace(defaults, **{group: replace(getattr(defaults, group), **values)})


def test_default_thresholds_are_valid() -> None:
    validate_config(Thresholds())


def test_default_values_match_seed_002() -> None:
    t = Thresholds()
    assert (t.Mismatch.RATIO, t.Mismatch.ABSOLUTE) == (0.05, 50.0)
    assert (t.Mismatch.SEVERE_RATIO, t.Mismatch.SEVERE_ABSOLUTE) == (0.20, 500.0)
    assert (t.Mismatch.ROUNDING_DELTA, t.Mismatch.ROUNDING_RATIO) == (10.0, 0.005)
    assert (t.Drift.MIN_SAMPLE, t.Drift.MIN_ABSOLUTE_DELTA) == (20, 5)
    assert (t.Drift.RATE_MULTIPLIER, t.Drift.TOP_OFFENDERS_MIN_INVOICES) == (2.0, 20)
    assert (t.Alert.BUG_REPORT_RATE, t.Alert.EXHAUSTED_RATE) == (0.10, 0.20)
    assert (t.Alert.STUCK_COUNT, t.Alert.RECOMPUTE_LIMIT) == (1, 1)
    assert t.Recovery.STUCK_MINUTES == 10
    assert t.Validation.LOW_CONFIDENCE == 0.6
    assert (t.Validation.MIN_UNIT_PRICE, t.Validation.MAX_UNIT_PRICE) == (0.5, 15.0)
    assert (t.Validation.MIN_DIST_PRICE, t.Validation.MAX_DIST_PRICE) == (0.0, 5.0)
    assert t.Validation.LINE_CONSISTENCY_TOLERANCE == 2.0
    assert t.Validation.HARD_STOP_DELTA == 20.0
    assert t.Validation.ENERGY_CROSSCHECK_TOLERANCE == 5.0
    assert (t.Pilot.MAX_INVOICES_PER_HOUR, t.Pilot.MAX_INCIDENTS_PER_HOUR) == (50, 20)
    assert t.Pilot.WINDOW_SECONDS == 3600


@pytest.mark.parametrize(
    ("invariant", "thresholds"),
    [
        ("I1", _with("Mismatch", SEVERE_RATIO=0.04)),
        ("I2", _with("Mismatch", SEVERE_ABSOLUTE=40.0)),
        ("I3", _with("Mismatch", ROUNDING_RATIO=0.06)),
        ("I4", _with("Validation", MIN_UNIT_PRICE=16.0)),
        ("I5", _with("Validation", MIN_DIST_PRICE=5.0)),
        ("I6", _with("Validation", HARD_STOP_DELTA=19.0)),
        ("I7", _with("Mismatch", ROUNDING_DELTA=0.0)),
        ("I8", _with("Validation", LOW_CONFIDENCE=1.5)),
    ],
)
def test_each_invariant_violated_alone_yields_exactly_its_error(
    invariant: str, thresholds: Thresholds
) -> None:
    violations = find_violations(thresholds)
    assert [v.invariant for v in violations] == [invariant]


def test_validation_error_reports_every_violation_at_once() -> None:
    broken = replace(
        Thresholds(),
        Mismatch=replace(Thresholds().Mismatch, SEVERE_RATIO=0.01, ROUNDING_DELTA=-1.0),
        Validation=replace(Thresholds().Validation, LOW_CONFIDENCE=2.0),
    )
    with pytest.raises(ConfigValidationError) as caught:
        validate_config(broken)
    assert [v.invariant for v in caught.value.violations] == ["I1", "I7", "I8"]
    assert str(caught.value).startswith("Config validation failed with 3 error(s)")


def test_violation_message_shows_the_offending_values() -> None:
    (violation,) = find_violations(_with("Mismatch", SEVERE_RATIO=0.04))
    assert "SEVERE_RATIO (0.04)" in violation.message
    assert "RATIO (0.05)" in violation.message


def test_thresholds_file_overrides_defaults(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text("Mismatch:\n  RATIO: 0.04\nPilot:\n  MAX_INVOICES_PER_HOUR: 10\n")
    thresholds = load_thresholds({"PTF_THRESHOLDS_FILE": str(path)})
    assert thresholds.Mismatch.RATIO == 0.04
    assert thresholds.Pilot.MAX_INVOICES_PER_HOUR == 10


def test_json_thresholds_file_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({"Drift": {"MIN_SAMPLE": 30}}))
    assert load_thresholds({"PTF_THRESHOLDS_FILE": str(path)}).Drift.MIN_SAMPLE == 30


def test_unknown_keys_in_file_are_rejected_all_at_once(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text("Mismatch:\n  RATO: 0.04\nMismatchh:\n  RATIO: 0.1\n")
    with pytest.raises(ConfigError) as caught:
        load_thresholds({"PTF_THRESHOLDS_FILE": str(path)})
    assert len(caught.value.problems) == 2
    assert "unknown threshold Mismatch.RATO" in caught.value.problems[0]
    assert "unknown threshold group 'Mismatchh'" in caught.value.problems[1]


@pytest.mark.parametrize("bad", ["nan", "inf", "true", "abc", "[1]"])
def test_non_numeric_threshold_values_are_rejected(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text(f"Mismatch:\n  RATIO: {bad}\n")
    with pytest.raises(ConfigError, match=r"Mismatch\.RATIO"):
        load_thresholds({"PTF_THRESHOLDS_FILE": str(path)})


def test_fractional_value_for_integer_threshold_is_rejected() -> None:
    with pytest.raises(ConfigError, match="whole number"):
        load_thresholds({"PTF_THRESHOLD__DRIFT__MIN_SAMPLE": "2.5"})


def test_env_override_wins_over_file(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text("Mismatch:\n  RATIO: 0.04\n")
    thresholds = load_thresholds(
        {"PTF_THRESHOLDS_FILE": str(path), "PTF_THRESHOLD__MISMATCH__RATIO": "0.03"}
    )
    assert thresholds.Mismatch.RATIO == 0.03


def test_unknown_env_threshold_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"unknown threshold Mismatch\.NOPE"):
        load_thresholds({"PTF_THRESHOLD__MISMATCH__NOPE": "1"})


def test_unreadable_thresholds_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_thresholds({"PTF_THRESHOLDS_FILE": str(tmp_path / "missing.yaml")})


@pytest.mark.parametrize("env", ["development", "staging", "production"])
def test_whitelisted_environments_are_accepted(env: str) -> None:
    assert load_config("gate", {"ENV": env, "BUILD_ID": "b"}).env == env


def test_environment_outside_whitelist_is_refused() -> None:
    with pytest.raises(ConfigError, match="ENV: 'prod'"):
        load_config("gate", {"ENV": "prod"})


def test_config_hash_has_the_documented_shape() -> None:
    digest = load_config("gate", {"BUILD_ID": "b"}).config_hash
    assert digest.startswith("sha256:")
    assert len(digest) == len("sha256:") + 16


def test_config_hash_is_stable_across_processes() -> None:
    script = (
        "from services.runtime.config import load_config;"
        "print(load_config('gate', {'BUILD_ID': 'x'}).config_hash)"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    }
    assert runs == {load_config("gate", {"BUILD_ID": "x"}).config_hash}


def test_config_hash_changes_when_a_threshold_changes() -> None:
    base = load_config("gate", {"BUILD_ID": "b"}).config_hash
    changed = load_config("gate", {"BUILD_ID": "b", "PTF_THRESHOLD__MISMATCH__RATIO": "0.06"})
    assert changed.config_hash != base


def test_config_hash_ignores_ports_urls_and_secrets() -> None:
    a = load_config("gate", {"BUILD_ID": "b"})
    b = load_config(
        "telemetry",
        {
            "BUILD_ID": "c",
            "PTF_GRPC_PORT": "1",
            "DATABASE_URL": "postgresql://x",
            "OPENAI_API_KEY": "s",
        },
    )
    assert a.config_hash == b.config_hash


def test_build_id_prefers_the_environment() -> None:
    assert build_id_from_env({"BUILD_ID": "release-7"}) == "release-7"


def test_build_id_falls_back_to_git_short_sha() -> None:
    assert build_id_from_env({}).startswith("git:")


def test_secrets_are_not_in_the_config_repr() -> None:
    config = load_config(
        "gate", {"BUILD_ID": "b", "OPENAI_API_KEY": "sk-secret", "PTF_DEV_ADMIN_KEY": "adm-secret"}
    )
    assert "sk-secret" not in repr(config)
    assert "adm-secret" not in repr(config)


def test_pipeline_settings_default_when_the_environment_sets_none() -> None:
    assert load_config("pipeline", {"BUILD_ID": "b"}).pipeline == PipelineSettings()


def test_pipeline_settings_are_read_with_the_rest_of_the_config() -> None:
    config = load_config(
        "pipeline",
        {
            "BUILD_ID": "b",
            "PTF_QUEUE_MAX_ATTEMPTS": "5",
            "PTF_QUEUE_VISIBILITY_TIMEOUT_SECONDS": "45",
            "PTF_PIPELINE_SYNC_TIMEOUT_SECONDS": "12.5",
            "PTF_PIPELINE_INPROCESS_WORKERS": "0",
            "PTF_PIPELINE_RELAY": "off",
        },
    )
    settings = config.pipeline
    assert (settings.queue.max_attempts, settings.queue.visibility_timeout_seconds) == (5, 45.0)
    assert settings.intake.sync_timeout_seconds == 12.5
    assert (settings.inprocess_workers, settings.run_relay) == (0, False)


def test_the_worker_batch_size_is_read_from_the_environment() -> None:
    config = load_config("pipeline", {"BUILD_ID": "b", "PTF_QUEUE_WORKER_BATCH_SIZE": "16"})
    assert config.pipeline.queue.worker_batch_size == 16


def test_a_worker_batch_size_below_one_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"queue worker_batch_size \(0\) must be >= 1"):
        load_config("pipeline", {"BUILD_ID": "b", "PTF_QUEUE_WORKER_BATCH_SIZE": "0"})


def test_an_unreadable_pipeline_setting_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="PTF_QUEUE_MAX_ATTEMPTS: 'three' is not a valid int"):
        load_config("pipeline", {"PTF_QUEUE_MAX_ATTEMPTS": "three"})


def test_pipeline_settings_that_contradict_each_other_are_a_config_error() -> None:
    """Fault: an extractor timeout longer than the queue's lease. Must: refuse to start, since a
    slow extraction would be reclaimed by another worker while it still runs."""
    with pytest.raises(ConfigError, match="request_timeout_seconds must be <"):
        load_config("pipeline", {"PTF_PIPELINE_EXTRACTOR_TIMEOUT_SECONDS": "30"})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("Yes", True),
        (" on ", True),
        ("0", False),
        ("FALSE", False),
        ("no", False),
        ("off", False),
    ],
)
def test_every_boolean_setting_accepts_the_same_words(raw: str, expected: bool) -> None:
    config = load_config(
        "pipeline", {"PILOT_ENABLED": raw, "GATE_AUDIT_REQUIRED": raw, "PTF_PIPELINE_RELAY": raw}
    )
    assert (config.pilot_enabled, config.gate_audit_required) == (expected, expected)
    assert config.pipeline.run_relay is expected


def test_parse_boolean_refuses_other_words() -> None:
    with pytest.raises(ValueError, match="'maybe' is not a boolean"):
        parse_boolean("maybe")


def test_live_settings_are_read_from_the_environment() -> None:
    config = load_config(
        "pipeline",
        {
            "BUILD_ID": "b",
            "PTF_LIVE_SUBSCRIBER_BUFFER": "50",
            "PTF_LIVE_RETAINED_PER_CHANNEL": "300",
            "PTF_LIVE_HEARTBEAT_SECONDS": "5",
            "PTF_LIVE_STALE_AFTER_SECONDS": "30",
            "PTF_LIVE_DEAD_AFTER_SECONDS": "90",
        },
    )
    live = config.live
    assert (live.subscriber_buffer, live.retained_per_channel) == (50, 300)
    assert (live.heartbeat_seconds, live.stale_after_seconds, live.dead_after_seconds) == (
        5.0,
        30.0,
        90.0,
    )


def test_live_settings_default_when_the_environment_sets_none() -> None:
    assert load_config("pipeline", {"BUILD_ID": "b"}).live == LiveSettings()


def test_an_unreadable_live_setting_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="PTF_LIVE_SUBSCRIBER_BUFFER: 'many' is not a valid int"):
        load_config("pipeline", {"PTF_LIVE_SUBSCRIBER_BUFFER": "many"})


def test_live_staleness_thresholds_out_of_order_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="0 < stale_after < dead_after"):
        load_config(
            "pipeline",
            {"PTF_LIVE_STALE_AFTER_SECONDS": "120", "PTF_LIVE_DEAD_AFTER_SECONDS": "60"},
        )
