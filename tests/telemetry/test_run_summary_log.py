"""The `run_summary` JSON log line (seed 003 §5.1): at the end of each period and via the CLI."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.runtime.devservers import free_port
from services.runtime.logs import JsonFormatter
from services.telemetry.service import create_definition
from tests.conftest import StartService
from tests.support.polling import eventually
from tests.telemetry.factories import event, invoice, new_tenant, record

REPO = Path(__file__).resolve().parents[2]
LOG_KEYS = {
    "event",
    "timestamp",
    "build_id",
    "config_hash",
    "tenant_id",
    "period",
    "counts",
    "rates",
    "latency",
    "queue",
    "errors",
}


def _summary_records(caplog: pytest.LogCaptureFixture, tenant: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if getattr(r, "event", None) == "run_summary" and getattr(r, "tenant_id", 0) == tenant
    ]


def _next_full_second_plus(seconds: float) -> datetime:
    """An instant inside a one-second period that ends well after the events are stored."""
    now = datetime.now(UTC)
    return now.replace(microsecond=0) + timedelta(seconds=seconds)


def _probe(caplog: pytest.LogCaptureFixture, tenant: str) -> Callable[[], Any]:
    async def probe() -> list[logging.LogRecord]:
        return _summary_records(caplog, tenant)

    return probe


async def test_periodic_summary_logs_one_line_per_tenant_at_period_end(
    start_service: StartService, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.telemetry")
    tenant = new_tenant()
    definition = create_definition(summary_period=timedelta(seconds=1))
    async with start_service(definition, PTF_METRICS_DIR=str(tmp_path)) as svc:
        at = _next_full_second_plus(2.5)
        response = await record(
            svc.service_channel, [event("INVOICE_PROCESSED", tenant, invoice(), at)]
        )
        assert response.accepted == 1
        records = await eventually(_probe(caplog, tenant), within=15)
    line = records[0]
    fields = {key: getattr(line, key) for key in LOG_KEYS}
    assert fields["counts"]["total_invoices"] == 1
    assert fields["build_id"] == "test"
    assert fields["config_hash"].startswith("sha256:")
    assert fields["period"]["end"] == (at.replace(microsecond=0) + timedelta(seconds=1)).isoformat(
        timespec="seconds"
    ).replace("+00:00", "Z")
    formatted = json.loads(JsonFormatter("telemetry").format(line))
    assert set(formatted) >= LOG_KEYS
    assert '"event": "run_summary"' in JsonFormatter("telemetry").format(line)


async def test_two_replicas_log_each_period_once(
    start_service: StartService, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.telemetry")
    tenant = new_tenant()
    definition = create_definition(summary_period=timedelta(seconds=1))
    async with (
        start_service(definition, PTF_METRICS_DIR=str(tmp_path / "a")) as first,
        start_service(definition, PTF_METRICS_DIR=str(tmp_path / "b")),
    ):
        events = [
            event("INVOICE_PROCESSED", tenant, invoice(), _next_full_second_plus(s))
            for s in (2.5, 3.5)
        ]
        await record(first.service_channel, events)

        async def both_periods_logged() -> bool:
            return len({r.period["end"] for r in _summary_records(caplog, tenant)}) >= 2  # type: ignore[attr-defined]

        await eventually(both_periods_logged, within=15)
    ends = [r.period["end"] for r in _summary_records(caplog, tenant)]  # type: ignore[attr-defined]
    assert len(ends) == len(set(ends))


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PTF_")}
    environ.update({"BUILD_ID": "git:abc1234", **env})
    return subprocess.run(
        [sys.executable, "-m", "services.telemetry", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


async def test_cli_summary_prints_one_run_summary_json_line(
    start_service: StartService, tmp_path: Path, database_url: str
) -> None:
    tenant = new_tenant()
    async with start_service(create_definition(), PTF_METRICS_DIR=str(tmp_path)) as svc:
        at = datetime.now(UTC) - timedelta(hours=1)
        await record(svc.service_channel, [event("INVOICE_PROCESSED", tenant, invoice(), at)])
    result = _cli("summary", "--since", "24h", "--tenant-id", tenant, DATABASE_URL=database_url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    assert '"event": "run_summary"' in lines[0]
    line = json.loads(lines[0])
    assert set(line) == LOG_KEYS
    assert (line["tenant_id"], line["build_id"]) == (tenant, "git:abc1234")
    assert line["counts"]["total_invoices"] == 1
    assert line["rates"]["mismatch_rate"] == 0.0


@pytest.mark.parametrize(
    "args",
    [
        ("summary", "--since", "yesterday"),
        ("summary", "--since", "40d"),
        ("summary", "--tenant-id", "Bad Tenant"),
        ("summary", "--bogus"),
        ("serve", "--summary-period", "0s"),
        ("serve", "--summary-period", "daily"),
    ],
)
def test_cli_usage_error_exits_64(args: tuple[str, ...], database_url: str) -> None:
    result = _cli(*args, DATABASE_URL=database_url)
    assert result.returncode == 64, result.stderr
    assert "error" in result.stderr


def test_cli_summary_with_unreachable_database_exits_69() -> None:
    """Fault: the database does not answer. The CLI must say so on stderr and exit 69."""
    url = f"postgresql://ptf@127.0.0.1:{free_port()}/ptf"
    result = _cli("summary", "--since", "1h", DATABASE_URL=url)
    assert result.returncode == 69
    assert "STORE_UNAVAILABLE" in result.stderr
