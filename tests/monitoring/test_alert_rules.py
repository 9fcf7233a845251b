"""The committed alert rules: valid for promtool, unit-tested, documented, and in step
with the metric registry and the thresholds config.

promtool is required (Debian package `prometheus`, installed by `make test`): without
it these tests fail instead of skipping, so an unchecked rules file cannot pass.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from services.runtime import metric_registry
from services.runtime.config.thresholds import Thresholds
from tests.monitoring.promql import (
    ALERTS_FILE,
    PROMETHEUS_DIR,
    REPO,
    grouped_by_job,
    metric_names,
    selectors,
    selects_job,
)

RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
RUNBOOK = REPO / "monitoring" / "runbooks" / "ptf-admin-runbook.md"
REQUIRED_ANNOTATIONS = ("summary", "description", "runbook_url")

T = Thresholds()
G = T.Gate
LATENCY_LIMIT = G.P95_LATENCY_MULTIPLIER * G.P95_LATENCY_BASELINE_MS

# The comparison constants of each rule that has a config counterpart, in any order:
# the threshold and the minimum sample the gate applies to the same signal.
CONFIG_THRESHOLDS: dict[str, list[float]] = {
    "Ptf5xxRateRollback": [G.ERROR_5XX_RATE_MAX, T.Drift.MIN_SAMPLE],
    "Ptf5xxRateHigh": [G.ERROR_5XX_RATE_MAX, T.Drift.MIN_SAMPLE],
    "PtfS1RateRollback": [G.S1_RATE_MAX, G.S1_MIN_INCIDENTS],
    "PtfS1RateHigh": [G.S1_RATE_MAX, G.S1_MIN_INCIDENTS],
    "PtfS2RateHigh": [G.S2_RATE_MAX, T.Drift.MIN_SAMPLE],
    "PtfOcrSuspectRateHigh": [G.OCR_SUSPECT_RATE_MAX, T.Drift.MIN_SAMPLE],
    "PtfAcceptRoundingRateOutOfBand": [
        G.ACCEPT_ROUNDING_RATE_MIN,
        G.ACCEPT_ROUNDING_RATE_MAX,
        G.MIN_INVOICES,
    ],
    "PtfFeedbackCoverageLow": [G.FEEDBACK_COVERAGE_MIN, T.Drift.MIN_SAMPLE],
    "PtfLatencyP95Rollback": [LATENCY_LIMIT, G.LATENCY_MIN_SAMPLES],
    "PtfLatencyP95High": [LATENCY_LIMIT, G.LATENCY_MIN_SAMPLES],
    "PtfQueueDepthHigh": [G.MAX_QUEUE_DEPTH],
}

# Rollback triggers that fire when the gate's HOLD escalates to BLOCK: same duration.
CONFIG_DURATIONS_MINUTES: dict[str, int] = {
    "PtfS1RateRollback": G.S1_ESCALATE_MINUTES,
    "PtfLatencyP95Rollback": G.LATENCY_ESCALATE_MINUTES,
}

_COMPARISON = re.compile(r"(?:>=|<=|==|!=|>|<)\s*([0-9.]+(?:\s*\*\s*[0-9.]+)*)")
_DURATION = re.compile(r"(\d+)([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS_FILE.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _groups() -> dict[str, list[str]]:
    document = yaml.safe_load(ALERTS_FILE.read_text())
    return {g["name"]: [r["alert"] for r in g["rules"]] for g in document["groups"]}


ALERTS = {rule["alert"]: rule for rule in _rules()}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(
            "promtool is not installed (Debian package prometheus; `make test` installs it)"
        )
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=60, check=False
    )


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _runbook_anchors() -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return {_slug(h) for h in headings}


def _unit_test_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for path in RULE_TESTS:
        for group in yaml.safe_load(path.read_text())["tests"]:
            cases.extend(group.get("alert_rule_test", []))
    return cases


def _minutes(duration: str) -> float:
    return sum(int(n) * _SECONDS[u] for n, u in _DURATION.findall(duration)) / 60


def _comparison_constants(expr: str) -> list[float]:
    values = []
    for literal in _COMPARISON.findall(re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)):
        product = 1.0
        for factor in literal.split("*"):
            product *= float(factor)
        values.append(product)
    return values


def test_promtool_check_rules_accepts_the_rules_file() -> None:
    result = _promtool("check", "rules", str(ALERTS_FILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    """One promtool per test file, run side by side (each takes about a second)."""
    assert RULE_TESTS, "no promtool unit tests in monitoring/prometheus/tests"
    promtool = _promtool("--version").args[0]
    runs = [
        subprocess.Popen(
            [promtool, "test", "rules", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for path in RULE_TESTS
    ]
    outputs = [(run.communicate(timeout=60)[0], run.returncode) for run in runs]
    failures = [output for output, code in outputs if code != 0]
    assert failures == []


def test_release_gate_group_holds_the_three_gate_alerts() -> None:
    assert _groups()["ptf-admin-release-gate"] == [
        "ReleaseGateContractBreach",
        "ReleaseGateAuditWriteFailure",
        "ReleaseGateDenySpike",
    ]


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_rule_has_severity_and_annotations(alert: str) -> None:
    rule = ALERTS[alert]
    assert rule.get("labels", {}).get("severity") in {"critical", "warning"}
    missing = [a for a in REQUIRED_ANNOTATIONS if not rule.get("annotations", {}).get(a)]
    assert missing == []


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_runbook_url_anchor_is_a_runbook_heading(alert: str) -> None:
    url = ALERTS[alert]["annotations"]["runbook_url"]
    page, _, anchor = url.partition("#")
    assert page.endswith("monitoring/runbooks/ptf-admin-runbook.md")
    assert anchor in _runbook_anchors()


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_every_metric_in_the_expression_is_a_registry_series(alert: str) -> None:
    names = metric_names(ALERTS[alert]["expr"])
    assert names, "no metric found in the expression"
    unknown = sorted(n for n in names if metric_registry.family_of_series(n) is None)
    assert unknown == []


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_shared_families_are_selected_or_aggregated_by_job(alert: str) -> None:
    expr = ALERTS[alert]["expr"]
    loose = [
        name
        for name, braces in selectors(expr)
        if (family := metric_registry.family_of_series(name)) is not None
        and family.shared
        and not (selects_job(braces) or grouped_by_job(expr))
    ]
    assert loose == []


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_alert_has_a_unit_test_that_fires_it(alert: str) -> None:
    assert any(c["alertname"] == alert and c.get("exp_alerts") for c in _unit_test_cases())


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_alert_has_a_unit_test_that_expects_no_alert(alert: str) -> None:
    assert any(c["alertname"] == alert and not c.get("exp_alerts") for c in _unit_test_cases())


def test_every_rule_with_a_config_threshold_is_compared() -> None:
    assert set(CONFIG_THRESHOLDS) <= set(ALERTS)


@pytest.mark.parametrize("alert", sorted(CONFIG_THRESHOLDS))
def test_rule_thresholds_equal_the_config(alert: str) -> None:
    found = sorted(_comparison_constants(ALERTS[alert]["expr"]))
    assert found == pytest.approx(sorted(float(v) for v in CONFIG_THRESHOLDS[alert]))


@pytest.mark.parametrize("alert", sorted(CONFIG_DURATIONS_MINUTES))
def test_escalating_trigger_waits_as_long_as_the_gate(alert: str) -> None:
    assert _minutes(ALERTS[alert]["for"]) == CONFIG_DURATIONS_MINUTES[alert]


def test_github_slug_drops_punctuation_and_joins_words() -> None:
    assert (
        _slug("Scenario 4: Queue backlog (stuck worker)") == "scenario-4-queue-backlog-stuck-worker"
    )
