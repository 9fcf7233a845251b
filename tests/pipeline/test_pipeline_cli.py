"""`ptf-pipeline` commands run as real processes: table loading and settings errors."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import aiohttp
import asyncpg

from services.pipeline.service import migrate
from services.runtime.devservers import free_port
from tests.pipeline.service_support import REPO, SAMPLE_DATA
from tests.support.polling import eventually


def _run(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PTF_")}
    environ.update({"DATABASE_URL": database_url, "BUILD_ID": "test", **env})
    return subprocess.run(
        [sys.executable, "-m", "services.pipeline", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )


def test_load_market_prices_loads_the_sample_file(database_url: str) -> None:
    result = _run(database_url, "load-market-prices", str(SAMPLE_DATA / "market_prices.sample.csv"))
    assert result.returncode == 0, result.stderr
    assert "loaded 24 row(s)" in result.stdout


async def test_loading_the_same_table_twice_upserts_instead_of_duplicating(
    database_url: str, pg: asyncpg.Pool, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.csv"
    prices.write_text("period,ptf_tl_per_mwh,yekdem_tl_per_mwh\n2099-02,1.00,2.00\n")
    assert _run(database_url, "load-market-prices", str(prices)).returncode == 0
    prices.write_text("period,ptf_tl_per_mwh,yekdem_tl_per_mwh\n2099-02,3.50,2.00\n")
    assert _run(database_url, "load-market-prices", str(prices)).returncode == 0
    rows = await pg.fetch(
        "SELECT ptf_tl_per_mwh FROM pipeline_market_prices WHERE period = '2099-02'"
    )
    assert [r["ptf_tl_per_mwh"] for r in rows] == [Decimal("3.50")]


async def test_bad_tariff_file_is_refused_with_its_line_numbers_and_nothing_loaded(
    database_url: str, pg: asyncpg.Pool, tmp_path: Path
) -> None:
    """Fault: a CSV with one good and one bad row. Must: exit 65, each problem with its line
    number on stderr, and not even the good row stored."""
    tariffs = tmp_path / "tariffs.csv"
    tariffs.write_text(
        "# comment\ntariff_group,distribution_tl_per_mwh\nzz_good,10.0\nzz_bad,1.234,5\n"
    )
    result = _run(database_url, "load-tariffs", str(tariffs))
    assert result.returncode == 65
    assert f"{tariffs}: line 4: expected 2 values, found 3" in result.stderr
    await migrate(pg)
    stored = await pg.fetchval(
        "SELECT count(*) FROM pipeline_tariffs WHERE tariff_group LIKE 'zz_%'"
    )
    assert stored == 0


def test_missing_table_file_exits_66(database_url: str, tmp_path: Path) -> None:
    result = _run(database_url, "load-tariffs", str(tmp_path / "missing.csv"))
    assert result.returncode == 66
    assert "cannot read" in result.stderr


# Refused while parsing, before any connection: nothing can have been stored.
UNREACHABLE_DATABASE = "postgresql://127.0.0.1:9/unreachable"


def test_invalid_queue_setting_exits_78_naming_it(database_url: str) -> None:
    """Fault: PTF_QUEUE_MAX_ATTEMPTS=0. Must: exit 78 with the setting on stderr."""
    result = _run(
        database_url, "worker", PTF_QUEUE_MAX_ATTEMPTS="0", REDIS_URL="redis://127.0.0.1:9"
    )
    assert result.returncode == 78
    assert "queue max_attempts (0) must be >= 1" in result.stderr


async def test_worker_process_serves_health_and_metrics_and_stops_cleanly_on_sigterm(
    database_url: str, redis_url: str, redis_prefix: str
) -> None:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PTF_")}
    environ.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "PTF_REDIS_PREFIX": redis_prefix,
            "BUILD_ID": "test",
        }
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.pipeline",
        "worker",
        "--http-port",
        str(port),
        env=environ,
        cwd=REPO,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:

            async def alive() -> bool:
                try:
                    async with http.get("/health") as response:
                        return response.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await eventually(alive, within=30)
            async with http.get("/metrics") as response:
                assert "ptf_build_info" in await response.text()
    finally:
        process.send_signal(signal.SIGTERM)
        code = await process.wait()
    assert code == 0
