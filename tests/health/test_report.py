"""Readiness bands and the ready/not-ready rule (seed 002 §4.2), without I/O."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.health.report import (
    CheckResult,
    CheckStatus,
    ReadinessReport,
    database_status,
    queue_status,
)
from services.runtime.config import HealthThresholds

BANDS = HealthThresholds()


@pytest.mark.parametrize(
    ("latency_ms", "status"),
    [
        (0.5, CheckStatus.OK),
        (99.9, CheckStatus.OK),
        (100.0, CheckStatus.WARNING),
        (500.0, CheckStatus.WARNING),
        (500.1, CheckStatus.ERROR),
    ],
)
def test_database_latency_bands(latency_ms: float, status: CheckStatus) -> None:
    assert database_status(latency_ms, BANDS) is status


@pytest.mark.parametrize(
    ("depth", "stuck", "status"),
    [(0, False, CheckStatus.OK), (3, False, CheckStatus.WARNING), (3, True, CheckStatus.ERROR)],
)
def test_queue_bands(depth: int, stuck: bool, status: CheckStatus) -> None:
    assert queue_status(depth, stuck) is status


def _report(**statuses: CheckStatus) -> ReadinessReport:
    return ReadinessReport(
        timestamp=datetime(2026, 1, 17, 15, 0, tzinfo=UTC),
        build_id="git:abc1234",
        config_hash="sha256:7f3a2b1c00000000",
        checks={name: CheckResult(status) for name, status in statuses.items()},
        pilot=None,
        last_activity={"last_incident_at": None},
    )


def test_warnings_keep_the_system_ready() -> None:
    report = _report(database=CheckStatus.WARNING, queue=CheckStatus.WARNING)
    assert report.ready
    assert report.http_status == 200
    assert "failing_checks" not in report.as_json()


def test_any_error_makes_it_not_ready_and_names_the_check() -> None:
    report = _report(database=CheckStatus.OK, config=CheckStatus.ERROR)
    body = report.as_json()
    assert report.http_status == 503
    assert body["status"] == "not_ready"
    assert body["failing_checks"] == ["config"]


def test_report_carries_the_contract_fields() -> None:
    body = _report(database=CheckStatus.OK).as_json()
    assert body["timestamp"] == "2026-01-17T15:00:00Z"
    assert body["build_id"] == "git:abc1234"
    assert body["config_hash"] == "sha256:7f3a2b1c00000000"
    assert body["checks"] == {"database": {"status": "ok"}}
    assert "last_activity" in body


def test_verbose_has_one_line_per_check() -> None:
    text = _report(database=CheckStatus.OK, queue=CheckStatus.ERROR).verbose_lines()
    lines = text.splitlines()
    assert lines[0].startswith("NOT READY")
    assert len(lines) == 3
