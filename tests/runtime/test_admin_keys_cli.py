"""`ptf-admin keys` run as a real process: create, revoke, list, and misuse exit codes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from services.runtime.config import AccessThresholds
from services.runtime.keys import KeyStore, Role
from services.runtime.keys.store import hash_key

PTF_ADMIN = str(Path(sys.executable).parent / "ptf-admin")
UNREACHABLE_DATABASE = "postgresql://127.0.0.1:9/unreachable"


def _run(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PTF_")}
    environ.update({"DATABASE_URL": database_url, "BUILD_ID": "test"})
    return subprocess.run(
        [PTF_ADMIN, "keys", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _create_key(database_url: str, *args: str) -> tuple[str, str]:
    """`keys create`: the raw key (stdout) and the key id it reports on stderr."""
    result = _run(database_url, "create", *args)
    assert result.returncode == 0, result.stderr
    match = re.search(r"key ([0-9a-f]{12}) for", result.stderr)
    assert match, result.stderr
    return result.stdout.strip(), match.group(1)


async def test_create_prints_a_key_that_names_its_tenants_and_operator_and_stores_its_hash(
    database_url: str, pg: asyncpg.Pool
) -> None:
    raw_key, key_id = _create_key(
        database_url, "--role", "tenant", "--tenant", "acme", "--tenant", "pilot", "--operator", "a"
    )
    principal = await KeyStore(pg, AccessThresholds()).lookup(raw_key)
    assert principal is not None
    assert (principal.role, principal.tenants, principal.operator) == (
        Role.TENANT,
        frozenset({"acme", "pilot"}),
        "a",
    )
    assert key_id == hash_key(raw_key)[:12]
    assert await pg.fetchval("SELECT count(*) FROM api_keys WHERE label = $1", raw_key) == 0


@pytest.mark.parametrize("role", ["admin", "service"])
async def test_admin_and_service_keys_act_for_every_tenant(
    database_url: str, pg: asyncpg.Pool, role: str
) -> None:
    raw_key, _ = _create_key(database_url, "--role", role, "--operator", "ops")
    principal = await KeyStore(pg, AccessThresholds()).lookup(raw_key)
    assert principal is not None
    assert (principal.role, principal.allows(f"t-{uuid.uuid4().hex[:8]}")) == (Role(role), True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "--operator", "o"], "--role"),
        (["create", "--role", "admin"], "--operator"),
        (["create", "--role", "tenant", "--operator", "o"], "a tenant key needs at least one"),
        (["create", "--role", "admin", "--operator", "o", "--tenant", "acme"], "takes none"),
        (["create", "--role", "service", "--operator", "o", "--tenant", "acme"], "takes none"),
        (["create", "--role", "tenant", "--operator", "o", "--tenant", "Not A"], "must match"),
        (["create", "--role", "root", "--operator", "o"], "invalid choice"),
        (["create", "--role", "admin", "--operator", " "], "control characters"),
        (["revoke", "abcdef1"], "8 to 64 hex characters"),
        (["revoke", "not-a-key-id"], "8 to 64 hex characters"),
        ([], "required"),
    ],
)
def test_misuse_is_a_usage_error_exit_64_before_any_database_work(
    args: list[str], message: str
) -> None:
    result = _run(UNREACHABLE_DATABASE, *args)
    assert (result.returncode, message in result.stderr, result.stdout) == (64, True, "")


async def test_a_revoked_key_no_longer_looks_up_and_revoking_again_changes_nothing(
    database_url: str, pg: asyncpg.Pool
) -> None:
    raw_key, key_id = _create_key(database_url, "--role", "admin", "--operator", "ayse")
    first = _run(database_url, "revoke", key_id)
    assert first.returncode == 0, first.stderr
    assert f"revoked admin key {key_id} of ayse" in first.stdout
    assert await KeyStore(pg, AccessThresholds()).lookup(raw_key) is None
    revoked_sql = "SELECT revoked_at FROM api_keys WHERE key_hash = $1"
    revoked_at = await pg.fetchval(revoked_sql, hash_key(raw_key))
    again = _run(database_url, "revoke", key_id[:8].upper())
    assert again.returncode == 0, again.stderr
    assert await pg.fetchval(revoked_sql, hash_key(raw_key)) == revoked_at


def test_revoking_an_unknown_key_id_exits_1(database_url: str) -> None:
    key_id = uuid.uuid4().hex[:12]
    result = _run(database_url, "revoke", key_id)
    assert (result.returncode, f"no API key has the id {key_id}" in result.stderr) == (1, True)


async def test_a_key_id_prefix_of_several_keys_is_refused_and_revokes_nothing(
    database_url: str, pg: asyncpg.Pool
) -> None:
    _create_key(database_url, "--role", "admin", "--operator", "setup")  # the table exists
    prefix = uuid.uuid4().hex[:10]
    hashes = [prefix + "0" * 54, prefix + "1" * 54]
    for key_hash in hashes:
        await pg.execute(
            "INSERT INTO api_keys (key_hash, role, tenants, operator)"
            " VALUES ($1, 'tenant', '{a}', 'x')",
            key_hash,
        )
    result = _run(database_url, "revoke", prefix)
    revoked = await pg.fetchval(
        "SELECT count(*) FROM api_keys WHERE key_hash = ANY($1) AND revoked_at IS NOT NULL",
        hashes,
    )
    assert (result.returncode, "start of 2 keys" in result.stderr, revoked) == (64, True, 0)


def test_list_shows_each_key_by_id_role_status_and_operator_but_never_the_key(
    database_url: str,
) -> None:
    tenant_key, tenant_id = _create_key(
        database_url, "--role", "tenant", "--tenant", "acme", "--operator", "acme-team"
    )
    admin_key, admin_id = _create_key(database_url, "--role", "admin", "--operator", "ayse")
    assert _run(database_url, "revoke", admin_id).returncode == 0
    result = _run(database_url, "list")
    assert result.returncode == 0, result.stderr
    assert tenant_key not in result.stdout + result.stderr
    assert admin_key not in result.stdout + result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}
    assert rows[tenant_id][:2] == ["tenant", "active"]
    assert rows[tenant_id][3:] == ["-", "acme-team", "acme"]
    assert rows[admin_id][:2] == ["admin", "revoked"]
    assert rows[admin_id][4:] == ["ayse", "*"]
