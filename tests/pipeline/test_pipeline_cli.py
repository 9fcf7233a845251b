"""`ptf-pipeline` commands run as real processes: table loading, API keys, settings errors."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from services.pipeline.auth import KeyStore, Role, hash_key
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


def _create_key(database_url: str, *args: str) -> tuple[str, str]:
    """`keys create`: the raw key (stdout) and the key id it reports on stderr."""
    result = _run(database_url, "keys", "create", *args)
    assert result.returncode == 0, result.stderr
    match = re.search(r"key ([0-9a-f]{12}) for", result.stderr)
    assert match, result.stderr
    return result.stdout.strip(), match.group(1)


async def test_keys_create_prints_a_key_that_grants_its_tenants_and_stores_only_its_hash(
    database_url: str, pg: asyncpg.Pool
) -> None:
    raw_key, key_id = _create_key(database_url, "--tenant", "acme", "--tenant", "pilot")
    grant = await KeyStore(pg).lookup(raw_key)
    assert grant is not None
    assert (grant.role, grant.tenants) == (Role.TENANT, frozenset({"acme", "pilot"}))
    assert key_id == hash_key(raw_key)[:12]
    stored = await pg.fetchval(
        "SELECT count(*) FROM pipeline_api_keys WHERE key_hash = $1 OR label = $1", raw_key
    )
    assert stored == 0


async def test_keys_create_admin_key_grants_every_tenant(
    database_url: str, pg: asyncpg.Pool
) -> None:
    raw_key, _ = _create_key(database_url, "--role", "admin")
    grant = await KeyStore(pg).lookup(raw_key)
    assert grant is not None
    assert grant.is_admin
    assert grant.allows(f"t-{uuid.uuid4().hex[:8]}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create"], "a tenant key needs at least one --tenant"),
        (["create", "--role", "tenant"], "a tenant key needs at least one --tenant"),
        (["create", "--role", "admin", "--tenant", "acme"], "takes no --tenant"),
        (["create", "--tenant", "Not A Tenant"], "tenant_id must match"),
        (["create", "--tenant", "acme", "--tenant", "Acme"], "tenant_id must match"),
        (["revoke", "abcdef1"], "8 to 64 hex characters"),
        (["revoke", "not-a-key-id"], "8 to 64 hex characters"),
        ([], "required"),
    ],
)
def test_key_command_misuse_is_a_usage_error_exit_64(args: list[str], message: str) -> None:
    result = _run(UNREACHABLE_DATABASE, "keys", *args)
    assert result.returncode == 64
    assert message in result.stderr
    assert result.stdout == ""


async def test_revoked_key_no_longer_looks_up_and_revoking_again_changes_nothing(
    database_url: str, pg: asyncpg.Pool
) -> None:
    raw_key, key_id = _create_key(database_url, "--tenant", "acme")
    first = _run(database_url, "keys", "revoke", key_id)
    assert first.returncode == 0, first.stderr
    assert f"revoked tenant key {key_id}" in first.stdout
    assert await KeyStore(pg).lookup(raw_key) is None
    revoked_sql = "SELECT revoked_at FROM pipeline_api_keys WHERE key_hash = $1"
    revoked_at = await pg.fetchval(revoked_sql, hash_key(raw_key))
    again = _run(database_url, "keys", "revoke", key_id[:8].upper())
    assert again.returncode == 0, again.stderr
    assert await pg.fetchval(revoked_sql, hash_key(raw_key)) == revoked_at


def test_revoking_an_unknown_key_id_exits_1(database_url: str) -> None:
    key_id = uuid.uuid4().hex[:12]
    result = _run(database_url, "keys", "revoke", key_id)
    assert result.returncode == 1
    assert f"no API key has the id {key_id}" in result.stderr


async def test_a_key_id_prefix_of_several_keys_is_refused_and_revokes_nothing(
    database_url: str, pg: asyncpg.Pool
) -> None:
    await migrate(pg)
    prefix = uuid.uuid4().hex[:10]
    hashes = [prefix + "0" * 54, prefix + "1" * 54]
    for key_hash in hashes:
        await pg.execute(
            "INSERT INTO pipeline_api_keys (key_hash, role, tenants) VALUES ($1, 'tenant', '{a}')",
            key_hash,
        )
    result = _run(database_url, "keys", "revoke", prefix)
    assert result.returncode == 64
    assert "start of 2 keys" in result.stderr
    revoked = await pg.fetchval(
        "SELECT count(*) FROM pipeline_api_keys"
        " WHERE key_hash = ANY($1) AND revoked_at IS NOT NULL",
        hashes,
    )
    assert revoked == 0


def test_keys_list_shows_each_key_by_id_and_status_but_never_the_key(database_url: str) -> None:
    tenant_key, tenant_id = _create_key(database_url, "--tenant", "acme", "--label", "acme ops")
    admin_key, admin_id = _create_key(database_url, "--role", "admin")
    assert _run(database_url, "keys", "revoke", admin_id).returncode == 0
    result = _run(database_url, "keys", "list")
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert tenant_key not in output
    assert admin_key not in output
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}
    assert rows[tenant_id][:2] == ["tenant", "active"]
    assert rows[tenant_id][3:] == ["-", "acme", "acme", "ops"]
    assert rows[admin_id][:2] == ["admin", "revoked"]
    assert rows[admin_id][3] != "-"
    assert rows[admin_id][4:] == ["*"]


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
