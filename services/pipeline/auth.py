"""API keys: a small key store (SHA-256 hashes only) and the checks every entry point makes.

A tenant key grants a fixed set of tenants; an admin key grants every tenant
and the admin operations. Keys are compared as hashes with
`hmac.compare_digest`, looked up by hash, cached briefly per process, and never
logged. In development the configured dev keys are seeded at start; in
staging and production they are refused outright (docs/SPEC.md §1).

A key is named by its *key id*, the first `KEY_ID_LENGTH` hex characters of
its hash: stable, shown by `ptf-pipeline keys list`, and useless for
authenticating, so operators can revoke a key without ever seeing it again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg

from services.runtime.config import AppConfig
from services.runtime.errors import Forbidden, InvalidInput, Unauthenticated

log = logging.getLogger(__name__)

TENANT_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
DEV_TENANTS = ("default",)
_MAX_KEY_LENGTH = 512
KEY_ID_LENGTH = 12
# Eight hex characters (32 bits) make an accidental match between a handful of
# keys unlikely; fewer would make "revoke the wrong key" a realistic typo.
_KEY_ID_PATTERN = re.compile(r"[0-9a-f]{8,64}")
_KEY_COLUMNS = "key_hash, role, tenants, label, created_at, revoked_at"
_MAX_CACHE_ENTRIES = 10_000


class Role(StrEnum):
    TENANT = "tenant"
    ADMIN = "admin"


@dataclass(frozen=True)
class Grant:
    """What a presented key may do."""

    role: Role
    tenants: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def allows(self, tenant_id: str) -> bool:
        return self.is_admin or tenant_id in self.tenants


def hash_key(raw_key: str) -> str:
    """SHA-256 hex of a raw key: the only form that is stored or compared."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def key_id_of(raw_key: str) -> str:
    """The non-secret name of a key: the start of its hash."""
    return hash_key(raw_key)[:KEY_ID_LENGTH]


def validate_key_id(raw: str) -> str:
    """A key id (or a longer prefix of a key hash) normalised to lower case.

    Raises 400 INVALID_KEY_ID unless it is 8 to 64 hex characters.
    """
    prefix = raw.strip().lower()
    if not _KEY_ID_PATTERN.fullmatch(prefix):
        raise InvalidInput(
            "INVALID_KEY_ID",
            "a key id is 8 to 64 hex characters (the start of the key's SHA-256)",
            field="key_id",
        )
    return prefix


def validate_tenant_id(raw: str | None) -> str:
    """The tenant id if it matches `^[a-z0-9][a-z0-9_-]{0,62}$`, else 400 INVALID_TENANT_ID."""
    if not raw:
        raise InvalidInput("INVALID_TENANT_ID", "tenant_id is required", field="tenant_id")
    if not TENANT_ID_PATTERN.fullmatch(raw):
        raise InvalidInput(
            "INVALID_TENANT_ID",
            "tenant_id must match ^[a-z0-9][a-z0-9_-]{0,62}$",
            field="tenant_id",
        )
    return raw


@dataclass(frozen=True)
class KeyInfo:
    """What an operator may see of a stored key: everything but the key itself."""

    key_id: str
    role: Role
    tenants: tuple[str, ...]
    label: str
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> KeyInfo:
        return cls(
            key_id=row["key_hash"][:KEY_ID_LENGTH],
            role=Role(row["role"]),
            tenants=tuple(row["tenants"]),
            label=row["label"],
            created_at=row["created_at"],
            revoked_at=row["revoked_at"],
        )


class KeyStore:
    """Hashed API keys in Postgres with a short per-process cache.

    The cache means a revocation reaches other processes only when their
    cached grant expires, at most `cache_seconds` later.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        cache_seconds: float = 30.0,
        refused_keys: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._cache_seconds = cache_seconds
        self._refused = tuple(hash_key(k) for k in refused_keys if k)
        self._clock = clock
        self._cache: dict[str, tuple[Grant | None, float]] = {}

    async def lookup(self, raw_key: str | None) -> Grant | None:
        """The grant of a raw key, or None when it is unknown, revoked or refused."""
        if not raw_key or len(raw_key) > _MAX_KEY_LENGTH:
            return None
        digest = hash_key(raw_key)
        refused = False
        for refused_hash in self._refused:
            refused |= hmac.compare_digest(digest, refused_hash)
        if refused:
            return None
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        grant = await self._load(digest)
        if len(self._cache) >= _MAX_CACHE_ENTRIES:
            self._cache.pop(next(iter(self._cache)))
        self._cache[digest] = (grant, now + self._cache_seconds)
        return grant

    async def _load(self, digest: str) -> Grant | None:
        row = await self._pool.fetchrow(
            "SELECT key_hash, role, tenants FROM pipeline_api_keys"
            " WHERE key_hash = $1 AND revoked_at IS NULL",
            digest,
        )
        if row is None or not hmac.compare_digest(row["key_hash"], digest):
            return None
        return Grant(role=Role(row["role"]), tenants=frozenset(row["tenants"]))

    async def put(self, raw_key: str, role: Role, tenants: Iterable[str], label: str) -> None:
        """Store (or re-grant) a key; tenants are validated like any tenant id."""
        tenant_list = sorted({validate_tenant_id(t) for t in tenants})
        await self._pool.execute(
            "INSERT INTO pipeline_api_keys (key_hash, role, tenants, label)"
            " VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (key_hash) DO UPDATE"
            " SET role = EXCLUDED.role, tenants = EXCLUDED.tenants, label = EXCLUDED.label,"
            " revoked_at = NULL",
            hash_key(raw_key),
            role.value,
            tenant_list,
            label,
        )
        self._cache.pop(hash_key(raw_key), None)

    async def create(self, role: Role, tenants: Iterable[str], label: str) -> str:
        """A new random key, stored hashed; the raw key is returned once and never again."""
        raw = secrets.token_hex(32)  # hex: never starts with `-`, so `--api-key <raw>` parses
        await self.put(raw, role, tenants, label)
        log.info("API key created", extra={"key_id": key_id_of(raw), "role": role.value})
        return raw

    async def revoke(self, key_id: str) -> KeyInfo | None:
        """Revoke the one key whose hash starts with `key_id`; None when no key does.

        Idempotent: an already revoked key keeps its first `revoked_at`. A prefix
        matching several keys is refused (400 AMBIGUOUS_KEY_ID) rather than
        revoking more than the operator meant. Only this process's cache forgets
        the key at once; other processes stop accepting it within `cache_seconds`.
        """
        prefix = validate_key_id(key_id)
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "UPDATE pipeline_api_keys SET revoked_at = coalesce(revoked_at, now())"
                f" WHERE starts_with(key_hash, $1) RETURNING {_KEY_COLUMNS}",
                prefix,
            )
            if len(rows) > 1:  # raising rolls the transaction back: nothing is revoked
                raise InvalidInput(
                    "AMBIGUOUS_KEY_ID",
                    f"{prefix} is the start of {len(rows)} keys; give more of the key id",
                    field="key_id",
                )
        if not rows:
            return None
        row = rows[0]
        self._cache.pop(row["key_hash"], None)
        info = KeyInfo.from_row(row)
        log.info("API key revoked", extra={"key_id": info.key_id})
        return info

    async def list_keys(self) -> list[KeyInfo]:
        """Every stored key, revoked ones included, oldest first."""
        rows = await self._pool.fetch(
            f"SELECT {_KEY_COLUMNS} FROM pipeline_api_keys ORDER BY created_at, key_hash"
        )
        return [KeyInfo.from_row(row) for row in rows]


def refused_dev_keys(config: AppConfig) -> tuple[str, ...]:
    """Outside development the dev keys are refused, whatever the key store holds."""
    if config.env == "development":
        return ()
    return (config.dev_tenant_key, config.dev_admin_key)


async def seed_dev_keys(store: KeyStore, config: AppConfig) -> None:
    """In development only: the tenant key for pilot+default and the admin key (docs/SPEC.md §1)."""
    if config.env != "development":
        return
    tenants = (config.pilot_tenant_id, *DEV_TENANTS)
    await store.put(config.dev_tenant_key, Role.TENANT, tenants, "dev tenant key")
    await store.put(config.dev_admin_key, Role.ADMIN, (), "dev admin key")
    log.info("development API keys seeded", extra={"tenants": list(tenants)})


class Authorizer:
    """The credential checks of every HTTP route and RPC."""

    def __init__(self, keys: KeyStore) -> None:
        self._keys = keys

    async def tenant(self, api_key: str | None, tenant_id: str | None) -> str:
        """The validated tenant id when `api_key` grants it: 400, 401 or 403 otherwise."""
        tenant = validate_tenant_id(tenant_id)
        grant = await self._grant(api_key, "API_KEY")
        if not grant.allows(tenant):
            raise Forbidden(
                "TENANT_FORBIDDEN", "the API key does not grant this tenant", field="tenant_id"
            )
        return tenant

    async def admin(self, admin_key: str | None) -> Grant:
        """The grant of an admin key: 401 when missing or unknown, 403 for a tenant key."""
        grant = await self._grant(admin_key, "ADMIN_KEY")
        if not grant.is_admin:
            raise Forbidden("ADMIN_REQUIRED", "this operation needs an admin key")
        return grant

    async def admin_or_tenant(self, admin_key: str | None, api_key: str | None) -> Grant:
        """For operations open to admins and, scoped to their tenants, to tenant keys."""
        if admin_key:
            return await self.admin(admin_key)
        return await self._grant(api_key, "API_KEY")

    async def _grant(self, raw_key: str | None, kind: str) -> Grant:
        if not raw_key:
            raise Unauthenticated(f"MISSING_{kind}", f"missing {kind.lower().replace('_', ' ')}")
        grant = await self._keys.lookup(raw_key)
        if grant is None:
            raise Unauthenticated(f"INVALID_{kind}", f"unknown {kind.lower().replace('_', ' ')}")
        return grant


def scoped_tenant(grant: Grant, tenant_id: str | None) -> str | None:
    """The tenant filter of a listing: a tenant key must name one of its tenants.

    Admins may omit it (every tenant); a tenant key with a single tenant gets
    that tenant by default.
    """
    if tenant_id:
        tenant = validate_tenant_id(tenant_id)
        if not grant.allows(tenant):
            raise Forbidden(
                "TENANT_FORBIDDEN", "the API key does not grant this tenant", field="tenant_id"
            )
        return tenant
    if grant.is_admin:
        return None
    if len(grant.tenants) == 1:
        return next(iter(grant.tenants))
    raise InvalidInput(
        "INVALID_TENANT_ID", "tenant_id is required for a multi-tenant key", field="tenant_id"
    )
