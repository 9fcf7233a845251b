"""Structure of the committed Grafana dashboards and provisioning (seed 000 §3, seed 001 §5).

Whether each query runs, and which fill with data, is checked against a real
Prometheus in `test_prometheus_live.py`; here: the shape Grafana loads, the
panels the seeds ask for, and that every query names registry series and ties
shared families to one job.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from services.runtime import metric_registry
from tests.monitoring.promql import (
    DATASOURCE,
    PROVISIONING,
    Panel,
    dashboards,
    grouped_by_job,
    metric_names,
    panels,
    selectors,
    selects_job,
)

EXPECTED_PANELS = {
    "ptf-admin-preflight": {
        "Verdict Trend": "timeseries",
        "Top Block Reasons": "barchart",
        "Override Attempts": "piechart",
    },
    "ptf-admin-release-gate": {
        "Allow vs Deny Rate": "timeseries",
        "Top Deny Reasons": "barchart",
        "Audit Write Failures": "stat",
        "Contract Breaches": "stat",
    },
}
EXPECTED_UIDS = {
    "ptf-admin-preflight": "ptf-preflight",
    "ptf-admin-release-gate": "ptf-release-gate",
    "ptf-admin-system-health": "ptf-system-health",
}
ALL_PANELS = list(panels())


def _panel_id(panel: Panel) -> str:
    return f"{panel.dashboard}/{panel.title}"


def _panel(dashboard: str, title: str) -> Panel:
    (found,) = [p for p in ALL_PANELS if (p.dashboard, p.title) == (dashboard, title)]
    return found


def test_each_dashboard_has_its_fixed_uid() -> None:
    assert {name: board["uid"] for name, board in dashboards().items()} == EXPECTED_UIDS


@pytest.mark.parametrize("name", sorted(EXPECTED_UIDS))
def test_dashboard_is_grafana_9_json(name: str) -> None:
    board = dashboards()[name]
    assert board["schemaVersion"] >= 36
    assert board["title"]
    assert board["panels"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])


@pytest.mark.parametrize("name", sorted(EXPECTED_PANELS))
def test_seed_dashboards_have_exactly_the_seed_panels(name: str) -> None:
    found = {p["title"]: p["type"] for p in dashboards()[name]["panels"]}
    assert found == EXPECTED_PANELS[name]


def test_top_deny_reasons_is_a_top_ten() -> None:
    (expr,) = _panel("ptf-admin-release-gate", "Top Deny Reasons").exprs
    assert expr.startswith("topk(10,")
    assert "release_gate_reason_total" in expr


@pytest.mark.parametrize(
    ("title", "needle"),
    [
        ("Incidents by Severity", "by (severity)"),
        ("S1 / OCR-suspect / Accept-rounding Rates (1h)", 'action_class="VERIFY_OCR"'),
        ("S1 / OCR-suspect / Accept-rounding Rates (1h)", "ptf_pipeline_accept_rounding_total"),
        ("p95 Latency by Stage", "by (le, stage)"),
        ("p95 Latency by Stage", "ptf_pipeline_end_to_end_milliseconds_bucket"),
        ("Queue Depth", "ptf_pipeline_queue_depth"),
        ("5xx Rate by Service", 'code=~"5.."'),
        ("Feedback Coverage (1h)", "ptf_pipeline_feedback_total"),
        ("What Runs: build_id / config_hash", "build_id, config_hash"),
    ],
)
def test_system_health_panel_queries_what_it_shows(title: str, needle: str) -> None:
    exprs = _panel("ptf-admin-system-health", title).exprs
    assert any(needle in expr for expr in exprs)


@pytest.mark.parametrize("panel", ALL_PANELS, ids=_panel_id)
def test_panel_and_its_targets_use_the_fixed_datasource(panel: Panel) -> None:
    targets: list[dict[str, Any]] = panel.raw["targets"]
    assert panel.raw["datasource"] == DATASOURCE
    assert targets
    assert all(t["datasource"] == DATASOURCE for t in targets)


@pytest.mark.parametrize("panel", ALL_PANELS, ids=_panel_id)
def test_panel_queries_name_only_registry_series(panel: Panel) -> None:
    for expr in panel.exprs:
        names = metric_names(expr)
        assert names
        unknown = {n for n in names if metric_registry.family_of_series(n) is None}
        assert unknown == set(), expr


@pytest.mark.parametrize("panel", ALL_PANELS, ids=_panel_id)
def test_shared_families_are_selected_or_grouped_by_job(panel: Panel) -> None:
    for expr in panel.exprs:
        for name, matchers in selectors(expr):
            family = metric_registry.family_of_series(name)
            if family is not None and family.shared:
                assert selects_job(matchers) or grouped_by_job(expr), expr


def test_datasource_provisioning_has_the_fixed_uid() -> None:
    config = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    (source,) = config["datasources"]
    assert (source["type"], source["uid"]) == (DATASOURCE["type"], DATASOURCE["uid"])


def test_dashboard_provisioning_loads_files() -> None:
    config = yaml.safe_load((PROVISIONING / "dashboards" / "ptf-admin.yml").read_text())
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"]
