"""Purging one tenant's pipeline data behind a confirmation token.

See docs/seeds/003.txt §9.3 and docs/SPEC.md §3.6.

Destructive, so it takes two steps like every costly operation here (docs/seeds/004.txt
§1, docs/SPEC.md §7): `request` shows what would go and issues a one-time token bound
to the tenant; `confirm` consumes the token and deletes the tenant's incidents,
jobs and invoices in one transaction that also writes the audit row, so rows
never go without their audit. Both steps are audited with the token's SHA-256,
never the token. Outbox events stay: they are telemetry's record of what
happened and are still delivered.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.pipeline.documents import storable_text
from services.runtime.errors import Conflict, InvalidInput, Unavailable
from services.runtime.tokens.errors import TokenError, params_hash, token_hash
from services.runtime.tokens.store import TokenStore, TokenStoreUnavailable

log = logging.getLogger(__name__)

PURGE_PURPOSE = "pipeline.tenant_purge"
# What a purge removes, children first; every statement is scoped to the one tenant.
_TABLES = {
    "incidents": "pipeline_incidents",
    "jobs": "pipeline_jobs",
    "invoices": "pipeline_invoices",
}
_COUNT = "SELECT " + ", ".join(
    f"(SELECT count(*) FROM {table} WHERE tenant_id = $1) AS {name}"
    for name, table in _TABLES.items()
)
_AUDIT = (
    "INSERT INTO pipeline_admin_audit (action, tenant_id, operator, token_hash, details)"
    " VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING audit_id, occurred_at"
)
_MAX_TOKEN_LENGTH = 256
_RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class PurgeRequest:
    """Returned once to the admin who asked: the raw token appears nowhere else."""

    tenant_id: str
    rows: dict[str, int]
    confirmation_token: str
    expires_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "rows": self.rows,
            "confirmation_token": self.confirmation_token,
            "expires_at": self.expires_at.isoformat(),
        }


@dataclass(frozen=True)
class PurgeReceipt:
    tenant_id: str
    deleted: dict[str, int]
    audit_id: int
    purged_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "deleted": self.deleted,
            "audit_id": self.audit_id,
            "purged_at": self.purged_at.isoformat(),
        }


def parse_confirmation_token(raw: object) -> str:
    if raw is None or raw == "":
        raise InvalidInput(
            "MISSING_CONFIRMATION_TOKEN",
            "confirmation_token is required; request one first",
            field="confirmation_token",
        )
    if not isinstance(raw, str) or len(raw) > _MAX_TOKEN_LENGTH:
        raise InvalidInput(
            "INVALID_CONFIRMATION_TOKEN",
            f"confirmation_token must be a string of at most {_MAX_TOKEN_LENGTH} characters",
            field="confirmation_token",
        )
    return storable_text(raw, "confirmation_token")


def _purge_params(tenant_id: str) -> str:
    return params_hash({"tenant_id": tenant_id})


def _token_refused(error: TokenError) -> Conflict | Unavailable:
    if error is TokenError.TOKEN_STORE_UNAVAILABLE:
        return Unavailable(
            error.value,
            "the token store is unreachable; nothing was purged",
            retry_after_seconds=_RETRY_AFTER_SECONDS,
        )
    return Conflict(
        error.value, "the confirmation token was not accepted", field="confirmation_token"
    )


class TenantPurge:
    """The two steps of a tenant purge over the pipeline's tables and a token store."""

    def __init__(self, pool: asyncpg.Pool, tokens: TokenStore, token_ttl_seconds: float) -> None:
        self._pool = pool
        self._tokens = tokens
        self._ttl = token_ttl_seconds

    async def request(self, tenant_id: str, operator: str) -> PurgeRequest:
        """Count the tenant's rows and issue a token; refused if the issuance cannot be audited."""
        try:
            issued = await self._tokens.issue(PURGE_PURPOSE, _purge_params(tenant_id), self._ttl)
        except TokenStoreUnavailable as exc:
            raise _token_refused(TokenError.TOKEN_STORE_UNAVAILABLE) from exc
        async with self._pool.acquire() as conn, conn.transaction():
            counts = dict(await conn.fetchrow(_COUNT, tenant_id) or {})
            details = {"rows": counts, "ttl_seconds": self._ttl}
            await conn.fetchrow(
                _AUDIT,
                "tenant_purge.requested",
                tenant_id,
                operator,
                issued.hash,
                json.dumps(details),
            )
        log.info(
            "tenant purge requested",
            extra={"tenant_id": tenant_id, "operator": operator, "token": issued.hash[:12]},
        )
        return PurgeRequest(
            tenant_id=tenant_id,
            rows=counts,
            confirmation_token=issued.raw,
            expires_at=datetime.fromtimestamp(issued.expires_at, UTC),
        )

    async def confirm(self, tenant_id: str, raw_token: str, operator: str) -> PurgeReceipt:
        """Consume the token, then delete and audit in one transaction."""
        consumed = await self._tokens.consume(raw_token, PURGE_PURPOSE, _purge_params(tenant_id))
        if consumed.error is not None:
            log.warning(
                "tenant purge refused: %s",
                consumed.error.value,
                extra={"tenant_id": tenant_id, "operator": operator},
            )
            raise _token_refused(consumed.error)
        async with self._pool.acquire() as conn, conn.transaction():
            deleted = {}
            for name, table in _TABLES.items():
                status = await conn.execute(f"DELETE FROM {table} WHERE tenant_id = $1", tenant_id)
                deleted[name] = int(status.split()[-1])
            row = await conn.fetchrow(
                _AUDIT,
                "tenant_purge.done",
                tenant_id,
                operator,
                token_hash(raw_token),
                json.dumps({"deleted": deleted}),
            )
        assert row is not None
        log.warning(
            "tenant purged", extra={"tenant_id": tenant_id, "operator": operator, **deleted}
        )
        return PurgeReceipt(tenant_id, deleted, row["audit_id"], row["occurred_at"])
