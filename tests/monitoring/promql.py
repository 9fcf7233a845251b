"""Dashboards and PromQL expressions as the monitoring tests read them.

A small lexical reading of PromQL (no parser is at hand offline): enough to
list the metric names an expression selects and whether a selector is tied to
one `job`, for the registry checks. Whether an expression is valid PromQL is
decided by a real Prometheus in `test_prometheus_live.py`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "monitoring" / "grafana" / "dashboards"
PROVISIONING = REPO / "monitoring" / "grafana" / "provisioning"
PROMETHEUS_DIR = REPO / "monitoring" / "prometheus"
ALERTS_FILE = PROMETHEUS_DIR / "ptf-admin-alerts.yml"
DATASOURCE = {"type": "prometheus", "uid": "ptf-prometheus"}

# Grafana's built-in interval variables, replaced by concrete windows when a
# query runs against Prometheus directly.
GRAFANA_WINDOWS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}

_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
    | {"and", "or", "unless", "inf", "nan"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACES = re.compile(r"\{(?:[^}\"]|\"(?:[^\"\\\\]|\\\\.)*\")*\}")
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[0-9]+\})?")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


@dataclass(frozen=True)
class Panel:
    dashboard: str
    title: str
    type: str
    raw: dict[str, Any]

    @property
    def exprs(self) -> list[str]:
        return [str(t["expr"]) for t in self.raw.get("targets", [])]


def dashboards() -> dict[str, dict[str, Any]]:
    """Every committed dashboard by file stem."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels() -> Iterator[Panel]:
    for name, board in dashboards().items():
        for raw in board["panels"]:
            yield Panel(name, raw["title"], raw["type"], raw)


def concrete(expr: str) -> str:
    """`expr` with Grafana's interval variables replaced by fixed windows."""
    for variable, window in GRAFANA_WINDOWS.items():
        expr = expr.replace(variable, window)
    return expr


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric name, label matchers) of every vector selector in `expr`."""
    matchers: list[str] = []

    def hold(match: re.Match[str]) -> str:
        matchers.append(match.group(0))
        return f"{{{len(matchers) - 1}}}"

    text = _BRACES.sub(hold, concrete(expr))
    text = _STRING.sub(" ", text)
    text = _GROUPING.sub(" ", re.sub(r"\[[^\]]*\]", " ", text))
    text = re.sub(r"(?<![a-zA-Z0-9_:{])[0-9][0-9a-zA-Z._]*", " ", text)
    found: list[tuple[str, str]] = []
    for match in _SELECTOR.finditer(text):
        name, held = match.group(1), match.group(2)
        following = text[match.end() :].lstrip()
        if name in _KEYWORDS or following.startswith("("):
            continue
        found.append((name, matchers[int(held[1:-1])] if held else ""))
    return found


def metric_names(expr: str) -> set[str]:
    return {name for name, _ in selectors(expr)}


def grouped_by_job(expr: str) -> bool:
    """True when some aggregation of `expr` keeps `job` (`by (job, ...)`)."""
    return any("job" in [g.strip() for g in m.group(1).split(",")] for m in _by(expr))


def selects_job(braces: str) -> bool:
    return re.search(r"\bjob\s*=", braces) is not None


def _by(expr: str) -> Iterator[re.Match[str]]:
    return re.finditer(r"\bby\s*\(([^)]*)\)", expr)
