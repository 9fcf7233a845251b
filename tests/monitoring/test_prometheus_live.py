"""A real Prometheus scraping the four real services: targets, rules, dashboards, alerts.

One stack and one Prometheus per module (scrape and rule evaluation every
second); the traffic — a preflight, a contract breach through the gate's Check,
the three smoke invoices (one opens an incident, resolved with feedback), a
401 and a readiness evaluation — runs once, after every target has been
scraped, so counters have a sample from before the traffic. Everything is
asserted by polling the HTTP API until a deadline.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from ptf.gate.v1 import gate_pb2

from tests.monitoring.live_stack import (
    LiveStack,
    contract_breach,
    invoices_with_an_incident,
    isolated_config,
    live_stack,
    preflight,
    ready_evaluation,
)
from tests.monitoring.prometheus_server import (
    PrometheusApi,
    running_prometheus,
    scrape_config,
)
from tests.monitoring.promql import ALERTS_FILE, Panel, concrete, panels
from tests.support.polling import eventually

pytestmark = pytest.mark.slow

WITHIN = 25.0
ALL_PANELS = list(panels())

# Panels this module's traffic fills: (dashboard file stem, panel title).
FILLED_BY_TRAFFIC = [
    ("ptf-admin-preflight", "Verdict Trend"),
    ("ptf-admin-preflight", "Top Block Reasons"),
    ("ptf-admin-preflight", "Override Attempts"),
    ("ptf-admin-release-gate", "Allow vs Deny Rate"),
    ("ptf-admin-release-gate", "Top Deny Reasons"),
    ("ptf-admin-release-gate", "Audit Write Failures"),
    ("ptf-admin-release-gate", "Contract Breaches"),
    ("ptf-admin-system-health", "Ready"),
    ("ptf-admin-system-health", "Queue Depth"),
    ("ptf-admin-system-health", "Feedback Coverage (1h)"),
    ("ptf-admin-system-health", "Incidents (1h)"),
    ("ptf-admin-system-health", "Incidents by Severity"),
    ("ptf-admin-system-health", "S1 / OCR-suspect / Accept-rounding Rates (1h)"),
    ("ptf-admin-system-health", "p95 Latency by Stage"),
    ("ptf-admin-system-health", "5xx Rate by Service"),
    ("ptf-admin-system-health", "HTTP Errors by Service and Code"),
    ("ptf-admin-system-health", "Invoices Processed by Grade"),
    ("ptf-admin-system-health", "What Runs: build_id / config_hash"),
]


def _alert_rules() -> list[dict[str, Any]]:
    """Every rule of the committed alerts file (none while it is missing: the load test fails)."""
    if not ALERTS_FILE.exists():
        return []
    document = yaml.safe_load(ALERTS_FILE.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _panel_id(panel: Panel) -> str:
    return f"{panel.dashboard}/{panel.title}"


def _panel(dashboard: str, title: str) -> Panel:
    (found,) = [p for p in ALL_PANELS if (p.dashboard, p.title) == (dashboard, title)]
    return found


@pytest.fixture(scope="module")
async def stack(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveStack]:
    make_config = isolated_config(database_url, redis_url)
    async with live_stack(make_config, tmp_path_factory.mktemp("metrics")) as running:
        yield running


@pytest.fixture(scope="module")
async def prometheus(
    stack: LiveStack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[PrometheusApi]:
    config = scrape_config(stack.metrics_targets(), [ALERTS_FILE])
    async with running_prometheus(config, Path(tmp_path_factory.mktemp("prometheus"))) as api:
        yield api


async def _all_targets_up(api: PrometheusApi) -> list[dict[str, Any]] | None:
    targets = await api.targets()
    up = [t for t in targets if t["health"] == "up"]
    return targets if targets and len(up) == len(targets) else None


@pytest.fixture(scope="module")
async def traffic(stack: LiveStack, prometheus: PrometheusApi) -> dict[str, Any]:
    """Drive the traffic once every target has a scrape from before it."""
    await eventually(lambda: _all_targets_up(prometheus), within=WITHIN)
    async with asyncpg.create_pool(stack.services["pipeline"].config.database_url) as pg:
        return {
            "preflight": await preflight(stack),
            "breach": await contract_breach(stack),
            "invoices": await invoices_with_an_incident(stack, pg),
            "ready_status": await ready_evaluation(stack),
        }


async def test_every_service_target_is_up(stack: LiveStack, prometheus: PrometheusApi) -> None:
    targets = await eventually(lambda: _all_targets_up(prometheus), within=WITHIN)
    assert sorted(t["labels"]["job"] for t in targets) == sorted(stack.services)


async def test_the_committed_alert_rules_are_loaded(prometheus: PrometheusApi) -> None:
    groups = await prometheus.rule_groups()
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    assert {rule.get("alert") or rule.get("record") for rule in _alert_rules()} <= loaded
    assert "ReleaseGateContractBreach" in loaded


@pytest.mark.parametrize(
    "rule", _alert_rules(), ids=lambda r: str(r.get("alert") or r.get("record"))
)
async def test_alert_expression_evaluates(
    rule: dict[str, Any], prometheus: PrometheusApi, traffic: dict[str, Any]
) -> None:
    assert isinstance(await prometheus.query(rule["expr"]), list)


@pytest.mark.parametrize("panel", ALL_PANELS, ids=_panel_id)
async def test_panel_queries_evaluate(
    panel: Panel, prometheus: PrometheusApi, traffic: dict[str, Any]
) -> None:
    for expr in panel.exprs:
        assert isinstance(await prometheus.query(concrete(expr)), list)


async def test_the_breach_check_was_denied_as_a_breach(traffic: dict[str, Any]) -> None:
    breach = traffic["breach"]
    assert (breach.result.contract_breach, breach.decision) == (True, gate_pb2.DECISION_DENY)


async def _has_data(prometheus: PrometheusApi, panel: Panel) -> bool:
    for expr in panel.exprs:
        if not await prometheus.query(concrete(expr)):
            return False
    return True


@pytest.fixture(scope="module")
async def panels_with_data(
    prometheus: PrometheusApi, traffic: dict[str, Any]
) -> set[tuple[str, str]]:
    """The listed panels whose every query returned data, polled under one shared deadline
    (so a panel that stays empty costs the module one wait, not one wait per panel)."""
    filled: set[tuple[str, str]] = set()

    async def all_filled() -> bool:
        for key in FILLED_BY_TRAFFIC:
            if key not in filled and await _has_data(prometheus, _panel(*key)):
                filled.add(key)
        return len(filled) == len(FILLED_BY_TRAFFIC)

    with contextlib.suppress(AssertionError):
        await eventually(all_filled, within=WITHIN, interval=0.5)
    return filled


@pytest.mark.parametrize(("dashboard", "title"), FILLED_BY_TRAFFIC)
async def test_panel_fed_by_the_traffic_has_data(
    dashboard: str, title: str, panels_with_data: set[tuple[str, str]]
) -> None:
    assert (dashboard, title) in panels_with_data


async def test_contract_breach_alert_goes_pending_or_firing(
    prometheus: PrometheusApi, traffic: dict[str, Any]
) -> None:
    async def breach_alert() -> list[dict[str, Any]]:
        return [
            alert
            for alert in await prometheus.alerts()
            if alert["labels"].get("alertname") == "ReleaseGateContractBreach"
            and alert["state"] in {"pending", "firing"}
        ]

    assert await eventually(breach_alert, within=WITHIN, interval=0.5)
