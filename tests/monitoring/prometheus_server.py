"""A real Prometheus for the tests: generated config, temp storage, loopback port, HTTP API.

The binary comes from the Debian package `prometheus` (`make test` installs
it when missing); a test that needs it fails when it is absent, never skips.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from services.runtime.devservers import free_port
from tests.support.polling import eventually

STARTUP_SECONDS = 20.0


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if found is None:
        pytest.fail(
            "prometheus is not installed (Debian package `prometheus`; `make test` adds it)"
        )
    return found


def scrape_config(targets: Mapping[str, str], rule_files: list[Path]) -> dict[str, Any]:
    """One job per service (`job` = service name), scraped and evaluated every second."""
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in sorted(targets.items())
        ],
    }


class PrometheusError(AssertionError):
    """The HTTP API answered with an error (bad expression, bad request)."""


@dataclass
class PrometheusApi:
    """The parts of Prometheus's HTTP API the tests use."""

    http: aiohttp.ClientSession

    async def _get(self, path: str, **params: str) -> Any:
        async with self.http.get(path, params=params) as response:
            body: dict[str, Any] = await response.json()
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result samples (raises PrometheusError when it does not run)."""
        data = await self._get("/api/v1/query", query=expr)
        result = data["result"]
        return result if isinstance(result, list) else [result]

    async def targets(self) -> list[dict[str, Any]]:
        data = await self._get("/api/v1/targets", state="active")
        active: list[dict[str, Any]] = data["activeTargets"]
        return active

    async def alerts(self) -> list[dict[str, Any]]:
        data = await self._get("/api/v1/alerts")
        found: list[dict[str, Any]] = data["alerts"]
        return found

    async def rule_groups(self) -> list[dict[str, Any]]:
        data = await self._get("/api/v1/rules")
        groups: list[dict[str, Any]] = data["groups"]
        return groups


def _prepare(config: dict[str, Any], workdir: Path) -> tuple[Path, Path]:
    """Write the config; (config file, log file) inside `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    return config_file, workdir / "prometheus.log"


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:]


@asynccontextmanager
async def running_prometheus(config: dict[str, Any], workdir: Path) -> AsyncIterator[PrometheusApi]:
    """Start Prometheus on a free loopback port; stop it (and wait) afterwards."""
    binary = prometheus_binary()
    config_file, log_file = _prepare(config, workdir)
    address = f"127.0.0.1:{free_port()}"
    with open(log_file, "wb") as log:  # noqa: ASYNC230 - once, before the child starts
        process = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address={address}",
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        async with aiohttp.ClientSession(base_url=f"http://{address}") as http:

            async def ready() -> bool:
                if process.returncode is not None:
                    raise AssertionError(
                        f"prometheus exited with {process.returncode}:\n{_tail(log_file)}"
                    )
                try:
                    async with http.get("/-/ready") as response:
                        return response.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await eventually(ready, within=STARTUP_SECONDS, interval=0.1)
            yield PrometheusApi(http)
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
