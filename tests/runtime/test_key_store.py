"""The shared key store (SPEC §11): hashes only, hex keys, validated grants, a bounded cache."""

from __future__ import annotations

import re

import asyncpg
import pytest

from services.runtime.config import AccessThresholds
from services.runtime.db import apply_migration_sets
from services.runtime.errors import InvalidInput, Unavailable
from services.runtime.keys import KEY_MIGRATIONS, KeyStore, Role, key_id_of
from services.runtime.keys.store import hash_key

LIMITS = AccessThresholds()


@pytest.fixture
async def keys(pg: asyncpg.Pool) -> asyncpg.Pool:
    await apply_migration_sets(pg, (KEY_MIGRATIONS,))
    return pg


async def test_the_store_keeps_only_hashes(keys: asyncpg.Pool) -> None:
    raw = await KeyStore(keys, LIMITS).create(Role.TENANT, ["acme"], "ops", "a label")
    row = await keys.fetchrow("SELECT * FROM api_keys WHERE key_hash = $1", hash_key(raw))
    assert row is not None
    assert raw not in [str(value) for value in row.values()]


async def test_a_created_key_is_hex_so_a_cli_never_reads_it_as_an_option(
    keys: asyncpg.Pool,
) -> None:
    raw = await KeyStore(keys, LIMITS).create(Role.TENANT, ["acme"], "ops")
    assert re.fullmatch(r"[0-9a-f]{64}", raw)


@pytest.mark.parametrize(
    ("role", "tenants", "operator", "code"),
    [
        (Role.TENANT, ["Not A Tenant"], "ops", "INVALID_TENANT_ID"),
        (Role.TENANT, [], "ops", "INVALID_KEY_GRANT"),
        (Role.ADMIN, ["acme"], "ops", "INVALID_KEY_GRANT"),
        (Role.SERVICE, ["acme"], "ops", "INVALID_KEY_GRANT"),
        (Role.ADMIN, [], "", "INVALID_OPERATOR"),
        (Role.ADMIN, [], "a\x00b", "INVALID_OPERATOR"),
        (Role.ADMIN, [], "x" * 129, "INVALID_OPERATOR"),
    ],
    ids=[
        "bad-tenant",
        "tenant-without-tenants",
        "admin-with-tenants",
        "service-with-tenants",
        "no-operator",
        "nul-operator",
        "long-operator",
    ],
)
async def test_a_key_with_a_bad_grant_is_not_stored(
    keys: asyncpg.Pool, role: Role, tenants: list[str], operator: str, code: str
) -> None:
    before = await keys.fetchval("SELECT count(*) FROM api_keys")
    with pytest.raises(InvalidInput) as caught:
        await KeyStore(keys, LIMITS).create(role, tenants, operator)
    assert (caught.value.error_code, await keys.fetchval("SELECT count(*) FROM api_keys")) == (
        code,
        before,
    )


async def test_a_lookup_names_the_keys_role_tenants_and_operator(keys: asyncpg.Pool) -> None:
    store = KeyStore(keys, LIMITS)
    raw = await store.create(Role.TENANT, ["acme", "pilot"], "acme-team")
    principal = await store.lookup(raw)
    assert principal is not None
    assert (principal.role, principal.tenants, principal.operator, principal.key_id) == (
        Role.TENANT,
        frozenset({"acme", "pilot"}),
        "acme-team",
        key_id_of(raw),
    )


@pytest.mark.parametrize("raw", ["\xff", "k\x00", "with space", "é" * 8, "k" * 513])
async def test_a_malformed_key_is_unknown_without_a_lookup(keys: asyncpg.Pool, raw: str) -> None:
    assert await KeyStore(keys, LIMITS).lookup(raw) is None


async def test_a_refused_key_is_unknown_even_when_stored(keys: asyncpg.Pool) -> None:
    await KeyStore(keys, LIMITS).put("refused-key", Role.ADMIN, (), "dev-admin")
    refusing = KeyStore(keys, LIMITS, refused_keys=["refused-key"])
    assert await refusing.lookup("refused-key") is None


async def test_a_revoke_takes_effect_at_once_in_its_process_and_elsewhere_when_the_cache_expires(
    keys: asyncpg.Pool,
) -> None:
    """Another process's store keeps a cached principal: the documented revocation delay."""
    now = [0.0]
    revoking = KeyStore(keys, LIMITS, clock=lambda: now[0])
    other = KeyStore(keys, LIMITS, clock=lambda: now[0])
    raw = await revoking.create(Role.TENANT, ["acme"], "ops")
    assert await revoking.lookup(raw) is not None
    assert await other.lookup(raw) is not None
    revoked = await revoking.revoke(key_id_of(raw))
    assert revoked is not None
    assert revoked.revoked_at is not None
    assert await revoking.lookup(raw) is None
    assert await other.lookup(raw) is not None
    now[0] = LIMITS.KEY_CACHE_SECONDS + 1
    assert await other.lookup(raw) is None


async def test_listed_keys_carry_their_id_and_operator_but_not_their_hash(
    keys: asyncpg.Pool,
) -> None:
    store = KeyStore(keys, LIMITS)
    raw = await store.create(Role.SERVICE, [], "release-ci", "listed")
    (listed,) = [k for k in await store.list_keys() if k.key_id == key_id_of(raw)]
    assert (listed.role, listed.tenants, listed.operator, listed.label) == (
        Role.SERVICE,
        (),
        "release-ci",
        "listed",
    )
    assert listed.revoked_at is None
    assert hash_key(raw) not in repr(listed)


async def test_a_lookup_with_the_database_gone_fails_closed_with_503(
    keys: asyncpg.Pool, database_url: str
) -> None:
    """Fault: the store's pool is terminated. An uncached key is neither accepted nor refused:
    Unavailable KEY_STORE_UNAVAILABLE with a retry hint."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    pool.terminate()
    with pytest.raises(Unavailable) as caught:
        await KeyStore(pool, LIMITS).lookup("an-uncached-key")
    assert (caught.value.error_code, caught.value.retry_after_seconds) == (
        "KEY_STORE_UNAVAILABLE",
        5,
    )
