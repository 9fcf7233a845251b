"""The key store: hashed API keys in PostgreSQL, shared by every service.

Keys are compared as hashes with `hmac.compare_digest`, looked up by hash,
cached briefly per process and never logged. A key is named by its *key id*,
the first `KEY_ID_LENGTH` hex characters of its hash: stable, shown by
`ptf-admin keys list`, and useless for authenticating, so operators can revoke
a key without ever seeing it again.
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
from pathlib import Path

import asyncpg

from services.runtime.cache import TtlCache
from services.runtime.config import AccessThresholds
from services.runtime.db import DATABASE_DOWN, MigrationSet
from services.runtime.errors import InvalidInput, Unavailable
from services.runtime.keys.principal import Principal, Role, validate_tenant_id

log = logging.getLogger(__name__)

KEY_MIGRATIONS = MigrationSet("keys", Path(__file__).parent / "migrations")
KEY_ID_LENGTH = 12
# Keys are hex (or the configured dev keys): printable ASCII without spaces. Anything
# else — a non-UTF-8 header byte, a control character — cannot be a key and is refused
# before it is hashed, instead of failing inside the hashing.
_WELL_FORMED_KEY = re.compile(r"[\x21-\x7e]{1,512}")
# Eight hex characters (32 bits) make an accidental match between a handful of
# keys unlikely; fewer would make "revoke the wrong key" a realistic typo.
_KEY_ID_PATTERN = re.compile(r"[0-9a-f]{8,64}")
_OPERATOR_PATTERN = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
_KEY_COLUMNS = "key_hash, role, tenants, operator, label, created_at, revoked_at"


def hash_key(raw_key: str) -> str:
    """SHA-256 hex of a raw key: the only form that is stored or compared."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def key_id_of(raw_key: str) -> str:
    """The non-secret name of a key: the start of its hash."""
    return hash_key(raw_key)[:KEY_ID_LENGTH]


def well_formed_key(raw_key: str) -> bool:
    return _WELL_FORMED_KEY.fullmatch(raw_key) is not None


def validate_key_id(raw: str) -> str:
    """A key id (or a longer prefix of a key hash) in lower case; 400 INVALID_KEY_ID otherwise."""
    prefix = raw.strip().lower()
    if not _KEY_ID_PATTERN.fullmatch(prefix):
        raise InvalidInput(
            "INVALID_KEY_ID",
            "a key id is 8 to 64 hex characters (the start of the key's SHA-256)",
            field="key_id",
        )
    return prefix


def validate_operator(raw: str) -> str:
    """Who holds a key: 1 to 128 characters without control characters."""
    operator = raw.strip()
    if not _OPERATOR_PATTERN.fullmatch(operator):
        raise InvalidInput(
            "INVALID_OPERATOR",
            "operator must be 1 to 128 characters without control characters",
            field="operator",
        )
    return operator


def grant_problem(role: Role, tenants: Iterable[str]) -> str | None:
    """Why a role and a tenant list do not go together, or None."""
    granted = list(tenants)
    if role is Role.TENANT and not granted:
        return "a tenant key needs at least one tenant"
    if role is not Role.TENANT and granted:
        return f"a key of role {role} acts for every tenant and takes none"
    return None


@dataclass(frozen=True)
class KeyInfo:
    """What an operator may see of a stored key: everything but the key itself."""

    key_id: str
    role: Role
    tenants: tuple[str, ...]
    operator: str
    label: str
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> KeyInfo:
        return cls(
            key_id=row["key_hash"][:KEY_ID_LENGTH],
            role=Role(row["role"]),
            tenants=tuple(row["tenants"]),
            operator=row["operator"],
            label=row["label"],
            created_at=row["created_at"],
            revoked_at=row["revoked_at"],
        )


class KeyStore:
    """Hashed API keys with a bounded per-process cache (the runtime's `TtlCache`).

    The cache means a revocation reaches other processes only when their cached
    entry expires, at most `Access.KEY_CACHE_SECONDS` later; unknown keys are
    cached as unknown, so guessing costs one lookup per distinct guess and the
    entry bound caps the memory that takes.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        limits: AccessThresholds,
        *,
        refused_keys: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._refused = tuple(hash_key(k) for k in refused_keys if k)
        self._cache: TtlCache[str, Principal | None] = TtlCache(
            limits.KEY_CACHE_SECONDS,
            max_entries=limits.KEY_CACHE_MAX_ENTRIES,
            clock=clock,
            refresh_ahead=True,
        )

    async def lookup(self, raw_key: str) -> Principal | None:
        """The principal of a raw key, or None when it is malformed, unknown, revoked or refused.

        With the database down an uncached key is neither accepted nor refused:
        503 KEY_STORE_UNAVAILABLE (fail closed, and the caller may retry)."""
        if not well_formed_key(raw_key):
            return None
        digest = hash_key(raw_key)
        refused = False
        for refused_hash in self._refused:
            refused |= hmac.compare_digest(digest, refused_hash)
        if refused:
            return None
        return await self._cache.get(digest, lambda: self._load(digest))

    async def _load(self, digest: str) -> Principal | None:
        try:
            row = await self._pool.fetchrow(
                "SELECT key_hash, role, tenants, operator FROM api_keys"
                " WHERE key_hash = $1 AND revoked_at IS NULL",
                digest,
            )
        except DATABASE_DOWN as exc:
            raise Unavailable(
                "KEY_STORE_UNAVAILABLE",
                "API keys cannot be checked while the database is unreachable",
                retry_after_seconds=5,
            ) from exc
        if row is None or not hmac.compare_digest(row["key_hash"], digest):
            return None
        return Principal(
            role=Role(row["role"]),
            tenants=frozenset(row["tenants"]),
            operator=row["operator"],
            key_id=digest[:KEY_ID_LENGTH],
        )

    async def put(
        self, raw_key: str, role: Role, tenants: Iterable[str], operator: str, label: str = ""
    ) -> None:
        """Store (or re-grant) a key; tenants and operator are validated first."""
        tenant_list = sorted({validate_tenant_id(t) for t in tenants})
        problem = grant_problem(role, tenant_list)
        if problem:
            raise InvalidInput("INVALID_KEY_GRANT", problem, field="tenants")
        await self._pool.execute(
            "INSERT INTO api_keys (key_hash, role, tenants, operator, label)"
            " VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (key_hash) DO UPDATE"
            " SET role = EXCLUDED.role, tenants = EXCLUDED.tenants,"
            " operator = EXCLUDED.operator, label = EXCLUDED.label, revoked_at = NULL",
            hash_key(raw_key),
            role.value,
            tenant_list,
            validate_operator(operator),
            label,
        )
        self._cache.forget(hash_key(raw_key))

    async def create(
        self, role: Role, tenants: Iterable[str], operator: str, label: str = ""
    ) -> str:
        """A new random key, stored hashed; the raw key is returned once and never again."""
        raw = secrets.token_hex(32)  # hex: never starts with `-`, so `--key <raw>` parses
        await self.put(raw, role, tenants, operator, label)
        log.info("API key created", extra={"key_id": key_id_of(raw), "role": role.value})
        return raw

    async def revoke(self, key_id: str) -> KeyInfo | None:
        """Revoke the one key whose hash starts with `key_id`; None when no key does.

        Idempotent: an already revoked key keeps its first `revoked_at`. A prefix
        matching several keys is refused (400 AMBIGUOUS_KEY_ID) rather than
        revoking more than the operator meant. Only this process's cache forgets
        the key at once; other processes stop accepting it within the cache bound.
        """
        prefix = validate_key_id(key_id)
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())"
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
        self._cache.forget(row["key_hash"])
        info = KeyInfo.from_row(row)
        log.info("API key revoked", extra={"key_id": info.key_id})
        return info

    async def list_keys(self) -> list[KeyInfo]:
        """Every stored key, revoked ones included, oldest first."""
        rows = await self._pool.fetch(
            f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, key_hash"
        )
        return [KeyInfo.from_row(row) for row in rows]
