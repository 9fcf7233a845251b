"""The committed scrape config of the local stack: one job per service on its HTTP port."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
import yaml

from services.runtime.config.settings import default_ports
from services.runtime.metric_registry import SERVICES
from tests.monitoring.promql import ALERTS_FILE, PROMETHEUS_DIR

CONFIG = PROMETHEUS_DIR / "prometheus.yml"


def _config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    return loaded


def test_each_service_is_a_job_scraped_on_its_http_port() -> None:
    jobs = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in _config()["scrape_configs"]
    }
    assert jobs == {name: [f"127.0.0.1:{default_ports(name)[1]}"] for name in SERVICES}


def test_the_alert_rules_file_is_loaded() -> None:
    assert [PROMETHEUS_DIR / name for name in _config()["rule_files"]] == [ALERTS_FILE]


def test_promtool_accepts_the_config() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed (Debian package `prometheus`)")
    result = subprocess.run(
        [promtool, "check", "config", str(CONFIG)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
